"""How a step's global batch splits: over data-parallel ranks and their gradient-accumulation
micro-batches (`Part`s of equal size, so the global batch, and with it the loss curve, does not
depend on the world size), and over stage 3's data kinds in fixed proportions. Plain arithmetic
without torch: `repro plan` checks a batch split against its launch settings through
`accumulation_steps`. Which rows fill a step is experiments/data/stream.py's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


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


@dataclass(frozen=True)
class Part:
    """Slice `index` of `count` equal slices of a step's global batch."""

    index: int = 0
    count: int = 1

    def bounds(self, size: int) -> tuple[int, int]:
        if size % self.count:
            raise ValueError(f"a batch of {size} does not split into {self.count} equal parts")
        width = size // self.count
        return self.index * width, (self.index + 1) * width


WHOLE = Part()


def split_counts(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights`, rounded so the counts add up to `total`
    (largest remainder: the kinds whose share lost most to rounding get the leftovers)."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_loss = sorted(range(len(exact)), key=lambda k: counts[k] - exact[k])
    for k in by_loss[: total - sum(counts)]:
        counts[k] += 1
    return counts
