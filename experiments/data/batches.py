"""Which items each step, rank and micro-batch trains on.

The batch of a step is a pure function of (seed, step), so a resumed run sees exactly the
batches it would have seen without the interruption, with no data-loader state to save. Under
data parallelism a step's global batch (`train.batch_size`, the paper's) is cut into equal
`Part`s (rank x gradient-accumulation micro-batch), so the global batch, and with it the loss
curve, does not depend on the world size. Stage 3 mixes its data kinds in fixed proportions
(paper: compositional : edits : captioned = 2 : 2 : 1), each kind in its own epoch order.

torch is imported inside the shufflers: `repro plan` checks a batch split against its launch
settings through `accumulation_steps` and must not pay for torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

T = TypeVar("T")


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


class EpochShuffler(Generic[T]):
    def __init__(self, items: Sequence[T], batch_size: int, seed: int) -> None:
        if not items:
            raise ValueError("no training items left to sample from")
        self.items = items
        self.batch_size = batch_size
        self.seed = seed
        self._epoch = -1
        self._order: list[int] = []

    def _order_of(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            import torch

            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.items), generator=generator).tolist()
            self._epoch = epoch
        return self._order

    def __call__(self, step: int, part: Part = WHOLE) -> list[T]:
        """`part` of step `step`'s global batch of `batch_size` items."""
        n = len(self.items)
        first, last = part.bounds(self.batch_size)
        batch = []
        for position in range(step * self.batch_size + first, step * self.batch_size + last):
            epoch, index = divmod(position, n)
            batch.append(self.items[self._order_of(epoch)[index]])
        return batch


def split_counts(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights`, rounded so the counts add up to `total`
    (largest remainder: the kinds whose share lost most to rounding get the leftovers)."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_loss = sorted(range(len(exact)), key=lambda k: counts[k] - exact[k])
    for k in by_loss[: total - sum(counts)]:
        counts[k] += 1
    return counts


@dataclass(frozen=True)
class Drawn(Generic[T]):
    kind: int  # index of the source it came from
    item: T
    position: int  # its place in the step's global batch: seeds its per-example randomness


class MixedShuffler(Generic[T]):
    def __init__(
        self, sources: Sequence[Sequence[T]], weights: Sequence[float], batch_size: int, seed: int
    ) -> None:
        self.counts = split_counts(batch_size, weights)
        empty = [k for k, (items, n) in enumerate(zip(sources, self.counts)) if n and not items]
        if empty:
            raise ValueError(f"data kinds {empty} have a share of the batch but no items")
        self.shufflers = [
            EpochShuffler(items, n, seed * 7 + k) if n else None
            for k, (items, n) in enumerate(zip(sources, self.counts))
        ]
        self.batch_size = batch_size
        self.seed = seed

    def __call__(self, step: int, part: Part = WHOLE) -> list[Drawn[T]]:
        items = [
            (kind, item)
            for kind, shuffler in enumerate(self.shufflers) if shuffler is not None
            for item in shuffler(step)
        ]
        import torch

        # Interleaved so that every part (rank, micro-batch) sees the kinds mixed.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        order = torch.randperm(len(items), generator=generator).tolist()
        first, last = part.bounds(self.batch_size)
        return [Drawn(*items[order[p]], position=p) for p in range(first, last)]
