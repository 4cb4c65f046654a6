"""`repro sweep` on the tiny tier, as a user runs it: a sweep killed mid-trial and started again,
its trials as MLflow child runs, pruning from the held-out metric, and the sweep's report."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import TrialState

from experiments.tiny.assets import ensure_tiny_assets
from repro.cli import main
from repro.config import load_sweep
from repro.config.paths import asset_roots
from repro.sweep import tags as sweep_tags
from repro.sweep.runs import TrialRuns
from repro.sweep.study import open_storage, study_name
from repro.tracking import tags

ROOT = Path(__file__).resolve().parents[1]
# A two-layer aligner, a few steps, a handful of FID images through the tiny extractor: each
# trial takes seconds.
SMALL = ["aligner.layers=2", "train.steps=10", "train.eval_every=2", "train.checkpoint_every=2",
         "train.log_every=2", "train.batch_size=4", "train.optim.warmup_steps=0", "data.heldout_size=8",
         "fid.num_captions=4", "fid.steps=2", "fid.batch_size=4", "fid.feature_extractor=tiny-random-conv"]
SWEEPS = '''
[[sweep]]
name = "resume"
experiment = "aligner-12"
metric = "heldout/mse_loss"
direction = "minimize"
n_trials = 3
parallel = 2
sampler = { kind = "random", seed = 1 }
pruner = { kind = "none" }

[sweep.space]
"train.optim.lr" = { low = 1e-4, high = 3e-3, log = true }
"train.rec_weight" = { low = 0.0, high = 2.0 }

[[sweep]]
name = "prune"
experiment = "aligner-12"
metric = "heldout/mse_loss"
direction = "minimize"
n_trials = 1  # the test asks for 2 with --n-trials
pruner = { kind = "median", startup_trials = 1 }

[sweep.space]
"train.optim.lr" = { choices = [3e-3, 1e-7] }  # a learning rate and one too small to learn

[[sweep]]
name = "clash"
experiment = "aligner-12"
metric = "heldout/mse_loss"
direction = "minimize"
n_trials = 1
pruner = { kind = "none" }

[sweep.space]  # each end fits the base run's 10 steps; 8 warm-up steps in 2 steps do not
"train.steps" = { low = 2, high = 10 }
"train.optim.warmup_steps" = { low = 0, high = 8 }
'''

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "experiments.toml").write_text((ROOT / "experiments.toml").read_text() + SWEEPS)
    # The tiny assets are a deterministic build; share the checkout's rather than rebuild them.
    (folder / ".cache").mkdir()
    (folder / ".cache" / "tiny-assets").symlink_to(ensure_tiny_assets(ROOT / ".cache" / "tiny-assets"))
    return folder


@pytest.fixture(autouse=True)
def local_store(monkeypatch):
    """Each command logs to the work directory's MLflow store, whatever the environment says."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def repro(workdir: Path, *args: str) -> int:
    return main(["--workdir", str(workdir), *args, *(arg for item in SMALL for arg in ("--set", item))])


def trial_runs(workdir: Path, name: str) -> TrialRuns:
    """What `repro sweep NAME` with SMALL builds its trials from."""
    config = workdir / "experiments.toml"
    return TrialRuns(config, load_sweep(config, name), "tiny", tuple(SMALL), asset_roots(workdir))


def name_of(runs: TrialRuns) -> str:
    return study_name(runs.sweep, runs.base())


def study(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name_of(trial_runs(workdir, name)),
                             storage=open_storage(str(workdir / "optuna.journal")))


