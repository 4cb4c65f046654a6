"""Two launchers and a SIGTERM, as on a login node: a second `repro run` of the same plan leaves
runs in progress to the first, SIGTERM stops the first's jobs (no process outlives it) and marks
their runs KILLED, and running the plan again resumes them into the same MLflow runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from repro.launch.run_lock import in_progress
from repro.tracking import tags
from tests.support.workdirs import QUICK_LOGS_AND_FID, ROOT, child_runs, new_workdir, two_runs_launch

pytestmark = pytest.mark.slow

# Few steps keep the rerun short; the jobs are held (SIGSTOP) while the second launcher looks, so
# they cannot finish before the SIGTERM however fast the box is.
STEPS = 40


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _checkpointed(workdir: Path) -> list[Path] | None:
    """Both run folders, once each holds a checkpoint to resume from."""
    found = sorted({p.parents[2] for p in workdir.glob("runs/*/checkpoints/step-*/state.pt")})
    return found if len(found) == 2 else None


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _freeze_outside_the_store(pids: set[int], store: Path) -> None:
    """SIGSTOP the jobs at a moment none of them holds a lock on the SQLite store: one frozen inside
    a transaction would keep every other process out of it, which no real run does."""
    for _ in range(100):
        _signal_all(pids, signal.SIGSTOP)
        probe = sqlite3.connect(store, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN EXCLUSIVE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
        finally:
            probe.close()
        _signal_all(pids, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the jobs never left the MLflow store free")


def _wait_for(found, process: subprocess.Popen, timeout: float = 900.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        assert process.poll() is None, "repro run exited before both runs checkpointed"
        time.sleep(0.2)
    raise AssertionError("the runs did not checkpoint in time")


def test_sigterm_with_two_runs_in_flight_then_a_rerun_resumes(tmp_path: Path):
    workdir = new_workdir(tmp_path / "work")
    command, env = two_runs_launch(workdir, STEPS, "--set", "train.checkpoint_every=4", *QUICK_LOGS_AND_FID)
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    spawned: set[int] = set()
    try:
        run_dirs = _wait_for(lambda: _checkpointed(workdir), launcher)
        assert all(in_progress(run_dir) is not None for run_dir in run_dirs)

        spawned = _descendants(launcher.pid)
        assert len(spawned) >= 2
        _freeze_outside_the_store(spawned, workdir / "mlflow.db")
        # A second launcher of the same plan trains nothing: both runs are someone else's.
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
        assert second.stderr.count("in progress elsewhere, left to it") == 2, second.stderr[-3000:]
        _, runs = child_runs(workdir)
        assert len(runs) == 2 and {r.info.status for r in runs} == {"RUNNING"}

        _signal_all(spawned, signal.SIGCONT)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if launcher.poll() is None:
            launcher.kill()
            _signal_all(spawned, signal.SIGKILL)
        log.close()
    text = (tmp_path / "launcher.log").read_text()
    assert "stopped by SIGTERM" in text, text[-3000:]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in spawned) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in spawned if _alive(pid)], "jobs outlived their launcher"
    assert all(in_progress(run_dir) is None for run_dir in run_dirs)

    client, killed = child_runs(workdir)
    assert {r.info.status for r in killed} == {"KILLED"}
    assert all("SIGTERM" in r.data.tags[tags.FAILURE_REASON] for r in killed)

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    _, resumed = child_runs(workdir)
    assert {r.info.run_id for r in resumed} == {r.info.run_id for r in killed}
    assert {r.info.status for r in resumed} == {"FINISHED"}
    for run in resumed:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert sorted(set(steps)) == list(range(2, STEPS + 1, 2))
        # Only steps after the last checkpoint (4 steps, logged every 2) were trained twice.
        assert len(steps) - len(set(steps)) <= 2
