"""What the end-to-end tests share: `repro` called in a work folder of its own, options that
shrink a tiny-tier run to seconds, and the child runs it leaves in MLflow."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mlflow import MlflowClient

from repro.cli import main
from repro.tracking import tags

ROOT = Path(__file__).resolve().parents[2]

ONE_THREAD = ["--threads", "1"]
SHORT_TRAINING = [
    "--set", "train.steps=12", "--set", "train.checkpoint_every=4", "--set", "train.eval_every=6",
]
QUICK_LOGS_AND_FID = ["--set", "train.log_every=2", "--set", "fid.num_captions=16", "--set", "fid.steps=4",
                      "--set", "fid.feature_extractor=tiny-random-conv"]
FAST = ONE_THREAD + SHORT_TRAINING + QUICK_LOGS_AND_FID


def new_workdir(folder: Path) -> Path:
    """A work folder holding a copy of the project's experiments.toml, as a user's would."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "experiments.toml", folder / "experiments.toml")
    return folder


def repro(workdir: Path, *args: str) -> int:
    return main(["--workdir", str(workdir), *args])


def child_runs(workdir: Path):
    """The MLflow client on the work folder's default store, and every run `repro run` made."""
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kosmos-g")
    return client, client.search_runs([experiment.experiment_id], filter_string=f"tags.`{tags.KIND}` = 'run'")


def two_runs_launch(workdir: Path, steps: int, *settings: str) -> tuple[list[str], dict[str, str]]:
    """`repro run` of two tiny stage-2 rows at once on the local executor, as a subprocess the
    signal tests stop: its command and environment (unbuffered, this checkout, the work dir's
    own store)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "repro.cli", "--workdir", str(workdir), "run", "--tier", "tiny",
               "--only", "aligner-12", "--only", "decoder-12", "--seeds", "0", "--executor", "local",
               "--parallel", "2", "--no-report", *ONE_THREAD, "--set", f"train.steps={steps}", *settings]
    return command, env
