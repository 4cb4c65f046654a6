"""What the team set-up's tests share: whether a PostgreSQL server answers (scripts/postgres-local.sh
starts one), a database of their own on it, and `repro server` started, stopped and started again
as a subprocess on 127.0.0.1. A missing service skips its tests, or fails them in CI."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.services import require_service
from tests.support.workdirs import ROOT

# The role scripts/postgres-local.sh creates; REPRO_TEST_POSTGRES names another server's.
POSTGRES = os.environ.get("REPRO_TEST_POSTGRES", "postgresql://repro:repro@127.0.0.1:5432/postgres")
ADMIN_PASSWORD = "team-test-admin-password"  # MLflow wants 12 characters at least


def _postgres_answers() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "the psycopg driver is not installed (make install)"
    try:
        psycopg.connect(POSTGRES, connect_timeout=5).close()
    except psycopg.Error as error:
        return (f"no PostgreSQL answers at {POSTGRES} ({str(error).strip().splitlines()[0]}): run "
                "scripts/postgres-local.sh (as root) to start a local one")
    return None


def require_postgres() -> None:
    why_not = _postgres_answers()
    require_service("PostgreSQL", why_not is None, f"{why_not}; scripts/postgres-local.sh starts one")


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards."""
    import psycopg

    name = f"repro_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class TeamServer:
    """`repro server` on one port, in a session of its own so that a stop takes its workers."""

    workdir: Path
    backend: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client_env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": "admin",
                "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}

    def start(self, timeout: float = 240.0) -> None:
        env = {**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "PYTHONPATH": str(ROOT)}
        log = (self.workdir / "server.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "repro.cli", "--workdir", str(self.workdir), "server",
             "--backend-store-uri", self.backend, "--artifacts-destination", str(self.workdir / "artifacts"),
             "--port", str(self.port), "--workers", "1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.workdir / "server.log").read_text()[-3000:]
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.5)
        raise AssertionError(
            f"the server did not answer in {timeout:.0f} s; see {self.workdir / 'server.log'}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
