"""A toy objective for the training-loop tests: linear regression, cheap and exact."""

from __future__ import annotations

import torch
from torch import nn

from experiments.config import OptimConfig, TrainConfig
from experiments.data.batches import WHOLE, Part
from experiments.training.objective import Objective


class Regression(Objective):
    """y = x @ w_true; the batch of a step depends only on the step. Built from no RunConfig, so
    it skips Objective.__init__."""

    def __init__(self, scale: float = 1.0) -> None:
        self.device = torch.device("cpu")
        self.trainable = nn.Linear(4, 1, bias=False)
        self.w_true = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
        self.scale = scale

    def items(self, step: int, part: Part = WHOLE) -> torch.Tensor:
        first, last = part.bounds(8)
        return torch.randn(8, 4, generator=torch.Generator().manual_seed(step))[first:last]

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        error = self.trainable(x) - x @ self.w_true.T
        return {"loss": (error**2).mean() * self.scale}

    def heldout(self) -> dict[str, float]:
        with torch.no_grad():
            return {"mse": self.loss(self.batch(10_000))["loss"].item()}


def train_config(steps: int, **overrides) -> TrainConfig:
    values = dict(steps=steps, batch_size=8, optim=OptimConfig(lr=0.2, warmup_steps=2),
                  log_every=5, eval_every=10, checkpoint_every=10)
    values.update(overrides)
    return TrainConfig(**values)
