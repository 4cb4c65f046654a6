"""What a recipe hands the training loop: the `Objective` every trainer recipe subclasses.

The loop reads only what is declared here. The optional members have defaults, so a recipe
overrides only what it has: a token count (tokens/s is logged then), a FLOP count (MFU is
logged then, on a known GPU, and from a nominal step the run's training compute), the decoder
it trains through (reused to sample), how much data it set aside when loading, and which data
files it read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from experiments.config import RunConfig
from experiments.data.batches import WHOLE, Part
from experiments.training.tracker import DataInput

if TYPE_CHECKING:
    from models import ImageDecoder, KosmosGConditioner


class Objective(ABC):
    trainable: nn.Module
    device: torch.device
    conditioner: KosmosGConditioner  # what generation uses once trained
    # The frozen decoder the objective trains through; None: evaluation loads its own.
    decoder: ImageDecoder | None = None

    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        self.config = config
        # The work dir's shared cache (FID statistics, encoder outputs): rows reuse each other's.
        self.cache_dir = cache_dir

    def prefetching(self, start: int, parts: list[Part]) -> AbstractContextManager[None]:
        """While training: from step `start` on, this rank asks `batch` for these parts of every
        step, in order. An objective that reads its data in DataLoader workers runs them here."""
        return nullcontext()

    def batch(self, step: int, part: Part = WHOLE) -> Any:
        """`part` of step `step`'s global batch (`train.batch_size` items): a pure function of
        the step, so resuming replays nothing, and the ranks' parts tile the batch."""
        return self.collate(self.items(step, part))

    @abstractmethod
    def items(self, step: int, part: Part) -> Any:
        """What `batch` reads from the data (files decoded), before `collate`: read apart from it,
        the items of a step can be taken outside a fake-tensor mode and collated inside one."""

    def collate(self, items: Any) -> Any:
        """The items as the loss takes them (stacked, moved to the device, encoded)."""
        return items

    @abstractmethod
    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """Named losses; "loss" is the one optimised. A step's losses are the mean of its
        micro-batches', which is the global batch's for a mean over items."""

    @abstractmethod
    def heldout(self) -> dict[str, float]:
        """Metrics on held-out data, computed without gradients."""

    def tokens(self, batch: Any) -> int | None:
        """Tokens the batch feeds the model, or None where tokens/s means nothing."""
        return None

    def flops(self, batch: Any) -> int | None:
        """Model FLOPs of one training step on the batch, or None where not counted."""
        return None

    def nominal_step_flops(self) -> int | None:
        """Model FLOPs of one step at the configured shapes (not a particular batch's), from which
        the run's training compute is logged; None where not counted."""
        return None

    def data_counts(self) -> dict[str, int]:
        """Items set aside so far, by reason (logged as `data/<reason>`): never silently lost."""
        return {}

    def data_inputs(self) -> list[DataInput]:
        """The data files training and held-out evaluation read, with the rows taken from each."""
        return []
