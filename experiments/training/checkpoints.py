"""Resumable checkpoints in a run's directory.

A run that is killed, crashes or is preempted starts again with a fresh process that knows only
its run directory; `restore` finds the newest complete checkpoint there. Writes go to a temporary
file first and are renamed into place, so a kill mid-write never leaves a truncated "latest".
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

_PREFIX = "step-"
_SUFFIX = ".pt"


class CheckpointStore:
    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def paths(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.glob(f"{_PREFIX}*{_SUFFIX}")]
        return sorted(found, key=lambda p: int(p.stem.removeprefix(_PREFIX)))

    def latest(self) -> Path | None:
        paths = self.paths()
        return paths[-1] if paths else None

    def save(self, step: int, state: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{_PREFIX}{step:08d}{_SUFFIX}"
        partial = target.with_suffix(".partial")
        torch.save({"step": step, "rng": _rng_state(), **state}, partial)
        os.replace(partial, target)
        for old in self.paths()[: -self.keep]:
            old.unlink()
        return target

    def load_latest(self) -> dict[str, Any] | None:
        path = self.latest()
        if path is None:
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        _set_rng_state(state.pop("rng"))
        return state


def trained_weights(source: str | Path) -> dict[str, Any]:
    """The model weights another run trained: a checkpoint file, a checkpoint folder or a run
    directory (its newest checkpoint). Unlike `load_latest`, leaves this process's RNG alone."""
    path = Path(source)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        latest = CheckpointStore(folder).latest()
        if latest is None:
            raise FileNotFoundError(f"no checkpoint in {folder}; has that run trained yet?")
        path = latest
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
