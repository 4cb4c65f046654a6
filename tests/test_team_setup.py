"""The team set-up, for real: `repro server` (logins on) on a PostgreSQL database, the harness
logging to it over HTTP, and the Optuna study in another database of the same PostgreSQL (both
keep an `alembic_version` table, so they cannot share one). A plan of two runs is killed and
resumed into the same MLflow runs, a sweep runs, and `repro report` reads it all back. Then the
server goes away mid-run: for half a minute, which the run rides out without logging anything
twice, and for longer than the client's retries, which stops the run with a message that says so
until a second launch resumes it from its checkpoint.

Run alone with `pytest -m postgres` (scripts/postgres-local.sh starts a local PostgreSQL)."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from experiments.tiny.assets import ensure_tiny_assets
from repro.launch.run_lock import LOCK_FILE
from repro.tracking import tags
from tests.support.team_server import TeamServer, fresh_database, require_postgres
from tests.support.workdirs import ONE_THREAD, QUICK_LOGS_AND_FID, ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SWEEP = '''
[[sweep]]
name = "team"
experiment = "aligner-12"
metric = "heldout/mse_loss"
direction = "minimize"
n_trials = 2
sampler = { kind = "random", seed = 0 }
pruner = { kind = "none" }

[sweep.space]
"train.optim.lr" = { low = 1e-4, high = 3e-3, log = true }
'''
STEPS = 24
# Checkpoints every 4 steps, losses every 2: a kill costs at most 2 logged steps trained twice.
TRAINING = ["--set", f"train.steps={STEPS}", "--set", "train.checkpoint_every=4",
            "--set", "train.eval_every=12", *QUICK_LOGS_AND_FID]
NO_FID = ["--set", "fid.enabled=false"]


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A work folder, and `repro server` on a fresh database, its URL in the environment of every
    command the tests start; plus the URL of a second database for Optuna."""
    require_postgres()
    workdir = tmp_path_factory.mktemp("team")
    (workdir / "experiments.toml").write_text((ROOT / "experiments.toml").read_text() + SWEEP)
    (workdir / ".cache").mkdir()
    (workdir / ".cache" / "tiny-assets").symlink_to(ensure_tiny_assets(ROOT / ".cache" / "tiny-assets"))
    with fresh_database() as mlflow_db, fresh_database() as optuna_db:
        server = TeamServer(workdir, mlflow_db)
        server.start()
        try:
            yield workdir, server, optuna_db
        finally:
            server.stop()


def _command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "repro.cli", "--workdir", str(workdir), *args]


def _env(server: TeamServer, **extra: str) -> dict[str, str]:
    return {**os.environ, **server.client_env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **extra}


def _repro(workdir: Path, server: TeamServer, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, *args), cwd=ROOT, env=_env(server, **extra), capture_output=True,
                          text=True, timeout=900)


def _start(workdir: Path, server: TeamServer, log: Path, *args: str, **extra: str) -> subprocess.Popen:
    """In a session of its own, so that a kill takes its jobs too, as a lost node would."""
    return subprocess.Popen(_command(workdir, *args), cwd=ROOT, env=_env(server, **extra),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(found, process: subprocess.Popen, log: Path, timeout: float = 600.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"timed out; see {log}")


def _run_dirs(workdir: Path) -> set[Path]:
    return set((workdir / "runs").glob("*"))


def _checkpointed_dirs(workdir: Path, before: set[Path], step: int) -> set[Path]:
    """The run folders not in `before` that hold a checkpoint of `step` or later."""
    newest: dict[Path, int] = {}
    for state in workdir.glob("runs/*/checkpoints/step-*/state.pt"):
        run_dir = state.parents[2]
        if run_dir not in before:
            newest[run_dir] = max(newest.get(run_dir, 0), int(state.parent.name.split("-")[1]))
    return {run_dir for run_dir, newest_step in newest.items() if newest_step >= step}


def _checkpointed(workdir: Path, before: set[Path], runs: int, step: int) -> bool:
    return len(_checkpointed_dirs(workdir, before, step)) >= runs


def _freeze_each_once_checkpointed(
    workdir: Path, before: set[Path], runs: int, step: int
) -> Callable[[], bool]:
    """Freezes each run's trainer (its pid is in the run's lock file) as soon as the run holds a
    checkpoint of `step`, so that a fast run cannot finish while a slow one is still starting;
    true once `runs` trainers are frozen mid-run."""
    frozen: set[Path] = set()

    def found() -> bool:
        for run_dir in _checkpointed_dirs(workdir, before, step) - frozen:
            pid = int((run_dir / LOCK_FILE).read_text().strip().rsplit(":", 1)[1])
            os.kill(pid, signal.SIGSTOP)
            frozen.add(run_dir)
        return len(frozen) >= runs

    return found


@contextlib.contextmanager
def _held(process: subprocess.Popen):
    """The launcher and its jobs frozen, so that what happens meanwhile happens mid-run."""
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGCONT)


