"""Deterministic batch order: the batch of a step is a pure function of (seed, step).

A resumed run therefore sees exactly the batches it would have seen without the interruption,
with no data-loader state to save. Under data parallelism a step's global batch is cut into
equal `Part`s (rank x gradient-accumulation micro-batch), so the global batch, and with it the
loss curve, does not depend on the world size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

import torch

T = TypeVar("T")


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
