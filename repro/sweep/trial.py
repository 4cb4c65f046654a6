"""What runs inside one trial's job: the trial's RunSpec through repro.launch.run_job.execute, watched by
the study's pruner, and the outcome told to the study.

The job tells the study itself, so a trial's end is recorded in durable storage as soon as it
happens, whether or not the sweep that launched it is still alive. A job that is killed tells
nothing: its trial stays RUNNING, which is how a restarted sweep knows to resume it. A job that
is preempted or times out tells nothing either: submitit requeues it (TrialRunJob), and the
requeued attempt goes on reporting to the same trial and tells the study once, at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
import submitit
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import TrialState

from repro.config.schema import RunSpec
from repro.config.sweep import SweepSpec
from repro.launch.failures import clip
from repro.launch.run_job import IN_PROGRESS, JobContext, defer_preemption, execute
from repro.sweep import tags as sweep_tags
from repro.sweep.parent_run import failed_trial_run, trial_tags
from repro.sweep.pruning import Pruned, PruningTracker
from repro.sweep.study import annotate, make_pruner, open_storage
from repro.tracking import tags
from repro.tracking.mlflow_runs import MlflowTracker, is_done, runs_with_hash


@dataclass(frozen=True)
class TrialJob:
    spec: RunSpec
    ctx: JobContext
    storage: str
    sweep: SweepSpec
    study: str
    number: int
    trial_id: int  # the storage's id of the trial, which optuna.Trial() is built from
    params: dict[str, Any]  # the trial's sampled values

    @property
    def metric(self) -> str:
        return self.sweep.metric


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # an optuna TrialState name: COMPLETE, PRUNED, FAIL, or RUNNING while another job trains it
    value: float | None  # the objective, for a COMPLETE trial
    run_id: str | None
    reason: str | None = None  # why it was pruned or failed


def run_trial(job: TrialJob) -> TrialOutcome:
    study = optuna.load_study(study_name=job.study, storage=open_storage(job.storage),
                              pruner=make_pruner(job.sweep.pruner))
    client = MlflowClient(job.ctx.tracking_uri)
    finished = _finished_run(client, job)
    if finished is not None:
        # Killed after its run ended but before the study heard: only the telling is left.
        return _settle(study, client, job, finished.info.run_id, finished.data.tags.get(tags.FAILURE_REASON))

    trackers: list[MlflowTracker] = []

    def watch(tracker: MlflowTracker) -> PruningTracker:
        trackers.append(tracker)
        tracker.set_tags(trial_tags(job.sweep.name, job.study, job.number))
        annotate(study, job.trial_id, {sweep_tags.ATTR_RUN_ID: tracker.run_id})
        return PruningTracker(tracker, optuna.Trial(study, job.trial_id), job.metric)

    try:
        result = execute(job.spec, job.ctx, wrap_tracker=watch)
    except Pruned as pruned:
        return _end(study, client, job, trackers[0].run_id, TrialState.PRUNED, None, str(pruned))
    except Exception as error:
        # Not BaseException: submitit ends a preempted attempt it has requeued with SystemExit,
        # and that trial is not over.
        reason = f"crashed: {type(error).__name__}: {error}"
        if trackers:
            _end(study, client, job, trackers[0].run_id, TrialState.FAIL, None, reason)
        else:  # it died before its run opened: the trial still gets one
            fail_without_run(study, client, job, reason)
        raise
    if result.status == IN_PROGRESS:
        # Another job holds the trial's run (a second start of the sweep, a stray requeue): that
        # job tells the study, and this one must neither touch the run nor end the trial.
        return TrialOutcome(job.number, TrialState.RUNNING.name, None, None, result.failure)
    assert result.run_id is not None  # a trial runs as one rank (sweep/runs.py), rank 0, which tracks
    return _settle(study, client, job, result.run_id, result.failure)


class TrialRunJob(submitit.helpers.Checkpointable):
    """What the sweep submits: run_trial(job), requeued on preemption or timeout like
    repro.launch.run_job.RunJob. It holds no state, so the requeued attempt is the same call: it finds the
    trial's checkpoint and MLflow run by the config hash, and the trial by its id."""

    def __call__(self, job: TrialJob) -> TrialOutcome:
        defer_preemption()
        return run_trial(job)


def _finished_run(client: MlflowClient, job: TrialJob) -> Run | None:
    runs = runs_with_hash(client, job.ctx.experiment_id, job.spec.config_hash)
    return runs[0] if runs and is_done(runs[0]) else None


def _settle(
    study: optuna.Study, client: MlflowClient, job: TrialJob, run_id: str, failure: str | None
) -> TrialOutcome:
    """A run that ended by itself: its objective is the last value of the metric it logged,
    the same number the MLflow UI and the report show for it."""
    if failure is not None:
        return _end(study, client, job, run_id, TrialState.FAIL, None, failure)
    value = client.get_run(run_id).data.metrics.get(job.metric)
    if value is None or math.isnan(value):
        return _end(study, client, job, run_id, TrialState.FAIL, None, f"no value of {job.metric}: {value}")
    return _end(study, client, job, run_id, TrialState.COMPLETE, value, None)


def _end(
    study: optuna.Study, client: MlflowClient, job: TrialJob, run_id: str,
    state: TrialState, value: float | None, reason: str | None,
) -> TrialOutcome:
    # The run is written first and the study told last: a kill in between leaves the trial
    # RUNNING, so a resumed sweep settles it again, rather than a finished trial whose run
    # lacks its objective.
    tracker = MlflowTracker(client, run_id)
    tracker.set_tags({sweep_tags.STATE: state.name})
    if value is not None:
        tracker.log_metrics({sweep_tags.METRIC_OBJECTIVE: value}, step=job.spec.config.train.steps)
    if state == TrialState.FAIL and reason is not None:
        tracker.set_tags({tags.FAILURE_REASON: clip(reason)})
        annotate(study, job.trial_id, {sweep_tags.ATTR_FAILURE: clip(reason)})
    study.tell(job.number, value, state=state, skip_if_finished=True)
    return TrialOutcome(job.number, state.name, value, run_id, reason)


def fail_without_run(study: optuna.Study, client: MlflowClient, job: TrialJob, reason: str) -> TrialOutcome:
    """A trial whose job ended before opening its MLflow run (or died too hard to say why): FAIL,
    with a run of its own that says why."""
    run_id = failed_trial_run(client, job.ctx, job.sweep, job.study, job.number, job.params, reason, job.spec)
    annotate(study, job.trial_id, {sweep_tags.ATTR_RUN_ID: run_id})
    return _end(study, client, job, run_id, TrialState.FAIL, None, reason)