def _runs(server: TeamServer, seed: int):
    with _client_env(server):
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("kosmos-g")
        runs = f"tags.`{tags.KIND}` = 'run' and tags.`{tags.SEED}` = '{seed}'"
        return client.search_runs([experiment.experiment_id], filter_string=runs)


def _loss_steps(server: TeamServer, run_id: str) -> list[int]:
    with _client_env(server):
        return [m.step for m in MlflowClient(server.uri).get_metric_history(run_id, tags.METRIC_TRAIN_LOSS)]


@contextlib.contextmanager
def _client_env(server: TeamServer):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.client_env.items():
            patch.setenv(name, value)
        yield


def test_a_plan_killed_and_resumed_a_sweep_and_the_report_through_the_server(team):
    workdir, server, optuna_db = team
    plan = ["run", "--tier", "tiny", "--only", "aligner-12", "--only", "decoder-12", "--seeds", "0",
            "--executor", "local", "--parallel", "2", *ONE_THREAD, *TRAINING]
    log = workdir / "killed.log"
    before = _run_dirs(workdir)
    launcher = _start(workdir, server, log, *plan, "--no-report")
    try:
        _wait_for(_freeze_each_once_checkpointed(workdir, before, 2, 4), launcher, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
    killed = {run.info.run_id: run for run in _runs(server, 0)}
    assert len(killed) == 2 and {run.info.status for run in killed.values()} == {"RUNNING"}

    again = _repro(workdir, server, *plan)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = _runs(server, 0)
    assert {run.info.run_id for run in resumed} == set(killed)
    assert {run.info.status for run in resumed} == {"FINISHED"}
    for run in resumed:
        steps = _loss_steps(server, run.info.run_id)
        assert sorted(set(steps)) == list(range(2, STEPS + 1, 2))
        assert len(steps) - len(set(steps)) <= 2  # only what the kill lost was trained again

    sweep = _repro(workdir, server, "sweep", "team", "--executor", "debug", "--storage", optuna_db,
                   "--no-report", "--set", "train.steps=6", "--set", "train.eval_every=3",
                   "--set", "data.heldout_size=8", "--set", "train.optim.warmup_steps=0", *NO_FID)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    (summary,) = optuna.get_all_study_summaries(optuna_db)
    assert summary.n_trials == 2 and summary.best_trial.value is not None

    report = _repro(workdir, server, "report", "--tier", "tiny")
    assert report.returncode == 0, report.stderr[-3000:]
    with open(workdir / "reports" / "table2.csv") as handle:
        rows = {row["row"]: row for row in csv.DictReader(handle) if row["n"] != "0"}
    assert len(rows) == 2 and all(float(row["mean"]) > 0 for row in rows.values()), rows
    with open(workdir / "reports" / "sweep-team.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_the_server_away_for_half_a_minute_then_past_the_retries(team):
    workdir, server, _ = team
    plan = ["run", "--tier", "tiny", "--only", "aligner-12", *ONE_THREAD, *TRAINING, *NO_FID, "--no-report",
            "--executor", "local"]
    log = workdir / "outage.log"
    before = _run_dirs(workdir)
    launcher = _start(workdir, server, log, *plan, "--seeds", "1")
    try:
        _wait_for(lambda: _checkpointed(workdir, before, 1, 4), launcher, log)
        with _held(launcher):
            server.stop()
        time.sleep(30)
        server.start()
        assert launcher.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
    (run,) = _runs(server, 1)
    assert run.info.status == "FINISHED"
    assert _loss_steps(server, run.info.run_id) == list(range(2, STEPS + 1, 2))  # each step once

    impatient = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    log = workdir / "gone.log"
    before = _run_dirs(workdir)
    launcher = _start(workdir, server, log, *plan, "--seeds", "2", **impatient)
    try:
        # Two checkpoints in: a restart from scratch would log steps 2 to 8 again, a resume at most 2 steps.
        _wait_for(lambda: _checkpointed(workdir, before, 1, 8), launcher, log)
        with _held(launcher):
            server.stop()
        assert launcher.wait(timeout=300) != 0
    finally:
        server.start()
    said = log.read_text()
    assert "the MLflow tracking server did not answer after 1 retries" in said, said[-3000:]
    (stopped,) = _runs(server, 2)
    assert stopped.info.status == "RUNNING"  # left open for the resume

    again = _repro(workdir, server, *plan, "--seeds", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    (resumed,) = _runs(server, 2)
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"
    steps = _loss_steps(server, resumed.info.run_id)
    assert sorted(set(steps)) == list(range(2, STEPS + 1, 2)) and len(steps) - len(set(steps)) <= 2