def mlflow(workdir: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def runs_by_trial(workdir: Path, name: str) -> dict[int, Run]:
    client = mlflow(workdir)
    experiment = client.get_experiment_by_name("kosmos-g")
    query = f"tags.`{sweep_tags.SWEEP}` = '{name}' and tags.`{tags.KIND}` = 'run'"
    found = client.search_runs([experiment.experiment_id], filter_string=query)
    return {int(run.data.tags[sweep_tags.TRIAL]): run for run in found}


def test_a_killed_sweep_resumes_without_repeating_finished_trials(workdir, capsys):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "repro.cli", "--workdir", str(workdir), "sweep", "resume",
               "--executor", "local", "--no-report", *(arg for item in SMALL for arg in ("--set", item))]
    # Its own session, so the kill takes the trial subprocesses with it, as Ctrl-C or scancel would.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _kill_when(lambda: _finished_and_checkpointed(workdir), process)
    finally:
        with contextlib.suppress(ProcessLookupError):  # already killed where the state was reached
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    before = study(workdir, "resume").trials
    done_before = {t.number for t in before if t.state == TrialState.COMPLETE}
    orphans = {t.number for t in before if t.state == TrialState.RUNNING}
    assert done_before and orphans
    runs_before = runs_by_trial(workdir, "resume")

    assert repro(workdir, "sweep", "resume", "--executor", "debug", "--parallel", "1") == 0
    # One word per state, Optuna's: the trials this start ran.
    summary = f"({len(orphans)} resumed): {3 - len(done_before)} complete, 0 pruned, 0 fail"
    assert summary in capsys.readouterr().out

    after = study(workdir, "resume").trials
    assert [t.number for t in after] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in after)
    runs_after = runs_by_trial(workdir, "resume")
    assert sorted(runs_after) == [0, 1, 2]
    for number in done_before:  # finished trials were not run again
        assert runs_after[number].info.end_time == runs_before[number].info.end_time
    for number in orphans:  # the killed trials went on in their own MLflow runs
        assert runs_after[number].info.run_id == runs_before[number].info.run_id
        history = mlflow(workdir).get_metric_history(runs_after[number].info.run_id, "train/loss")
        steps = {m.step for m in history}
        assert steps == set(range(2, 11, 2))


def test_each_trial_is_a_child_run_with_its_number_params_and_objective(workdir):
    trials = study(workdir, "resume").trials
    runs = runs_by_trial(workdir, "resume")
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs.values()}
    assert len(parents) == 1
    parent = mlflow(workdir).get_run(parents.pop())
    assert parent.data.tags[tags.KIND] == "sweep" and parent.info.status == "FINISHED"
    reports = {a.path for a in mlflow(workdir).list_artifacts(parent.info.run_id, tags.REPORTS_ARTIFACT)}
    assert f"{tags.REPORTS_ARTIFACT}/sweep-resume.md" in reports  # what the sweep's report step wrote
    for trial in trials:
        run = runs[trial.number]
        assert run.info.status == "FINISHED" and run.data.tags[sweep_tags.STATE] == "COMPLETE"
        assert float(run.data.params["sweep.train.optim.lr"]) == trial.params["train.optim.lr"]
        assert float(run.data.params["train.optim.lr"]) == trial.params["train.optim.lr"]
        metrics = run.data.metrics
        assert metrics[sweep_tags.METRIC_OBJECTIVE] == trial.value == metrics["heldout/mse_loss"]
    # What optuna-dashboard shows: the metric's name, and each trial's run and run folder.
    assert study(workdir, "resume").metric_names == ["heldout/mse_loss"]
    for trial in trials:
        run = runs[trial.number]
        assert trial.user_attrs == {sweep_tags.ATTR_RUN_ID: run.info.run_id,
                                    sweep_tags.ATTR_CONFIG_HASH: run.data.tags[tags.CONFIG_HASH]}
    best = study(workdir, "resume").best_value
    assert best == min(run.data.metrics["heldout/mse_loss"] for run in runs.values())
    assert parent.data.metrics[sweep_tags.METRIC_BEST] == best
    assert parent.data.tags[sweep_tags.BEST_TRIAL] == str(study(workdir, "resume").best_trial.number)


