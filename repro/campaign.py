"""`repro run`: one campaign = the runs of one plan, under one MLflow parent run."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from repro.config.schema import Matrix, RunSpec
from repro.job import JobContext
from repro.launch import LaunchOutcome, launch
from repro.tracking import ensure_experiment, is_done, open_campaign, runs_with_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CampaignResult:
    parent_run_id: str
    skipped: list[RunSpec]
    outcomes: list[LaunchOutcome]

    @property
    def ok(self) -> bool:
        return all(outcome.result is not None for outcome in self.outcomes)


def campaign_id(runs: tuple[RunSpec, ...]) -> str:
    """The same plan always maps to the same parent run, so a re-run or resume reopens it."""
    joined = ",".join(sorted(run.config_hash for run in runs))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def run_campaign(
    matrix: Matrix, *, workdir: Path, tracking_uri: str, experiment_name: str,
    executor: str, parallel: int, force: bool, timeout_min: int,
) -> CampaignResult:
    client = MlflowClient(tracking_uri)
    experiment_id = ensure_experiment(client, experiment_name, workdir / "mlartifacts")
    campaign = campaign_id(matrix.runs)
    tables = "+".join(sorted({run.table for run in matrix.runs}))
    parent = open_campaign(client, experiment_id, f"{tables} {matrix.tier} {campaign}", campaign, matrix.tier)

    todo, skipped = [], []
    for spec in matrix.runs:
        previous = runs_with_hash(client, experiment_id, spec.config_hash)
        if previous and is_done(previous[0]) and not force:
            skipped.append(spec)
            log.info("skipping %s: config %s already finished (--force reruns it)", spec.run_name, spec.config_hash)
            continue
        if force:
            shutil.rmtree(workdir / "runs" / spec.config_hash, ignore_errors=True)
        todo.append(spec)

    # Split the cores between concurrent jobs rather than letting each grab all of them.
    threads = max(1, (os.cpu_count() or 1) // max(1, parallel))
    ctx = JobContext(tracking_uri, experiment_id, parent, workdir.resolve(), threads)
    outcomes = launch(todo, ctx, executor, parallel, timeout_min)
    result = CampaignResult(parent, skipped, outcomes)
    client.set_terminated(parent, status="FINISHED" if result.ok else "FAILED")
    return result
