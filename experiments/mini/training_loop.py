"""The optimiser loop the mini models share: Adam over a loss drawn fresh each step, the loss
logged as JSON lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

LossLog = Callable[[str], None]


@dataclass(frozen=True)
class MiniTraining:
    """What every mini model's training takes; each model's own subclass sets its defaults (the
    step counts its checks were measured at) and adds its model config."""

    steps: int = 500
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    log_every: int = 25


def print_line(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def optimise(
    parameters: Iterable[torch.nn.Parameter],
    step_loss: Callable[[], torch.Tensor],
    steps: int,
    learning_rate: float,
    log_every: int,
    log: LossLog,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """Runs `steps` Adam steps on `step_loss()`, calling `after_step` after each; returns every
    step's loss and logs {"step", "loss"} every `log_every` steps and at the last."""
    optimiser = torch.optim.Adam(parameters, lr=learning_rate)
    losses = []
    for step in range(1, steps + 1):
        value = step_loss()
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        if after_step is not None:
            after_step()
        losses.append(value.item())
        if step % log_every == 0 or step == steps:
            log(json.dumps({"step": step, "loss": round(losses[-1], 5)}))
    return losses
