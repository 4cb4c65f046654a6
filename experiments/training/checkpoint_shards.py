"""A sharded run's checkpoint tensors (FSDP: each rank's shards of the trainable's weights and of
AdamW's moments) through torch.distributed.checkpoint, in safetensors files and JSON only.

Every rank writes its own shards, `shards/shard-0000<r+1>-model-00001-of-00001.safetensors`, and
reads back only the slices of them that it holds (a safetensors file is read by slice, through
its header's offsets): no rank writes or reads the whole state, ~21 GB for stage 3 with AdamW's.
torch's HuggingFaceStorageWriter/Reader are the storage: each file's header records where its
chunks sit in the whole tensors, so DCP needs no `.metadata` (its default FileSystemWriter
pickles one, which this harness would then have to unpickle). Only tensors go through it (it
would write any other value's pickled bytes in front of a file's safetensors ones), which is why
the non-tensor state (counters, schedule, RNG, AdamW's param groups) stays in the
checkpoint's weights_only `state.pt`. `layout.json`, written by rank 0, names every tensor's whole
shape: a shard file lost or cut short leaves a key, a size or a chunk missing against it, and
the checkpoint is refused as damaged rather than loaded with holes.

One process reads the whole weights back (`gathered`: DCP with no process group), under the
plain trainable's keys, for stage 3's init_from, `repro generate`, `repro export` and evaluation.
"""

from __future__ import annotations

import json
import math
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import SafetensorError

SHARDED = "shards"  # a checkpoint's folder of shard files, and a state's key for them
LAYOUT = "layout.json"
MODEL = "model."  # key prefixes of the model's and the optimiser's tensors
OPTIMIZER = "optimizer."

# What reading a damaged shard raises, from safetensors or the file system (DCP's own error, which
# gathers every rank's, comes as a DamagedShardsError).
READ_ERRORS = (SafetensorError, OSError, RuntimeError, ValueError, KeyError)


class DamagedShardsError(ValueError):
    """The shards do not hold what the layout says (checkpoints.py turns it into a
    CorruptCheckpointError naming the checkpoint)."""


# torch.distributed.checkpoint is imported inside the functions: it takes seconds to import, and
# only sharded runs need it.


def write(tensors: dict[str, torch.Tensor], folder: Path, group: dist.ProcessGroup | None,
          asynchronous: bool) -> Future | None:
    """Collective: every rank writes its shards into `folder`, rank 0 the layout.
    Asynchronous, the tensors are copied to CPU memory before this returns and written in a
    background thread; `finished(the future)` returns, on rank 0, once every rank's file is written.
    DCP's errors come as RuntimeErrors."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import CheckpointException, HuggingFaceStorageWriter

    if dist.get_rank() == 0:
        folder.mkdir()
        layout = {key: list(tensor.shape) for key, tensor in tensors.items()}
        (folder / LAYOUT).write_text(json.dumps(layout, indent=1))
    dist.barrier(group)  # the folder exists
    writer = HuggingFaceStorageWriter(str(folder), save_distributed=True)
    try:
        if asynchronous:
            saving = dcp.async_save(tensors, storage_writer=writer, process_group=group)
            # An AsyncSaveResponse comes only from staging in the background, which the default
            # stager async_save makes here does not do.
            if not isinstance(saving, Future):
                raise RuntimeError(f"{folder}: torch's async_save gave {type(saving).__name__}, not a Future")
            return saving
        dcp.save(tensors, storage_writer=writer, process_group=group)
    except CheckpointException as failed:
        raise RuntimeError(f"{folder}: writing the shards failed: {failed}") from failed
    return None


def finished(writing: Future) -> None:
    """Waits for an asynchronous `write`."""
    from torch.distributed.checkpoint import CheckpointException

    try:
        writing.result()
    except CheckpointException as failed:
        raise RuntimeError(f"writing the shards failed: {failed}") from failed


def read(tensors: dict[str, torch.Tensor], folder: Path) -> None:
    """Collective: fills this rank's shards (DTensors, under the keys `write` took) in place."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import CheckpointException, HuggingFaceStorageReader

    _check(folder, {key: list(tensor.shape) for key, tensor in tensors.items()})
    try:
        dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(folder)))
    except CheckpointException as failed:
        raise DamagedShardsError(f"{folder}: reading the shards failed: {failed}") from failed


def gathered(folder: Path, prefix: str = MODEL) -> dict[str, torch.Tensor]:
    """The whole tensors under `prefix` (without it), read by this process alone."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    metadata = _check(folder)
    whole = {key: torch.empty(entry.size, dtype=entry.properties.dtype)
             for key, entry in metadata.state_dict_metadata.items() if key.startswith(prefix)}
    with warnings.catch_warnings():  # that it reads in one process is what it was asked
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(whole, storage_reader=HuggingFaceStorageReader(str(folder)), no_dist=True)
    return {key.removeprefix(prefix): tensor for key, tensor in whole.items()}


def _check(folder: Path, expected: dict[str, list[int]] | None = None) -> Any:
    """The shards' headers against the layout rank 0 wrote (and, on resume, against the live
    tensors): every key present, at its whole size, its chunks covering all of it."""
    try:
        layout = json.loads((folder / LAYOUT).read_text())
    except (OSError, ValueError) as bad:
        raise DamagedShardsError(f"{folder / LAYOUT}: unreadable ({bad})") from None
    if expected is not None and {key: layout.get(key) for key in expected} != expected:
        raise DamagedShardsError(f"{folder}: holds other tensors than this run trains "
                                 "(another model, or a changed config)")
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = HuggingFaceStorageReader(str(folder)).read_metadata()  # DCP's Metadata
    stored = metadata.state_dict_metadata
    for key, shape in layout.items():
        entry = stored.get(key)
        if not isinstance(entry, TensorStorageMetadata) or list(entry.size) != shape:
            raise DamagedShardsError(
                f"{folder}: {key} missing or cut short: a rank's shard file is lost or damaged"
            )
        covered = sum(math.prod(chunk.sizes) for chunk in entry.chunks)
        if covered != math.prod(shape):
            raise DamagedShardsError(f"{folder}: {key} has {covered} of {math.prod(shape)} values: "
                                     "a rank's shard file is lost or damaged")
    return metadata
