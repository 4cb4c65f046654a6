"""A killed run resumed from its checkpoint trains as the uninterrupted run does when its steps
draw random numbers (diffusion noise and timesteps, null conditions, the frozen MLLM's dropout),
which only the random state saved in state.pt can give back to a fresh process."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.config import RunConfig
from experiments.recipes.e2e import E2EObjective
from experiments.recipes.instruct import InstructObjective
from experiments.recipes.run import seed_everything
from experiments.training.loop import train
from experiments.training.objective import Objective
from experiments.training.tracker import RecordingTracker
from tests.support.interrupt import train_until
from tests.support.runs import finished_stage2
from tests.support.tiny import stage3_config, tiny_config

STEPS, CHECKPOINT_EVERY, STOP_AT = 4, 2, 3  # killed in step 3, one after the checkpoint at 2
SHORT = dict(steps=STEPS, log_every=1, eval_every=STEPS, checkpoint_every=CHECKPOINT_EVERY)
IN_PROCESS = {"data.num_workers": 0, "train.optim.warmup_steps": 1}


def built(objective_class: type[Objective], config: RunConfig) -> Objective:
    seed_everything(config.seed)  # as run_recipe does in every (fresh) process
    return objective_class(config)


def assert_resumes_exactly(objective_class: type[Objective], config: RunConfig, tmp_path: Path) -> None:
    straight = built(objective_class, config)
    straight_log = RecordingTracker()
    train(straight, config.train, tmp_path / "straight", straight_log, progress=False)

    train_until(built(objective_class, config), config.train, tmp_path / "split", STOP_AT)
    resumed = built(objective_class, config)
    resumed_log = RecordingTracker()
    train(resumed, config.train, tmp_path / "split", resumed_log, progress=False)

    losses = straight_log.series("train/loss")
    assert len(set(losses)) == STEPS  # every step's loss its own: the steps did draw
    assert resumed_log.series("train/loss") == losses[CHECKPOINT_EVERY:]
    for name, weight in straight.trainable.state_dict().items():
        torch.testing.assert_close(resumed.trainable.state_dict()[name], weight, rtol=0, atol=0, msg=name)


def test_an_e2e_run_resumes_into_the_same_noise(tiny_assets: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_assets, "e2e-aligner", IN_PROCESS, batch_size=4, mllm_dropout=0.1, **SHORT)
    assert config.train.null_condition_prob > 0
    assert_resumes_exactly(E2EObjective, config, tmp_path)


def test_a_stage3_run_resumes_into_the_same_noise(tiny_assets: Path, tmp_path: Path) -> None:
    stage2 = finished_stage2(tiny_assets, tmp_path / "stage2")
    config = stage3_config(tiny_assets, stage2, IN_PROCESS, batch_size=4, **SHORT)
    assert_resumes_exactly(InstructObjective, config, tmp_path)
