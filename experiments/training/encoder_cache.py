"""Stage 2's frozen encoders are a pure function of the caption text, so their outputs are kept
per caption: later epochs, held-out evaluations and other runs on the same encoders (Table 2's
align rows) read them back instead of running Kosmos-2 and CLIP again.

An entry is a caption's real-token states, its pad state and its CLIP target. Every padded
position of a row holds the same MLLM state, the pad token's (pads are masked as keys and share
one embedding and one position), so a batch re-assembled from entries, each row padded with its
own pad state, equals the batch encoded afresh, padding included, which L_rec reconstructs.

Entries live in memory and, given a folder, on disk as one safetensors file per caption, written
aside and renamed into place so parallel runs sharing the folder never read half a file. The
folder's name fingerprints the encoder checkpoints, so changed weights never meet stale outputs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

# captions -> (source (B, L, S), mask (B, L) True = real, target (B, 77, T), pad states (B, S))
Encode = Callable[[list[str]], tuple[Tensor, Tensor, Tensor, Tensor]]
Entry = tuple[Tensor, Tensor, Tensor]  # real-token states (l, S), pad state (S,), target (77, T)
ENTRY_LAYOUT = "source+pad+target"  # part of every fingerprint: files of another layout are never read


def checkpoint_fingerprint(paths: Iterable[Path | str], extra: str = "") -> str:
    """A short hash of the files' names, sizes and mtimes under each path (a hub id that is not a
    directory counts by its name), and of `extra`: what else changes the outputs (how captions are
    tokenized, the entries' layout)."""
    digest = hashlib.sha256(f"{ENTRY_LAYOUT}\n{extra}\n".encode())
    for root in map(Path, paths):
        digest.update(f"{root}\n".encode())
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for file in files:
            stat = file.stat()
            digest.update(f"{file.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class EncoderCache:
    def __init__(self, encode: Encode, device: torch.device, folder: Path | None = None) -> None:
        self.encode = encode
        self.device = device
        self.folder = folder
        self.memory: dict[str, Entry] = {}

    def __call__(self, captions: list[str]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        missing = [c for c in dict.fromkeys(captions) if c not in self.memory and not self._load(c)]
        if missing:
            source, mask, target, pad = self.encode(missing)
            for row, caption in enumerate(missing):
                # Real tokens only (the mask is right-padded): a batch re-pads to its own length.
                entry = (source[row, mask[row]].clone(), pad[row].clone(), target[row].clone())
                self.memory[caption] = entry
                self._save(caption, entry)
        sources, pads, targets = zip(*(self.memory[c] for c in captions))
        lengths = torch.tensor([len(s) for s in sources], device=self.device)
        mask = torch.arange(int(lengths.max()), device=self.device) < lengths[:, None]
        padded = pad_sequence(list(sources), batch_first=True)
        pad = torch.stack(pads)
        source = torch.where(mask[..., None], padded, pad[:, None, :])
        return source, mask, torch.stack(targets), pad

    def _file(self, caption: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha256(caption.encode()).hexdigest()[:32]}.safetensors"

    def _load(self, caption: str) -> bool:
        file = self._file(caption)
        if file is None or not file.is_file():
            return False
        stored = load_file(file, device=str(self.device))
        self.memory[caption] = (stored["source"], stored["pad"], stored["target"])
        return True

    def _save(self, caption: str, entry: Entry) -> None:
        file = self._file(caption)
        if file is None:
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_name(f".{file.name}.{os.getpid()}.partial")
        source, pad, target = (tensor.contiguous() for tensor in entry)
        save_file({"source": source, "pad": pad, "target": target}, partial)
        os.replace(partial, file)
