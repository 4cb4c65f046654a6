"""TrialRunJob, what `repro sweep` submits for each trial: submitit requeues it the way it requeues
repro.launch.run_job.RunJob, and an attempt that submitit ends after requeuing it leaves its trial RUNNING
for the requeued attempt to finish. tests/test_slurm_sweep.py preempts one on a real SLURM."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from submitit.core.utils import DelayedSubmission

from repro.config import load_sweep
from repro.config.paths import TINY_PREFIX
from repro.launch.run_job import JobContext, JobResult
from repro.launch.run_lock import RunLock
from repro.sweep import tags as sweep_tags
from repro.sweep import trial as trial_module
from repro.sweep.runs import TrialRuns
from repro.sweep.study import distributions, open_storage, study_name
from repro.sweep.trial import TrialJob, TrialRunJob
from repro.tracking.mlflow_runs import ensure_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def trial_job(tmp_path) -> TrialJob:
    """Trial 0 of the project's align-lr sweep, asked of a study of its own in tmp_path."""
    config = ROOT / "experiments.toml"
    assets = {TINY_PREFIX: tmp_path / "tiny-assets"}
    runs = TrialRuns(config, load_sweep(config, "align-lr"), "tiny", (), assets)
    name = study_name(runs.sweep, runs.base())
    storage = str(tmp_path / "optuna.journal")
    trial = optuna.create_study(study_name=name, storage=open_storage(storage)).ask(distributions(runs.sweep))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment(MlflowClient(uri), "kosmos-g", tmp_path / "mlartifacts")
    ctx = JobContext(uri, experiment_id, "", tmp_path)
    return TrialJob(runs.trial(name, trial.number, trial.params), ctx, storage, runs.sweep, name,
                    trial.number, trial._trial_id, trial.params)


def test_checkpoint_resubmits_the_same_stateless_job_with_the_same_trial(trial_job, tmp_path):
    job = TrialRunJob()
    delayed = job.checkpoint(trial_job)
    assert isinstance(delayed, DelayedSubmission)
    assert delayed.function is job and delayed.args == (trial_job,) and delayed.kwargs == {}
    assert vars(job) == {}
    # What submitit writes for the requeued attempt and loads in it.
    delayed.dump(tmp_path / "submitted.pkl")
    loaded = DelayedSubmission.load(tmp_path / "submitted.pkl")
    assert type(loaded.function) is TrialRunJob and vars(loaded.function) == {}
    assert loaded.args == (trial_job,) and loaded.kwargs == {}


@pytest.mark.parametrize(("ending", "state"), [
    (SystemExit(-1), TrialState.RUNNING),  # how submitit's handler ends an attempt it has requeued
    (RuntimeError("out of disk"), TrialState.FAIL),  # a real crash
])
def test_only_a_real_crash_ends_the_trial(trial_job, monkeypatch, ending, state):
    def execute(spec, ctx, wrap_tracker):
        raise ending

    monkeypatch.setattr(trial_module, "execute", execute)
    job = TrialRunJob()
    with pytest.raises(type(ending)):
        job(trial_job)
    assert vars(job) == {}
    (trial,) = optuna.load_study(study_name=trial_job.study, storage=open_storage(trial_job.storage)).trials
    assert trial.state == state
    if state == TrialState.FAIL:  # it crashed before opening its run, and still has one that says why
        assert trial.user_attrs[sweep_tags.ATTR_FAILURE] == "crashed: RuntimeError: out of disk"
        run = MlflowClient(trial_job.ctx.tracking_uri).get_run(trial.user_attrs[sweep_tags.ATTR_RUN_ID])
        assert run.info.status == "FAILED" and run.data.tags[sweep_tags.STATE] == "FAIL"
        assert run.data.tags[sweep_tags.TRIAL] == "0"
        assert run.data.tags["config_hash"] == trial_job.spec.config_hash


def test_a_kill_while_settling_leaves_the_trial_for_a_resumed_sweep(trial_job, monkeypatch):
    """The run gets its objective before the study hears: a kill between the two leaves the
    trial RUNNING (resumed later), never COMPLETE with a run that lacks its objective."""
    client = MlflowClient(trial_job.ctx.tracking_uri)
    run_id = client.create_run(trial_job.ctx.experiment_id).info.run_id
    client.log_metric(run_id, trial_job.metric, 0.25)
    client.set_terminated(run_id)

    def execute(spec, ctx, wrap_tracker):
        return JobResult(spec.config_hash, run_id, "FINISHED", {trial_job.metric: 0.25}, None)

    def killed(*args, **kwargs):
        raise SystemExit(-9)

    monkeypatch.setattr(trial_module, "execute", execute)
    monkeypatch.setattr(optuna.Study, "tell", killed)
    with pytest.raises(SystemExit):
        TrialRunJob()(trial_job)
    monkeypatch.undo()
    assert client.get_run(run_id).data.metrics[sweep_tags.METRIC_OBJECTIVE] == 0.25
    (trial,) = optuna.load_study(study_name=trial_job.study, storage=open_storage(trial_job.storage)).trials
    assert trial.state == TrialState.RUNNING


def test_a_trial_whose_run_another_job_trains_is_left_to_that_job(trial_job):
    """A second attempt at a trial (a sweep started twice, a stray requeue) finds the run's lock
    held: it opens no run, trains nothing, and leaves the trial RUNNING for the holder to end."""
    holder = RunLock(trial_job.ctx.runs_dir / trial_job.spec.config_hash)
    assert holder.acquire()
    try:
        outcome = TrialRunJob()(trial_job)
    finally:
        holder.release()
    assert outcome.state == TrialState.RUNNING.name and outcome.run_id is None
    assert "in progress elsewhere" in outcome.reason
    (trial,) = optuna.load_study(study_name=trial_job.study, storage=open_storage(trial_job.storage)).trials
    assert trial.state == TrialState.RUNNING
    client = MlflowClient(trial_job.ctx.tracking_uri)
    assert client.search_runs([trial_job.ctx.experiment_id]) == []
