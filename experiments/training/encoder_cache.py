"""Stage 2's frozen encoders are a pure function of the caption text, so their outputs are kept
per caption: later epochs, held-out evaluations and other runs on the same encoders (Table 2's
align rows) read them back instead of running Kosmos-2 and CLIP again.

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

# captions -> (source (B, L, S) zero at padding, mask (B, L) True = real, target (B, 77, T))
Encode = Callable[[list[str]], tuple[Tensor, Tensor, Tensor]]


def checkpoint_fingerprint(paths: Iterable[Path | str]) -> str:
    """A short hash of the files' names, sizes and mtimes under each path (a hub id that is not a
    directory counts by its name)."""
    digest = hashlib.sha256()
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
        self.memory: dict[str, tuple[Tensor, Tensor]] = {}

    def __call__(self, captions: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        missing = [c for c in dict.fromkeys(captions) if c not in self.memory and not self._load(c)]
        if missing:
            source, mask, target = self.encode(missing)
            for row, caption in enumerate(missing):
                # Real tokens only (the mask is right-padded): a batch re-pads to its own length.
                entry = (source[row, mask[row]].clone(), target[row].clone())
                self.memory[caption] = entry
                self._save(caption, entry)
        sources, targets = zip(*(self.memory[c] for c in captions))
        lengths = torch.tensor([len(s) for s in sources], device=self.device)
        mask = torch.arange(int(lengths.max()), device=self.device) < lengths[:, None]
        return pad_sequence(list(sources), batch_first=True), mask, torch.stack(targets)

    def _file(self, caption: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha256(caption.encode()).hexdigest()[:32]}.safetensors"

    def _load(self, caption: str) -> bool:
        file = self._file(caption)
        if file is None or not file.is_file():
            return False
        stored = load_file(file, device=str(self.device))
        self.memory[caption] = (stored["source"], stored["target"])
        return True

    def _save(self, caption: str, entry: tuple[Tensor, Tensor]) -> None:
        file = self._file(caption)
        if file is None:
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_name(f".{file.name}.{os.getpid()}.partial")
        save_file({"source": entry[0].contiguous(), "target": entry[1].contiguous()}, partial)
        os.replace(partial, file)
