"""`repro server`: MLflow's tracking server with logins, its database from a URL and artifacts
served into a folder. It answers on 127.0.0.1 only, refuses a write without a login, takes one
from the admin, and writes a logged artifact into --artifacts-destination."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from mlflow import MlflowClient

from tests.support.team_server import ADMIN_PASSWORD, TeamServer

pytestmark = pytest.mark.slow


def _create_experiment(uri: str, name: str, auth: str | None) -> int:
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/create", method="POST",
                                     data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
    if auth is not None:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def _listening_addresses() -> set[str]:
    """The local addresses of IPv4 sockets in LISTEN (state 0A), as /proc/net/tcp writes them."""
    lines = open("/proc/net/tcp").read().splitlines()[1:]
    return {fields[1] for fields in map(str.split, lines) if fields[3] == "0A"}


def test_the_server_refuses_writes_without_a_login_and_serves_artifacts_into_its_folder(
        tmp_path, monkeypatch):
    server = TeamServer(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    server.start()
    try:
        listening = _listening_addresses()
        assert f"0100007F:{server.port:04X}" in listening  # 127.0.0.1, not 0.0.0.0
        assert f"00000000:{server.port:04X}" not in listening

        assert _create_experiment(server.uri, "anonymous", None) == 401
        login = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
        wrong_password = "Basic " + base64.b64encode(b"admin:nope").decode()
        assert _create_experiment(server.uri, "wrong", wrong_password) == 401
        assert _create_experiment(server.uri, "admin's", login) == 200

        for name, value in server.client_env.items():
            monkeypatch.setenv(name, value)
        client = MlflowClient(server.uri)
        run = client.create_run(client.get_experiment_by_name("admin's").experiment_id)
        (tmp_path / "note.txt").write_text("logged through the server")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        stored = list((tmp_path / "artifacts").rglob("note.txt"))
        assert [path.read_text() for path in stored] == ["logged through the server"]
    finally:
        server.stop()
