"""`repro run`: one campaign = the runs of one plan, under one MLflow parent run."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import submitit
from mlflow import MlflowClient

from repro.config.schema import Matrix, RunSpec
from repro.launch.executor import Interrupted, LaunchOutcome, dependency_waves, launch
from repro.launch.failures import clip
from repro.launch.run_job import IN_PROGRESS, JobContext, threads_per_job
from repro.launch.run_lock import in_progress
from repro.launch.signals import signal_name
from repro.tracking import tags
from repro.tracking.mlflow_runs import ensure_experiment, is_done, open_campaign, runs_with_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CampaignResult:
    parent_run_id: str
    skipped: list[RunSpec]
    outcomes: list[LaunchOutcome]
    busy: list[RunSpec]  # in progress in another launcher's job: left to it

    @property
    def ok(self) -> bool:
        """Every run it launched ended with a result: finished, diverged (the table's verdict),
        or left to the process already training it."""
        return all(
            outcome.result is not None
            and (outcome.result.status in ("FINISHED", IN_PROGRESS)
                 or (outcome.result.failure or "").startswith(tags.STATUS_DIVERGED))
            for outcome in self.outcomes
        )


def campaign_id(runs: tuple[RunSpec, ...]) -> str:
    """The same plan always maps to the same parent run, so a re-run or resume reopens it."""
    joined = ",".join(sorted(run.config_hash for run in runs))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def run_campaign(
    matrix: Matrix, *, workdir: Path, tracking_uri: str, experiment_name: str,
    parallel: int, force: bool, wait: bool = True, threads: int | None = None,
) -> CampaignResult:
    """Each run goes out on the executor its launch settings name. wait=False returns once the
    SLURM jobs are submitted (`repro status` follows them); local runs are always waited for."""
    client = MlflowClient(tracking_uri)
    experiment_id = ensure_experiment(client, experiment_name, workdir / "mlartifacts")
    campaign = campaign_id(matrix.runs)
    tables = "+".join(sorted({run.table for run in matrix.runs}))
    parent = open_campaign(client, experiment_id, f"{tables} {matrix.tier} {campaign}", campaign, matrix.tier)

    todo, skipped, busy = [], [], []
    for spec in matrix.runs:
        previous = runs_with_hash(client, experiment_id, spec.config_hash)
        if previous and is_done(previous[0]) and not force:
            skipped.append(spec)
            log.info("skipping %s: config %s already finished (--force reruns it)", spec.run_name,
                     spec.config_hash)
            continue
        holder = in_progress(workdir / "runs" / spec.config_hash)
        if holder is not None:  # checked before --force removes anything
            busy.append(spec)
            log.warning("skipping %s: config %s is in progress (%s trains it)", spec.run_name,
                        spec.config_hash, holder)
            continue
        if force:
            shutil.rmtree(workdir / "runs" / spec.config_hash, ignore_errors=True)
        todo.append(spec)

    # Split the cores between concurrent jobs rather than letting each grab all of them.
    ctx = JobContext(tracking_uri, experiment_id, parent, workdir.resolve(),
                     threads or threads_per_job(parallel))

    job_ids: dict[str, str] = {}

    def record(spec: RunSpec, job: submitit.Job) -> None:
        # What `repro status` and `repro cancel` read back; a retry overwrites its predecessor.
        job_ids[spec.config_hash] = str(job.job_id)
        client.set_tag(parent, f"{tags.CAMPAIGN_JOB}{spec.config_hash}",
                       f"{spec.launch.executor}:{job.job_id}")

    # Runs that start from another run (stage 3 after stage 2) go out once it has finished: in
    # a later wave, or, when not waiting, as SLURM jobs that depend on the earlier ones.
    finished = {spec.config_hash for spec in skipped}
    outcomes: list[LaunchOutcome] = []
    for wave in dependency_waves(todo):
        ready: list[RunSpec] = []
        for spec in wave:
            pending = [h for h in spec.after if h not in finished]
            if not pending:
                ready.append(spec)
            elif not wait and spec.launch.executor == "slurm" and all(h in job_ids for h in pending):
                ready.append(_after_jobs(spec, [job_ids[h] for h in pending]))
            else:
                reason = f"not started: the run(s) it starts from ({', '.join(pending)}) did not finish"
                log.error("%s %s", spec.run_name, reason)
                outcomes.append(LaunchOutcome(spec, "", None, reason))
        try:
            launched = launch(ready, ctx, parallel, record=record, wait=wait)
        except Interrupted as interrupted:
            _record_interrupt(client, experiment_id, parent, interrupted)
            raise interrupted.cause from None
        busy += [o.spec for o in launched if o.result is not None and o.result.status == IN_PROGRESS]
        finished |= {
            o.spec.config_hash for o in launched if o.result is not None and o.result.status == "FINISHED"
        }
        outcomes += launched
    for outcome in outcomes:
        if outcome.result is None:
            _give_up(client, experiment_id, outcome)
    result = CampaignResult(parent, skipped, outcomes, busy)
    if wait:
        client.set_terminated(parent, status="FINISHED" if result.ok else "FAILED")
    return result


def _after_jobs(spec: RunSpec, job_ids: list[str]) -> RunSpec:
    """The SLURM job waits for the jobs of the runs it starts from to succeed."""
    sbatch = {**spec.launch.sbatch, "dependency": "afterok:" + ":".join(job_ids)}
    return replace(spec, launch=replace(spec.launch, sbatch=sbatch))


def _give_up(client: MlflowClient, experiment_id: str, outcome: LaunchOutcome) -> None:
    """A run whose every attempt failed ends FAILED with the last error as its reason, also
    when the job died too hard (killed, out of memory) to say so itself."""
    runs = runs_with_hash(client, experiment_id, outcome.spec.config_hash)
    if not runs:
        return
    reason = f"gave up after {outcome.attempts} attempt(s): {outcome.error}"
    client.set_tag(runs[0].info.run_id, tags.FAILURE_REASON, clip(reason))
    client.set_terminated(runs[0].info.run_id, status="FAILED")


def _record_interrupt(
    client: MlflowClient, experiment_id: str, parent: str, interrupted: Interrupted
) -> None:
    """The runs whose jobs the launcher stopped end KILLED, saying why (a re-run resumes them);
    SLURM jobs go on without it, and `repro cancel` is what stops those."""
    name = signal_name(interrupted.cause)
    for spec in interrupted.in_flight:
        if spec.launch.executor == "slurm":
            log.warning("%s: SLURM job left running; `repro cancel` (same options) stops it", spec.run_name)
            continue
        runs = runs_with_hash(client, experiment_id, spec.config_hash)
        if runs and runs[0].info.status not in ("FINISHED", "FAILED"):
            reason = f"killed: the launcher got {name} and stopped its job; `repro run` again resumes it"
            client.set_tag(runs[0].info.run_id, tags.FAILURE_REASON, reason)
            client.set_terminated(runs[0].info.run_id, status="KILLED")
    client.set_terminated(parent, status="KILLED")
