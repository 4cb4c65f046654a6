"""How a step's global batch (`train.batch_size`, the paper's) splits over data-parallel ranks
and their gradient-accumulation micro-batches. Plain arithmetic, without torch, so that a plan
is checked against its launch settings before anything starts."""

from __future__ import annotations


def accumulation_steps(batch_size: int, micro_batch_size: int | None, world_size: int) -> int:
    """Micro-batches per rank and step: each of `world_size` ranks takes batch_size / world_size
    items per step, `micro_batch_size` at a time (all at once when None)."""
    if batch_size % world_size:
        raise ValueError(f"train.batch_size: {batch_size} does not split evenly over {world_size} ranks")
    per_rank = batch_size // world_size
    micro = per_rank if micro_batch_size is None else micro_batch_size
    if micro < 1 or per_rank % micro:
        raise ValueError(
            f"train.micro_batch_size: {micro} does not divide the per-rank batch of {per_rank} "
            f"(train.batch_size {batch_size} over {world_size} ranks)"
        )
    return per_rank // micro
