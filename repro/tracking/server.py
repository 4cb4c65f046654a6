"""The team's MLflow tracking server as `repro server` starts it: runs and metrics in a database
given by URL, artifacts written by the server into one folder (clients upload through it, so
they need no access to that folder), and, unless turned off, MLflow's basic-auth app, so that
only users with a login write.

The auth app keeps its users in a database of its own (database_uri of its ini file), creates
the admin user on its first start from MLFLOW_AUTH_ADMIN_PASSWORD, and signs its forms with
MLFLOW_FLASK_SERVER_SECRET_KEY, which every worker must share."""

from __future__ import annotations

import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

ADMIN_USERNAME = "admin"
# What a logged-in user who was granted nothing may do with others' experiments.
DEFAULT_PERMISSION = "READ"


@dataclass(frozen=True)
class ServerOptions:
    backend_store_uri: str
    artifacts_destination: Path
    host: str
    port: int
    auth_database_uri: str | None  # None: no authentication
    workers: int | None = None  # None: MLflow's default
    # Host headers MLflow answers beyond localhost's, e.g. "mlflow.cluster.example,10.0.0.5:5000"
    allowed_hosts: str | None = None


def server_command(options: ServerOptions) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", options.backend_store_uri,
               "--serve-artifacts", "--artifacts-destination", str(options.artifacts_destination.resolve()),
               "--host", options.host, "--port", str(options.port)]
    if options.workers is not None:
        command += ["--workers", str(options.workers)]
    if options.allowed_hosts is not None:
        command += ["--allowed-hosts", options.allowed_hosts]
    if options.auth_database_uri is not None:
        command += ["--app-name", "basic-auth"]
    return command


def server_environment(options: ServerOptions, config_folder: Path) -> dict[str, str]:
    """os.environ plus what the auth app reads: its ini file (written into config_folder) and a
    form-signing key, one per start unless the caller set one. MLflow's job runner (a dozen
    worker processes for GenAI evaluation jobs, which the harness never submits) stays off unless
    the caller turns it on."""
    environment = dict(os.environ)
    environment.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if options.auth_database_uri is None:
        return environment
    config_folder.mkdir(parents=True, exist_ok=True)
    config = config_folder / "mlflow-basic-auth.ini"
    config.write_text(
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = {options.auth_database_uri}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    environment["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    environment.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
    return environment


def tracking_uri(options: ServerOptions) -> str:
    """What clients set MLFLOW_TRACKING_URI to: a server on every interface by this machine's name."""
    host = socket.getfqdn() if options.host in ("0.0.0.0", "::") else options.host
    return f"http://{host}:{options.port}"
