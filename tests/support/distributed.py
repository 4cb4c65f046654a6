"""What the data-parallel tests share: a short stage-2 config and a gloo process group per rank."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from experiments.config import RunConfig
from experiments.recipes.align import AlignObjective
from experiments.recipes.run import seed_everything
from tests.support.tiny import tiny_config

STEPS = 6
PREEMPTED_AT = 4  # the step boundary at which rank 0 holds the warning signal


def align_config(assets: Path, sets: dict[str, object] | None = None, **train_values) -> RunConfig:
    values = dict(steps=STEPS, batch_size=8, rec_weight=0.0, log_every=1, eval_every=STEPS,
                  checkpoint_every=3)
    return tiny_config(assets, "aligner-12", sets, **{**values, **train_values})


def fresh_objective(config: RunConfig) -> AlignObjective:
    seed_everything(config.seed)
    return AlignObjective(config)


def join_gloo(rank: int, world: int, folder: Path) -> None:
    # A rank left waiting by a broken loop fails the test within a minute instead of hanging it.
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
