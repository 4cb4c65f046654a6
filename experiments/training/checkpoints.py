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

A sharded run (FSDP) writes no model.safetensors: each rank writes its shards of the weights and
of AdamW's moments into the checkpoint's `shards/` folder (experiments.training.checkpoint_shards: safetensors
files and a JSON layout, nothing pickled), rank 0 the state.pt beside them, and each rank reads
back only its own on resume. `trained_weights` puts a sharded checkpoint's weights together in one
process, under the same keys as a single process's model.safetensors. The ranks all write into
the hidden folder; rank 0 renames it once every rank's file is in. Asynchronous
(`train.async_checkpoint`), the shards are copied to memory and written while training goes on:
the checkpoint is renamed into place when they are, and the next, last or preemption checkpoint
waits for that first.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from experiments.training import checkpoint_shards
from experiments.training.checkpoint_shards import SHARDED
from experiments.training.distributed import World

_PREFIX = "step-"
WEIGHTS = "model.safetensors"
STATE = "state.pt"

log = logging.getLogger(__name__)


# What a failed write raises: the file system's, torch's (DCP's, which gathers every rank's,
# included: experiments.training.checkpoint_shards) and safetensors' errors.
_WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


class UnsafeCheckpointError(ValueError):
    """A checkpoint file that is not what this harness writes, refused rather than unpickled."""


class CorruptCheckpointError(UnsafeCheckpointError):
    """A checkpoint file that is damaged (truncated, empty, not the format at all) rather than
    planted: resuming may fall back to an older checkpoint."""


