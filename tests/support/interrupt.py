"""A run killed in the middle, for the resume tests: the loop stops where a crash would stop it."""

from __future__ import annotations

from pathlib import Path

from experiments.config import TrainConfig
from experiments.data.batches import WHOLE, Part
from experiments.training.loop import train
from experiments.training.objective import Objective
from experiments.training.tracker import RecordingTracker


class Interrupted(Exception):
    """Stands in for a crash or kill in the middle of a run."""


def train_until(objective: Objective, cfg: TrainConfig, run_dir: Path, stop_at: int) -> RecordingTracker:
    """Trains until the loop asks for step `stop_at`'s batch, then stops it as a kill would: the
    steps before it done, their checkpoints written, that step never finished."""
    batch = objective.batch

    def batch_or_stop(step: int, part: Part = WHOLE):
        if step == stop_at:
            raise Interrupted
        return batch(step, part)

    objective.batch = batch_or_stop
    tracker = RecordingTracker()
    try:
        train(objective, cfg, run_dir, tracker, progress=False)
    except Interrupted:
        return tracker
    raise AssertionError(f"the run ended before step {stop_at}")
