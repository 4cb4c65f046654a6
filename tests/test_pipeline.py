"""The whole path on the tiny tier, as a user runs it: `repro run` -> MLflow -> reports/, then
a run killed mid-training that resumes into the same MLflow run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.tracking import tags
from tests.support.workdirs import (
    FAST,
    ONE_THREAD,
    QUICK_LOGS_AND_FID,
    ROOT,
    child_runs,
    new_workdir,
    repro,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return new_workdir(tmp_path_factory.mktemp("work"))


def test_table2_matrix_end_to_end(workdir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert repro(workdir, "run", "--tier", "tiny", "--table", "table2", "--seeds", "0",
                 "--executor", "debug", *FAST) == 0

    client, runs = child_runs(workdir)
    assert len(runs) == 7
    rows = {run.data.tags[tags.ROW] for run in runs}
    assert rows == {"SD v1.5", "E2E w/o AlignerNet", "E2E w/ AlignerNet", "12-Layers Decoder",
                    "12-Layers AlignerNet", "24-Layers AlignerNet",
                    "12-Layers AlignerNet (released checkpoint)"}
    parents = {run.data.tags["mlflow.parentRunId"] for run in runs}
    assert len(parents) == 1
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags[tags.ROW]  # no Table 2 row is meant to fail
        for key in (tags.TABLE, tags.EXPERIMENT, tags.TIER, tags.SEED, tags.CONFIG_HASH, tags.GIT_COMMIT):
            assert run.data.tags[key], key
        trains = run.data.params["recipe"] not in ("baseline", "released")
        # Params for the sections the recipe uses; the baseline and the released model train nothing.
        assert ("train.optim.lr" in run.data.params) == trains
        assert ("aligner.kind" in run.data.params) == trains
        assert not any(key.startswith("dreambench.") for key in run.data.params)  # off in Table 2
        assert "None" not in run.data.params.values()
        assert run.data.params["fid.captions"].startswith("@tiny/")
        assert ("train/world_size" in run.data.params) == trains
        assert "train/world_size" not in run.data.metrics
        assert run.data.metrics[tags.METRIC_FID] > 0
        assert run.data.params["eval/num_images"] == "16" and "eval/num_images" not in run.data.metrics
        assert "fid.captions" in {item.dataset.name for item in run.inputs.dataset_inputs}
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
        assert "samples/grid.png" in artifacts
        # What the run trained, as an export (safetensors, config.json, model card).
        model = {a.path for a in client.list_artifacts(run.info.run_id, tags.MODEL_ARTIFACT)}
        assert (f"{tags.MODEL_ARTIFACT}/aligner.safetensors" in model) == trains
        if trains:
            assert {"data.train", "data.heldout"} <= {i.dataset.name for i in run.inputs.dataset_inputs}
            # Held-out data and noise are fixed: a loss that moves from one eval to the next is the
            # trained M moving (an optimiser that never reached it would leave them equal).
            heldout = [key for key in run.data.metrics if key.startswith("heldout/")]
            histories = [[m.value for m in client.get_metric_history(run.info.run_id, key)]
                         for key in heldout]
            assert any(len(set(values)) > 1 for values in histories), run.data.tags[tags.ROW]
        if run.data.tags[tags.EXPERIMENT] == "aligner-12":
            losses = [m.value for m in client.get_metric_history(run.info.run_id, "train/mse_loss")]
            assert len(losses) == 6

    # Each row scores its own images: one folder scored for all of them would give one FID.
    assert len({run.data.metrics[tags.METRIC_FID] for run in runs}) == len(runs)

    table = (workdir / "reports" / "table2.md").read_text()
    for row in rows:
        assert row in table
    for plot in ("loss_curves", "fid_per_row", "fid_vs_compute", "samples"):
        assert (workdir / "reports" / f"table2_{plot}.png").stat().st_size > 5_000
    # The campaign's parent run holds the tables and plots it produced.
    logged = {a.path for a in client.list_artifacts(parents.pop(), tags.REPORTS_ARTIFACT)}
    assert {f"{tags.REPORTS_ARTIFACT}/table2.md", f"{tags.REPORTS_ARTIFACT}/table2_fid_per_row.png"} <= logged

    # Read back from MLflow into a log file: no progress bars (artifact downloads, model loading).
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    report = subprocess.run(
        [sys.executable, "-m", "repro.cli", "--workdir", str(workdir), "report", "--tier", "tiny"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert report.returncode == 0 and "table2.md" in report.stdout, report.stderr[-2000:]
    printed = (report.stdout + report.stderr).splitlines()
    assert not [line for line in printed if "it/s]" in line or "%|" in line]

    # Running the same plan again launches nothing: every config already finished.
    assert repro(workdir, "run", "--tier", "tiny", "--table", "table2", "--seeds", "0",
                 "--executor", "debug", "--no-report", *FAST) == 0
    assert len(child_runs(workdir)[1]) == 7


def test_killed_run_resumes_into_the_same_mlflow_run(workdir):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "repro.cli", "--workdir", str(workdir), "run", "--tier", "tiny",
               "--only", "aligner-12", "--seeds", "1", "--executor", "debug", "--no-report",
               *ONE_THREAD, "--set", "train.steps=200", "--set", "train.checkpoint_every=10",
               *QUICK_LOGS_AND_FID]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        checkpoint = _wait_for(
            lambda: sorted(workdir.glob("runs/*/checkpoints/step-00000020/model.safetensors")), process
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    run_dir = checkpoint[0].parents[2]

    client, before = child_runs(workdir)
    killed = [r for r in before if r.data.tags[tags.CONFIG_HASH] == run_dir.name]
    assert len(killed) == 1 and killed[0].info.status == "RUNNING"

    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    _, after = child_runs(workdir)
    resumed = [r for r in after if r.data.tags[tags.CONFIG_HASH] == run_dir.name]
    assert len(resumed) == 1 and resumed[0].info.run_id == killed[0].info.run_id
    assert resumed[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(resumed[0].info.run_id, "train/loss")]
    # Every logged step is there; only steps after the last checkpoint (at most one checkpoint
    # interval of them, logged every 2 steps) were trained twice.
    assert sorted(set(steps)) == list(range(2, 201, 2))
    assert len(steps) - len(set(steps)) <= 10 // 2


def _wait_for(found, process: subprocess.Popen, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        assert process.poll() is None, "repro run exited before writing a checkpoint"
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared in time")
