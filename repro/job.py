"""What runs inside a launched job: one RunSpec, start (or resume) to finish, tracked in MLflow.

The submitted callable and its arguments are small, picklable and stateless: everything a
requeued or re-run job needs (its MLflow run, its checkpoints) it finds again from the config
hash, never from state captured at submission time.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from mlflow import MlflowClient

from experiments.recipes import run_recipe
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


@dataclass(frozen=True)
class JobResult:
    config_hash: str
    run_id: str
    status: str  # "FINISHED" or "FAILED"
    metrics: dict[str, float]
    failure: str | None


def execute(spec: RunSpec, ctx: JobContext) -> JobResult:
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
        result = run_recipe(spec.config, run_dir, ctx.cache_dir, tracker, progress=sys.stderr.isatty())
    except BaseException as error:
        # Record why, leave the checkpoints in place for the next attempt, and let the
        # executor see the original exception.
        tracker.set_tags({tags.FAILURE_REASON: f"crashed: {type(error).__name__}: {error}"[:4000]})
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
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
