"""A stop reaches the jobs: with two tiny runs training, SIGTERM to a launcher that a script
started in the background (SIGINT ignored, as `repro run ... &` inherits it) and Ctrl-C at the
launcher's terminal (SIGINT to its whole process group) each stop every run within seconds, at a
step boundary with a checkpoint of the last step it logged, KILLED in MLflow, and the jobs end by
themselves, before the launcher's 30 s grace runs out and its SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from repro.tracking import tags
from tests.support.workdirs import ROOT, child_runs, new_workdir, two_runs_launch

pytestmark = pytest.mark.slow

# Never reached: the only checkpoint a run can hold is the one its stop writes.
STEPS = 100_000
# From the signal to the stop's checkpoint: a step and a save, under a second on an idle box, a
# few on a loaded one; far below the launcher's 30 s grace.
STOP_SECONDS = 10.0


def _logged_steps(store: Path) -> dict[str, int]:
    """Each run's last train/loss step so far (MLflow's SQLite schema)."""
    try:
        with sqlite3.connect(store, timeout=5) as db:
            rows = db.execute("SELECT run_uuid, MAX(step) FROM metrics WHERE key = 'train/loss' "
                              "GROUP BY run_uuid")
            return dict(rows.fetchall())
    except sqlite3.OperationalError:  # the store's tables are not made yet
        return {}


@pytest.mark.parametrize("stop", ["sigterm_background", "ctrl_c_terminal"])
def test_a_stop_ends_both_runs_at_a_step_with_a_checkpoint(tmp_path: Path, stop: str):
    workdir = new_workdir(tmp_path / "work")
    command, env = two_runs_launch(workdir, STEPS, "--set", f"train.checkpoint_every={STEPS}",
                                   "--set", f"train.eval_every={STEPS}", "--set", "train.log_every=1")
    background = stop == "sigterm_background"

    def start_as_the_shell_would() -> None:
        if background:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=start_as_the_shell_would)
    try:
        deadline = time.monotonic() + 900
        while len(_logged_steps(workdir / "mlflow.db")) < 2:
            assert launcher.poll() is None and time.monotonic() < deadline, "the runs never started training"
            time.sleep(0.5)
        signalled = time.time()
        if background:
            launcher.send_signal(signal.SIGTERM)
        else:
            os.killpg(launcher.pid, signal.SIGINT)
        status = launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        log.close()
    text = (tmp_path / "launcher.log").read_text()
    assert status == 128 + (signal.SIGTERM if background else signal.SIGINT), text[-3000:]
    assert "did not stop within" not in text, text[-3000:]  # no job needed the SIGKILL

    client, runs = child_runs(workdir)
    logged = _logged_steps(workdir / "mlflow.db")
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "KILLED"
        assert ("SIGTERM" if background else "SIGINT") in run.data.tags[tags.FAILURE_REASON]
        run_dir = workdir / "runs" / run.data.tags[tags.CONFIG_HASH]
        (checkpoint,) = (run_dir / "checkpoints").glob("step-*")
        # The stop's checkpoint, at the step boundary after the last step the run logged.
        assert int(checkpoint.name.removeprefix("step-")) == logged[run.info.run_id] >= 1
        took = max(file.stat().st_mtime for file in checkpoint.iterdir()) - signalled
        assert took < STOP_SECONDS, f"the run stopped {took:.1f} s after the signal"
