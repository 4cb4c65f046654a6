"""What runs inside a launched job: one RunSpec, start (or resume) to finish, tracked in MLflow.

The submitted callable and its arguments are small, picklable and stateless: everything a
requeued or re-run job needs (its MLflow run, its checkpoints) it finds again from the config
hash, never from state captured at submission time.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from mlflow import MlflowClient

from experiments.recipes import run_recipe
from experiments.tracking import Tracker
from repro import tags
from repro.config.schema import RunSpec
from repro.tracking import MlflowTracker, open_run


@dataclass(frozen=True)
class JobContext:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    workdir: Path
    threads: int | None = None  # torch intra-op threads; None keeps torch's default

    @property
    def runs_dir(self) -> Path:
        return self.workdir / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.workdir / ".cache"


class StopRun(Exception):
    """Raised from inside a recipe (through a wrapped tracker) to end a run early on purpose,
    e.g. a sweep pruning a trial: the run ends KILLED with this message as its reason, not as a
    crash."""


@dataclass(frozen=True)
class JobResult:
    config_hash: str
    run_id: str
    status: str  # "FINISHED" or "FAILED"
    metrics: dict[str, float]
    failure: str | None


def execute(
    spec: RunSpec, ctx: JobContext, wrap_tracker: Callable[[MlflowTracker], Tracker] | None = None
) -> JobResult:
    """wrap_tracker: what the recipe logs through, given the run's own tracker (a sweep uses it
    to watch the held-out metric); the recipe gets the run's tracker itself when None."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    client = MlflowClient(ctx.tracking_uri)
    run_id = open_run(client, ctx.experiment_id, ctx.parent_run_id, spec)
    tracker = MlflowTracker(client, run_id)
    run_dir = ctx.runs_dir / spec.config_hash
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "config.json"
    config_file.write_text(json.dumps(
        {"experiment": spec.experiment, "table": spec.table, "row": spec.row, "tier": spec.tier,
         "seed": spec.seed, "sweep_point": dict(spec.sweep_point), "config_hash": spec.config_hash,
         "config": asdict(spec.config)}, indent=2))
    tracker.log_artifact(config_file)
    try:
        recipe_tracker = wrap_tracker(tracker) if wrap_tracker else tracker
        result = run_recipe(spec.config, run_dir, ctx.cache_dir, recipe_tracker, progress=sys.stderr.isatty())
    except BaseException as error:
        # Record why, leave the checkpoints in place for the next attempt, and let the
        # executor see the original exception.
        stopped = isinstance(error, StopRun)
        reason = str(error) if stopped else f"crashed: {type(error).__name__}: {error}"
        tracker.set_tags({tags.FAILURE_REASON: reason[:4000]})
        status = "KILLED" if stopped or isinstance(error, KeyboardInterrupt) else "FAILED"
        client.set_terminated(run_id, status=status)
        raise
    metrics_file = run_dir / "metrics.json"
    metrics_file.write_text(json.dumps(result.metrics, indent=2))
    tracker.log_artifact(metrics_file)
    status = "FINISHED"
    if result.failure is not None:
        tracker.set_tags({tags.FAILURE_REASON: result.failure})
        status = "FAILED"
    client.set_terminated(run_id, status=status)
    return JobResult(spec.config_hash, run_id, status, result.metrics, result.failure)
