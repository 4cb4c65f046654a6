"""Stage 3's data mixture: every step's global batch holds the data kinds in fixed proportions
(paper: compositional : edits : captioned = 2 : 2 : 1), each kind in its own epoch order.

Like EpochShuffler, a step's batch is a pure function of (seed, step), so resuming replays
nothing and a `Part` of it is the same whatever the world size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

import torch

from experiments.sampling import WHOLE, EpochShuffler, Part

T = TypeVar("T")


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
        # Interleaved so that every part (rank, micro-batch) sees the kinds mixed.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        order = torch.randperm(len(items), generator=generator).tolist()
        first, last = part.bounds(self.batch_size)
        return [Drawn(*items[order[p]], position=p) for p in range(first, last)]
