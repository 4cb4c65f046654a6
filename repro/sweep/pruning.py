"""Pruning from the recipes' own periodic held-out evaluation, with no recipe knowing of Optuna:
the trial's tracker reports each value of the sweep's metric to the trial as it is logged."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import optuna

from experiments.training.tracker import DataInput, Tracker
from repro.launch.run_job import StopRun


class Pruned(StopRun):
    """The study's pruner stopped this trial."""


class PruningTracker:
    def __init__(self, inner: Tracker, trial: optuna.Trial, metric: str) -> None:
        self.inner = inner
        self.trial = trial
        self.metric = metric

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.inner.log_metrics(metrics, step)
        if self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        # A resumed trial logs again the steps after its last checkpoint; Optuna keeps the
        # first value reported for a step and ignores the repeat.
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise Pruned(f"pruned at step {step}: {self.metric} = {value:.4g}")

    def log_params(self, params: Mapping[str, object]) -> None:
        self.inner.log_params(params)

    def log_inputs(self, inputs: list[DataInput]) -> None:
        self.inner.log_inputs(inputs)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.inner.log_artifact(path, folder)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.inner.set_tags(tags)
