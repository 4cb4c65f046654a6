"""`repro status` and `repro cancel`: the jobs of one campaign, read back from its MLflow parent
run (where `repro run` records each run's job id) and from SLURM."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import submitit
from mlflow import MlflowClient

from repro.config.schema import Matrix, RunSpec
from repro.launch.campaign import campaign_id
from repro.tracking import tags
from repro.tracking.mlflow_runs import find_campaign, runs_with_hash

_NOT_STARTED = "-"
# UNKNOWN: sacct has not heard of it yet (just submitted) or there is no accounting at all.
_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING",
           "SUSPENDED", "UNKNOWN"}


@dataclass(frozen=True)
class RunState:
    spec: RunSpec
    executor: str  # "-" when the run was never submitted by this campaign
    job_id: str
    job_state: str  # SLURM's (through sacct), "-" for local jobs, which no longer exist
    mlflow_status: str  # the newest MLflow run of this config: RUNNING, FINISHED, ...


def campaign_states(matrix: Matrix, workdir: Path, tracking_uri: str, experiment_name: str) -> list[RunState]:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return [
            RunState(spec, _NOT_STARTED, _NOT_STARTED, _NOT_STARTED, _NOT_STARTED) for spec in matrix.runs
        ]
    parent = find_campaign(client, experiment.experiment_id, campaign_id(matrix.runs))
    recorded = parent.data.tags if parent is not None else {}
    states = []
    for spec in matrix.runs:
        executor, _, job_id = recorded.get(f"{tags.CAMPAIGN_JOB}{spec.config_hash}", "-:-").partition(":")
        job_state = _NOT_STARTED
        if executor == "slurm":
            job_state = submitit.SlurmJob(folder=workdir.resolve() / "jobs" / "%j", job_id=job_id).state
        runs = runs_with_hash(client, experiment.experiment_id, spec.config_hash)
        status = runs[0].info.status if runs else _NOT_STARTED
        states.append(RunState(spec, executor, job_id, job_state, status))
    return states


def format_states(states: list[RunState]) -> str:
    rows = [("hash", "row", "seed", "executor", "job", "job state", "mlflow")]
    rows += [(s.spec.config_hash, s.spec.run_name.rsplit(" seed=", 1)[0], str(s.spec.seed), s.executor,
              s.job_id, s.job_state, s.mlflow_status) for s in states]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def cancel_campaign(states: list[RunState]) -> list[str]:
    """scancel the campaign's SLURM jobs that have not ended; returns their ids."""
    ids = [s.job_id for s in states if s.executor == "slurm" and s.job_state in _ACTIVE]
    if ids:
        # Not checked: a job that ends between sacct and scancel makes scancel complain.
        subprocess.run(["scancel", *ids], check=False)
    return ids