class CheckpointStore:
    """Every rank of a run makes one, with the same arguments; `save`, `wait` and `load_latest`
    are collective (every rank calls them at the same point)."""

    def __init__(
        self, folder: Path, keep: int = 2, world: World = World(), asynchronous: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.world = world
        self.asynchronous = asynchronous
        self._group: Any = None  # the asynchronous writes' own process group (gloo), made on first use
        self._pending: tuple[Future, Path, Path] | None = None  # (write, hidden folder, its final name)

    def paths(self) -> list[Path]:
        """Complete checkpoint folders, oldest first."""
        if not self.folder.is_dir():
            return []
        steps = {p: step for p in self.folder.glob(f"{_PREFIX}*")
                 if p.is_dir() and (step := _step(p)) is not None}
        return sorted(steps, key=steps.__getitem__)

    def latest(self) -> Path | None:
        paths = self.paths()
        return paths[-1] if paths else None

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """state["model"] (the whole weights, rank 0's) goes to model.safetensors, or
        state[SHARDED] (each rank's shards of the weights and optimiser moments) to shards/;
        everything else (rank 0's) to state.pt."""
        self.wait()
        target = self.folder / f"{_PREFIX}{step:08d}"
        partial = self.folder / f".{target.name}.partial"
        tensors = state.get(SHARDED)
        rest = {key: value for key, value in state.items() if key not in ("model", SHARDED)}
        writing: Future | None = None
        try:
            if self.world.rank == 0:
                self.folder.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir()
                if tensors is None:
                    save_file(_plain_tensors(state["model"]), partial / WEIGHTS)
                torch.save({"step": step, "rng": _rng_state(), **rest}, partial / STATE)
            if tensors is not None:
                if self.asynchronous and self._group is None:
                    # A CPU group of its own: the writes' collectives run in a background thread,
                    # beside the training's on the default group.
                    self._group = torch.distributed.new_group(backend="gloo")
                writing = checkpoint_shards.write(tensors, partial / SHARDED, self._group, self.asynchronous)
        except _WRITE_ERRORS as error:
            self._discard(partial, error)
            raise
        if writing is not None:
            self._pending = (writing, partial, target)
        elif self.world.rank == 0:
            self._publish(partial, target)
        self.world.barrier()  # no rank ends or resumes ahead of the checkpoint
        return target

    def wait(self) -> None:
        """Collective: the pending asynchronous checkpoint, if any, is written and in place."""
        if not self.asynchronous:
            return
        if self._pending is not None:
            self._finish_pending()
        self.world.barrier()

    def publish_written(self) -> None:
        """Rank 0 alone, between steps: an asynchronous checkpoint whose files are all written
        (its write completes on rank 0 once every rank's has) goes into place without waiting
        for the next save."""
        if self.world.rank == 0 and self._pending is not None and self._pending[0].done():
            self._finish_pending()

    @contextmanager
    def settling(self) -> Iterator[None]:
        """This rank alone, on its way out with an error: the checkpoint being written still goes
        into place if it completes; its own failure is logged, not raised over the error."""
        try:
            yield
        except BaseException:
            try:
                if self._pending is not None:
                    self._finish_pending()
            except _WRITE_ERRORS as error:
                log.warning("the checkpoint being written when the run failed did not complete: %s", error)
            raise

    def _finish_pending(self) -> None:
        if self._pending is None:
            raise RuntimeError("no checkpoint is being written to finish")
        writing, partial, target = self._pending
        self._pending = None
        try:
            checkpoint_shards.finished(writing)
        except _WRITE_ERRORS as error:
            self._discard(partial, error)
            raise
        if self.world.rank == 0:
            self._publish(partial, target)

    def _publish(self, partial: Path, target: Path) -> None:
        # A preemption checkpoint can follow the periodic one of the same step.
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        for old in self.paths()[: -self.keep]:
            shutil.rmtree(old)

    def _discard(self, partial: Path, error: BaseException) -> None:
        """A failed write's hidden folder goes; a full disk is said so."""
        if self.world.rank == 0:
            shutil.rmtree(partial, ignore_errors=True)
        # torch and safetensors report a full disk as errors of their own ("basic_ios::clear",
        # "file write failed", "os error 28") that name no file; the free space tells.
        if _disk_full(error, self.folder):
            raise OSError(errno.ENOSPC, "disk full", str(partial)) from error

    def load_latest(
        self, apply: Callable[[dict[str, Any]], None] = lambda state: None
    ) -> dict[str, Any] | None:
        """Collective: the newest checkpoint that reads back whole, handed to `apply` (which
        puts it into the run: a sharded checkpoint's state has its folder under SHARDED, for
        `read_shards`); damaged newer ones are moved aside."""
        for path in reversed(self.paths()):
            try:
                if (path / SHARDED).is_dir():
                    _refuse_foreign(path / SHARDED)
                    state: dict[str, Any] = {SHARDED: path / SHARDED}
                else:
                    state = {"model": load_weights(path / WEIGHTS)}
                state.update(load_state(path / STATE))
                apply(state)
            except CorruptCheckpointError as damaged:
                self._set_aside(path, damaged)
                continue
            _set_rng_state(state.pop("rng"))
            return state
        return None

    def _set_aside(self, path: Path, damaged: CorruptCheckpointError) -> None:
        self.world.barrier()  # every rank has found it damaged (a sharded one: DCP shares the error)
        if self.world.rank == 0:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            path.rename(aside)
            log.warning("checkpoint %s is damaged (%s); moved aside to %s, trying the next older one",
                        path, damaged, aside.name)
        self.world.barrier()


def read_shards(tensors: dict[str, torch.Tensor], folder: Path) -> None:
    """Collective: this rank's shards (the DTensors `save` took under SHARDED), filled in place."""
    _refuse_foreign(folder)
    try:
        checkpoint_shards.read(tensors, folder)
    except (checkpoint_shards.DamagedShardsError, *checkpoint_shards.READ_ERRORS) as bad:
        raise CorruptCheckpointError(f"{folder}: refused: {bad}") from None


def sharded_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A sharded checkpoint's whole weights, put together by this process alone."""
    _refuse_foreign(folder)
    try:
        return checkpoint_shards.gathered(folder)
    except (checkpoint_shards.DamagedShardsError, *checkpoint_shards.READ_ERRORS) as bad:
        raise CorruptCheckpointError(f"{folder}: refused: {bad}") from None


def _refuse_foreign(folder: Path) -> None:
    """DCP's own formats (`.metadata`, `*.distcp`) are pickles: in a shards folder, whatever is not
    what this harness writes there is refused, never read or skipped."""
    for file in sorted(folder.iterdir()) if folder.is_dir() else ():
        if file.suffix != ".safetensors" and file.name != checkpoint_shards.LAYOUT:
            raise UnsafeCheckpointError(
                f"{file}: refused: a sharded checkpoint holds safetensors files and "
                f"{checkpoint_shards.LAYOUT} only; this file may be a pickle, and unpickling it could run "
                "arbitrary code")


def trained_weights(source: str | Path) -> dict[str, torch.Tensor]:
    """The model weights another run trained: a run directory (its newest checkpoint), its
    checkpoints folder, one checkpoint folder (a sharded one's weights put together) or its
    model.safetensors. Only the weights are read, never the state.pt beside them."""
    path = Path(source)
    if path.is_dir():
        if not (path / WEIGHTS).is_file() and not (path / SHARDED).is_dir():
            folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
            latest = CheckpointStore(folder).latest()
            if latest is None:
                raise FileNotFoundError(f"no checkpoint (step-*/{WEIGHTS} or step-*/{SHARDED}/) in {folder}; "
                                        "has that run trained yet?")
            path = latest
        if (path / SHARDED).is_dir():
            return sharded_weights(path / SHARDED)
        path = path / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return load_weights(path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        raise UnsafeCheckpointError(
            f"{path}: refused: weights are read from .safetensors files only; a "
            f"{path.suffix or 'suffix-less'} file may be a pickle, and unpickling it could run arbitrary "
            "code")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as bad:
        raise CorruptCheckpointError(
            f"{path}: refused: not a safetensors file ({bad}); nothing in it was run"
        ) from None


def load_state(path: Path) -> dict[str, Any]:
    """A state.pt, unpickled with weights_only=True: containers, numbers, strings and tensors."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as bad:
        if "weights only" not in str(bad).lower():
            raise CorruptCheckpointError(
                f"{path}: refused: not a state file this harness writes ({bad})"
            ) from None
        raise UnsafeCheckpointError(
            f"{path}: refused: it holds more than tensors and plain values, and loading it would need "
            "arbitrary unpickling, which can run any code; nothing in it was run") from None
    except (RuntimeError, EOFError, OSError) as bad:
        raise CorruptCheckpointError(
            f"{path}: refused: not a state file this harness writes ({bad})"
        ) from None


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
    # numpy's stub types the call without arguments as legacy=False's dict.
    numpy_state = np.random.get_state(legacy=True)
    if not isinstance(numpy_state, tuple):
        raise RuntimeError("numpy's global generator is not the MT19937 its legacy state describes")
    kind, keys, position, has_gauss, gauss = numpy_state
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
