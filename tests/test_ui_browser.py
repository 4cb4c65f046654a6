"""`repro ui`'s URL in a real browser (headless Chromium, Debian's `chromium`): the runs table
opens on the table's rows, each child run with its row, seed and FID as columns, the campaign's
parent run filtered out rather than collapsing them. A screenshot is left beside the test's
files, to look at."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from repro.tracking import tags
from tests.support.services import require_service
from tests.support.team_server import free_port
from tests.support.workdirs import ROOT, new_workdir

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.slow

FIDS = {("12-Layers AlignerNet", 0): 123.4, ("12-Layers AlignerNet", 1): 124.4,
        ("12-Layers Decoder", 0): 98.7, ("12-Layers Decoder", 1): 99.7}


def _campaign(workdir: Path) -> None:
    """What `repro run` leaves in MLflow for two rows and two seeds, without training them."""
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.create_experiment("kosmos-g", artifact_location=(workdir / "mlartifacts").as_uri())
    parent = client.create_run(experiment, run_name="table2 tiny campaign", tags={tags.KIND: "campaign"})
    for (row, seed), fid in FIDS.items():
        run = client.create_run(experiment, run_name=f"{row} seed={seed}", tags={
            "mlflow.parentRunId": parent.info.run_id, tags.KIND: "run", tags.TABLE: "table2", tags.ROW: row,
            tags.SEED: str(seed)})
        losses = [Metric(tags.METRIC_TRAIN_LOSS, 1.0 / step, 0, step) for step in (2, 4)]
        client.log_batch(run.info.run_id, metrics=[Metric(tags.METRIC_FID, fid, 0, 4), *losses])
        client.set_terminated(run.info.run_id)
    client.set_terminated(parent.info.run_id)


def _chromium(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    profile.mkdir()
    # The page fetches its runs after it loads: virtual time lets those requests finish first.
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1600,900", "--virtual-time-budget=30000", *action, url],
        capture_output=True, text=True, timeout=180)


def test_the_ui_opens_on_the_tables_rows_with_their_fid(tmp_path):
    require_service("Chromium", CHROMIUM is not None, "apt-get install -y chromium (.ci/run does)")
    workdir = new_workdir(tmp_path / "work")
    _campaign(workdir)
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "repro.cli", "--workdir", str(workdir), "ui",
                           "--port", str(port)],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        url = re.search(r"http://\S+", ui.stdout.readline()).group(0)
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                break
            assert time.monotonic() < deadline and ui.poll() is None, "the MLflow UI did not start"
            time.sleep(0.5)

        dom = _chromium(url, tmp_path / "profile-dom", "--dump-dom").stdout
        (tmp_path / "runs.html").write_text(dom)
        assert re.search(r"<strong>(\d+)</strong> matching runs", dom).group(1) == "4"
        assert "table2 tiny campaign" not in dom
        for row, seed in FIDS:
            assert f"{row} seed={seed}" in dom
        # The grid's cells name their column: the FID column holds each run's FID.
        fid_cells = re.findall(r'col-id="metrics.`eval/fid`"[^>]*>.*?class="ag-cell-value">([^<]*)<', dom)
        assert sorted(map(float, fid_cells)) == sorted(FIDS.values())
        for column in ("tags.`row`", "tags.`seed`", "metrics.`train/loss`"):
            assert f'col-id="{column}"' in dom
        shot = _chromium(url, tmp_path / "profile-shot", f"--screenshot={tmp_path / 'runs.png'}")
        assert shot.returncode == 0
        assert (tmp_path / "runs.png").stat().st_size > 10_000
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
