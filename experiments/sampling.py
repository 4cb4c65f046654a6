"""Deterministic batch order: the batch of a step is a pure function of (seed, step).

A resumed run therefore sees exactly the batches it would have seen without the interruption,
with no data-loader state to save.
"""

from __future__ import annotations

from typing import Generic, Sequence, TypeVar

import torch

T = TypeVar("T")


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

    def __call__(self, step: int) -> list[T]:
        n = len(self.items)
        batch = []
        for position in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, index = divmod(position, n)
            batch.append(self.items[self._order_of(epoch)[index]])
        return batch