def test_a_trial_worse_than_the_median_is_pruned(workdir):
    runs = trial_runs(workdir, "prune")
    created = optuna.create_study(study_name=name_of(runs), direction="minimize",
                                  storage=open_storage(str(workdir / "optuna.journal")))
    # Fixed order: the median pruner lets the first trial finish and judges the second by it.
    created.enqueue_trial({"train.optim.lr": 3e-3})
    created.enqueue_trial({"train.optim.lr": 1e-7})

    assert repro(workdir, "sweep", "prune", "--executor", "debug", "--no-report", "--n-trials", "2") == 0

    good, bad = study(workdir, "prune").trials
    assert (good.state, bad.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert list(bad.intermediate_values) == [2]
    run = runs_by_trial(workdir, "prune")[1]
    assert run.info.status == "KILLED" and run.data.tags[sweep_tags.STATE] == "PRUNED"
    assert run.data.tags[tags.FAILURE_REASON].startswith("pruned at step 2")
    assert [m.step for m in mlflow(workdir).get_metric_history(run.info.run_id, "heldout/mse_loss")] == [2]


def test_params_that_clash_only_together_fail_their_trial_which_gets_its_run(workdir, capsys):
    runs = trial_runs(workdir, "clash")
    created = optuna.create_study(study_name=name_of(runs), direction="minimize",
                                  storage=open_storage(str(workdir / "optuna.journal")))
    created.enqueue_trial({"train.steps": 2, "train.optim.warmup_steps": 8})

    assert repro(workdir, "sweep", "clash", "--executor", "debug", "--no-report") == 1
    assert "1 trial(s) ran (0 resumed): 0 complete, 0 pruned, 1 fail" in capsys.readouterr().out
    (trial,) = study(workdir, "clash").trials
    assert trial.state == TrialState.FAIL
    assert "8 warm-up steps exceed train.steps 2" in trial.user_attrs[sweep_tags.ATTR_FAILURE]
    run = runs_by_trial(workdir, "clash")[0]
    assert trial.user_attrs[sweep_tags.ATTR_RUN_ID] == run.info.run_id
    assert run.info.status == "FAILED" and run.data.tags[sweep_tags.STATE] == "FAIL"
    assert "8 warm-up steps exceed" in run.data.tags[tags.FAILURE_REASON]
    assert run.data.params == {"sweep.train.steps": "2", "sweep.train.optim.warmup_steps": "8"}


def test_report_writes_the_sweep_table_and_plots(workdir):
    assert main(["--workdir", str(workdir), "report", "--tier", "tiny"]) == 0
    reports = workdir / "reports"
    best = study(workdir, "resume").best_trial
    markdown = (reports / "sweep-resume.md").read_text()
    assert f"**Best: trial {best.number}**" in markdown and "3 of 3 trials: 3 complete" in markdown
    lines = (reports / "sweep-resume.csv").read_text().splitlines()
    assert lines[0].startswith("trial,state,value") and len(lines) == 4
    for name in ("history", "intermediate", "slice", "importances"):
        assert (reports / f"sweep-resume_{name}.png").stat().st_size > 5_000
    assert "1 pruned" in (reports / "sweep-prune.md").read_text()


def _finished_and_checkpointed(workdir: Path) -> bool:
    """Some trial has completed while another is mid-training, past a checkpoint."""
    if not (workdir / "optuna.journal").exists():
        return False
    try:
        trials = study(workdir, "resume").trials
    except KeyError:  # the study is not created yet
        return False
    runs = trial_runs(workdir, "resume")
    def checkpointed(trial) -> bool:
        run_dir = workdir / "runs" / runs.trial(name_of(runs), trial.number, trial.params).config_hash
        return bool(list(run_dir.glob("checkpoints/step-*/model.safetensors")))

    return any(t.state == TrialState.COMPLETE for t in trials) and any(
        checkpointed(t) for t in trials if t.state == TrialState.RUNNING
    )


def _kill_when(found, process: subprocess.Popen, timeout: float = 600.0) -> None:
    """SIGKILL to the sweep's whole session at a moment `found` holds. The session is frozen
    (SIGSTOP) while `found` is checked again, so no trial can finish between the check and the
    kill: reading the study and the run folders takes seconds on a busy box."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "repro sweep exited before the state the test waits for"
        if found():
            os.killpg(process.pid, signal.SIGSTOP)
            if found():
                os.killpg(process.pid, signal.SIGKILL)
                return
            os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("the sweep never reached the state the test waits for")
