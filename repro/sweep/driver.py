"""`repro sweep`: an ask-and-tell driver that keeps `parallel` trial jobs in flight.

The driver alone asks the study for trials, so n_trials is exact however many run at once, and
each trial is its own submitit job (a subprocess here, a SLURM job on a cluster), like any run of
`repro run`. Each job tells the study how its trial ended. On a restart, the trials still RUNNING
in the study are the ones a killed sweep left behind: they are resubmitted under their own
number, so they find their checkpoints and MLflow run again, before any new trial is asked for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import submitit
from mlflow import MlflowClient
from optuna.trial import TrialState

from repro.config import ConfigError, SweepSpec
from repro.launch.executor import make_executor
from repro.launch.failures import clip
from repro.launch.run_job import JobContext, threads_per_job
from repro.sweep import tags as sweep_tags
from repro.sweep.parent_run import close_sweep_run, failed_trial_run, open_sweep_run
from repro.sweep.runs import TrialRuns
from repro.sweep.study import (
    annotate,
    distributions,
    make_pruner,
    make_sampler,
    open_storage,
    study_name,
)
from repro.sweep.trial import TrialJob, TrialOutcome, TrialRunJob, fail_without_run
from repro.tracking.mlflow_runs import ensure_experiment

log = logging.getLogger(__name__)

_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class SweepResult:
    study: str
    parent_run_id: str
    resumed: tuple[int, ...]  # trials a killed sweep left RUNNING, run again to their end
    outcomes: tuple[TrialOutcome, ...]  # every trial this start ran, FAIL ones with their reason
    best: optuna.trial.FrozenTrial | None

    @property
    def failed(self) -> tuple[TrialOutcome, ...]:
        return tuple(outcome for outcome in self.outcomes if outcome.state == TrialState.FAIL.name)


def run_sweep(
    runs: TrialRuns, *, workdir: Path, storage: str, tracking_uri: str, experiment_name: str,
    parallel: int,
) -> SweepResult:
    sweep = runs.sweep
    base = runs.base()
    name = study_name(sweep, base)
    client = MlflowClient(tracking_uri)
    experiment_id = ensure_experiment(client, experiment_name, workdir / "mlartifacts")
    parent = open_sweep_run(client, experiment_id, sweep, name, base.tier)
    study = _open_study(sweep, name, storage)
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    # Trials that ended in any state count, failed ones too, so a sweep whose trials all crash
    # ends. Enqueued (WAITING) trials do not: asking pops them before sampling anything new.
    started = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    budget = max(0, sweep.n_trials - len(started))
    log.info("study %s in %s: %d trials ended, %d to resume, %d to ask for",
             name, storage, len(started) - len(orphans), len(orphans), budget)

    # Split the cores between concurrent trials rather than letting each grab all of them.
    ctx = JobContext(tracking_uri, experiment_id, parent, workdir.resolve(), threads_per_job(parallel))
    # Every trial is launched as the base run would be: its launch section, --executor included.
    pool = make_executor(base.launch.executor, workdir / "jobs" / "%j", base.launch.timeout_min, base.launch)
    space = distributions(sweep)
    # FrozenTrial's _trial_id is the storage's id, the only handle that reopens a running trial.
    queue: list[tuple[int, int, dict[str, Any]]] = [(t.number, t._trial_id, t.params) for t in orphans]
    running: dict[submitit.Job, TrialJob] = {}
    outcomes: list[TrialOutcome] = []
    while queue or budget or running:
        while len(running) < parallel and (queue or budget):
            if queue:
                number, trial_id, params = queue.pop(0)
            else:
                trial = study.ask(space)
                budget -= 1
                number, trial_id, params = trial.number, trial._trial_id, trial.params
            try:
                spec = runs.trial(name, number, params)
            except ConfigError as error:
                # Params that clash only together (the space's ends were checked one by one
                # before the sweep began) fail their trial alone, which still gets its run.
                outcomes.append(
                    _invalid(client, ctx, study, sweep, name, number, trial_id, params, str(error))
                )
                continue
            annotate(study, trial_id, {sweep_tags.ATTR_CONFIG_HASH: spec.config_hash})
            job = TrialJob(spec, ctx, storage, sweep, name, number, trial_id, params)
            submitted = pool.submit(TrialRunJob(), job)
            log.info("trial %d submitted as job %s: %s", number, submitted.job_id, spec.run_name)
            running[submitted] = job
        finished = [job for job in running if job.done()]
        for submitted in finished:
            outcomes.append(_collect(submitted, running.pop(submitted), study, client))
        if not finished:
            time.sleep(_POLL_SECONDS)
    close_sweep_run(client, parent, study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return SweepResult(name, parent, tuple(t.number for t in orphans), tuple(outcomes),
                       study.best_trial if complete else None)


def _open_study(sweep: SweepSpec, name: str, storage: str) -> optuna.Study:
    """The study, created, or loaded as a finished or killed sweep left it. It carries its
    metric's name, which optuna-dashboard shows instead of "Objective 0"."""
    study = optuna.create_study(study_name=name, storage=open_storage(storage), direction=sweep.direction,
                                pruner=make_pruner(sweep.pruner), load_if_exists=True)
    study.set_metric_names([sweep.metric])
    study.sampler = make_sampler(sweep.sampler, seed_offset=len(study.trials))
    return study


def _invalid(
    client: MlflowClient, ctx: JobContext, study: optuna.Study, sweep: SweepSpec, name: str, number: int,
    trial_id: int, params: dict[str, Any], reason: str,
) -> TrialOutcome:
    run_id = failed_trial_run(client, ctx, sweep, name, number, params, reason, None)
    annotate(study, trial_id, {sweep_tags.ATTR_RUN_ID: run_id, sweep_tags.ATTR_FAILURE: clip(reason)})
    study.tell(number, state=TrialState.FAIL)
    log.error("trial %d: FAIL: %s", number, reason)
    return TrialOutcome(number, TrialState.FAIL.name, None, run_id, reason)


def _collect(
    submitted: submitit.Job, job: TrialJob, study: optuna.Study, client: MlflowClient
) -> TrialOutcome:
    """The trial's outcome; for a job that raised, FAIL with its error and where its log is."""
    try:
        outcome: TrialOutcome = submitted.result()
    except Exception as error:  # the job's own failure, re-raised by submitit
        reason = f"{error}\n(full log: {submitted.paths.stderr})"
        log.error("trial %d: FAIL: %s", job.number, reason)
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == job.number)
        if frozen.state.is_finished():  # the job told the study itself before it raised
            return TrialOutcome(job.number, frozen.state.name, None,
                                frozen.user_attrs.get(sweep_tags.ATTR_RUN_ID),
                                frozen.user_attrs.get(sweep_tags.ATTR_FAILURE, reason))
        # It died before telling the study (killed, out of memory): its trial must not stay
        # RUNNING, or the next start would resume it as orphaned.
        return fail_without_run(study, client, job, reason)
    shown = f"{job.metric} = {outcome.value:.6g}" if outcome.value is not None else outcome.reason
    log.info("trial %d: %s %s", job.number, outcome.state, shown)
    return outcome
