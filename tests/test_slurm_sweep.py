"""Against a real SLURM (scripts/slurm-local.sh starts one on this machine): a sweep's trial that is
preempted checkpoints on SLURM's warning signal, is requeued, and resumes into the same MLflow run
and the same Optuna trial, which ends COMPLETE as the study's only trial.

Run alone with `pytest -m slurm`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import optuna
from optuna.trial import TrialState

from experiments.tiny.assets import ensure_tiny_assets
from repro.config import load_sweep
from repro.config.paths import asset_roots
from repro.sweep import tags as sweep_tags
from repro.sweep.runs import TrialRuns
from repro.sweep.study import open_storage, study_name
from repro.tracking import tags
from tests.support.slurm import SLURM_ONLY, preempt, wait_for
from tests.support.workdirs import ROOT, child_runs, new_workdir

# Marked slurm, and skipped where no SLURM controller answers.
pytestmark = SLURM_ONLY

# One trial, long enough to be preempted after its step-25 checkpoint; no FID, which only adds time.
SWEEP = '''
[[sweep]]
name = "requeue"
experiment = "aligner-12"
metric = "heldout/mse_loss"  # logged every 25 steps (the tiny tier's eval_every)
direction = "minimize"
n_trials = 1
parallel = 1
sampler = { kind = "random", seed = 0 }
pruner = { kind = "none" }
train = { steps = 100, checkpoint_every = 25, log_every = 2 }
fid = { enabled = false }
launch = { cpus_per_task = 1 }

[sweep.space]
"train.optim.lr" = { choices = [1e-3] }
'''


def test_a_preempted_trial_is_requeued_and_completes_as_the_same_trial(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = new_workdir(tmp_path / "sweep")
    config = workdir / "experiments.toml"
    config.write_text(config.read_text() + SWEEP)
    # The tiny assets are a deterministic build; share the checkout's rather than rebuild them.
    (workdir / ".cache").mkdir()
    (workdir / ".cache" / "tiny-assets").symlink_to(ensure_tiny_assets(ROOT / ".cache" / "tiny-assets"))

    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    log = tmp_path / "sweep.log"
    with open(log, "w") as output:
        # Its own session, so that a failing test can end the driver without touching pytest.
        driver = subprocess.Popen(
            [sys.executable, "-m", "repro.cli", "--workdir", str(workdir), "sweep", "requeue",
             "--executor", "slurm", "--no-report"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    job_id = None
    try:
        wait_for(lambda: list((workdir / "runs").glob("*/checkpoints/step-00000025/model.safetensors")), 240)
        client, (run,) = child_runs(workdir)
        job_id = run.data.tags[tags.JOB_ID]
        preempt(workdir, job_id)
        assert driver.wait(timeout=300) == 0, log.read_text()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            if job_id is not None:
                subprocess.run(["scancel", job_id])

    runs = TrialRuns(config, load_sweep(config, "requeue"), "tiny", (), asset_roots(workdir))
    study = optuna.load_study(study_name=study_name(runs.sweep, runs.base()),
                              storage=open_storage(str(workdir / "optuna.journal")))
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, log.read_text()
    # Reported by both attempts: the first up to the preemption, the requeued one after it.
    assert sorted(trial.intermediate_values) == list(range(25, 101, 25))

    _, (after,) = child_runs(workdir)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags[sweep_tags.TRIAL] == "0" and after.data.tags[sweep_tags.STATE] == "COMPLETE"
    assert after.data.tags[tags.JOB_ID] == job_id  # requeued, not a new job
    assert after.data.metrics[sweep_tags.METRIC_OBJECTIVE] == trial.value
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(steps) == list(range(2, 101, 2)), "a step was skipped or trained twice"
