"""Resumable checkpoints in a run's directory, in formats that run no code when read.

A checkpoint is a folder, `checkpoints/step-00000050/`, holding
- `model.safetensors`: the trainable's weights (what stage 3, `repro generate` and `repro export`
  read; safetensors is a header and raw tensor bytes, so a planted file cannot run anything);
- `state.pt`: optimiser, schedule, grad scaler, RNG state and counters, which only the run
  itself reads back when it resumes, with `torch.load(weights_only=True)`: plain containers,
  numbers and tensors, nothing else unpickled.
A file that would need more (a pickled object, someone's payload) is refused with
`UnsafeCheckpointError`, naming the file.

A run that is killed, crashes or is preempted starts again with a fresh process that knows only
its run directory; `load_latest` finds the newest complete checkpoint there. A checkpoint is
written into a hidden folder first and renamed into place, so a kill mid-write never leaves a
truncated "latest". One damaged after it was written (a truncated or emptied file, a disk
error) is moved aside as `step-N.corrupt-<time>`, kept for inspection, and the next older one is
loaded instead; a file that would need arbitrary unpickling is still refused, never skipped.
A write that fills the disk removes its hidden folder and says `disk full: <path>`.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

_PREFIX = "step-"
WEIGHTS = "model.safetensors"
STATE = "state.pt"

log = logging.getLogger(__name__)


class UnsafeCheckpointError(ValueError):
    """A checkpoint file that is not what this harness writes, refused rather than unpickled."""


class CorruptCheckpointError(UnsafeCheckpointError):
    """A checkpoint file that is damaged (truncated, empty, not the format at all) rather than
    planted: resuming may fall back to an older checkpoint."""


class CheckpointStore:
    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def paths(self) -> list[Path]:
        """Complete checkpoint folders, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.glob(f"{_PREFIX}*") if p.is_dir() and _step(p) is not None]
        return sorted(found, key=_step)

    def latest(self) -> Path | None:
        paths = self.paths()
        return paths[-1] if paths else None

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """state["model"] goes to model.safetensors, everything else to state.pt."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{_PREFIX}{step:08d}"
        partial = self.folder / f".{target.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        rest = {key: value for key, value in state.items() if key != "model"}
        try:
            partial.mkdir()
            save_file(_plain_tensors(state["model"]), partial / WEIGHTS)
            torch.save({"step": step, "rng": _rng_state(), **rest}, partial / STATE)
        except (OSError, RuntimeError, SafetensorError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            # torch and safetensors report a full disk as errors of their own ("basic_ios::clear",
            # "file write failed", "os error 28") that name no file; the free space tells.
            if _disk_full(error, self.folder):
                raise OSError(errno.ENOSPC, "disk full", str(partial)) from error
            raise
        # A preemption checkpoint can follow the periodic one of the same step.
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        for old in self.paths()[: -self.keep]:
            shutil.rmtree(old)
        return target

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that reads back whole; damaged newer ones are moved aside."""
        for path in reversed(self.paths()):
            try:
                weights = load_weights(path / WEIGHTS)
                state = load_state(path / STATE)
            except CorruptCheckpointError as damaged:
                aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
                path.rename(aside)
                log.warning("checkpoint %s is damaged (%s); moved aside to %s, trying the next older one",
                            path, damaged, aside.name)
                continue
            _set_rng_state(state.pop("rng"))
            return {"model": weights, **state}
        return None


def trained_weights(source: str | Path) -> dict[str, torch.Tensor]:
    """The model weights another run trained: a run directory (its newest checkpoint), its
    checkpoints folder, one checkpoint folder or its model.safetensors. Only the weights are
    read, never the state.pt beside them."""
    path = Path(source)
    if path.is_dir():
        if (path / WEIGHTS).is_file():
            return load_weights(path / WEIGHTS)
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        latest = CheckpointStore(folder).latest()
        if latest is None:
            raise FileNotFoundError(f"no checkpoint (step-*/{WEIGHTS}) in {folder}; has that run trained yet?")
        path = latest / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return load_weights(path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        raise UnsafeCheckpointError(
            f"{path}: refused: weights are read from .safetensors files only; a {path.suffix or 'suffix-less'} "
            "file may be a pickle, and unpickling it could run arbitrary code")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as bad:
        raise CorruptCheckpointError(f"{path}: refused: not a safetensors file ({bad}); nothing in it was run") from None


def load_state(path: Path) -> dict[str, Any]:
    """A state.pt, unpickled with weights_only=True: containers, numbers, strings and tensors."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as bad:
        if "weights only" not in str(bad).lower():
            raise CorruptCheckpointError(f"{path}: refused: not a state file this harness writes ({bad})") from None
        raise UnsafeCheckpointError(
            f"{path}: refused: it holds more than tensors and plain values, and loading it would need "
            "arbitrary unpickling, which can run any code; nothing in it was run") from None
    except (RuntimeError, EOFError, OSError) as bad:
        raise CorruptCheckpointError(f"{path}: refused: not a state file this harness writes ({bad})") from None


def _disk_full(error: BaseException, folder: Path) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


# Less free space than this after a failed write: the write most likely ran out of it.
_NEARLY_FULL = 1 << 20


def _step(path: Path) -> int | None:
    digits = path.name.removeprefix(_PREFIX)
    return int(digits) if digits.isdigit() else None


def _plain_tensors(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors stores each tensor's own bytes: tensors that share memory (tied weights, views)
    are copied apart, and every one is made contiguous on the CPU."""
    seen: set[tuple[int, int]] = set()
    plain = {}
    for key, tensor in weights.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        plain[key] = tensor
    return plain


def _rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values, which weights_only reads back."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
