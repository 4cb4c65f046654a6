"""A colleague's run folder whose every checkpoint file carries a pickle payload: nothing that
reads checkpoints (`repro generate` on the folder, a file in it or its MLflow run id, stage 3's
init_from, a resume) runs the payload, and each refuses with an error naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from experiments.recipes.instruct import InstructObjective
from experiments.training.checkpoints import UnsafeCheckpointError
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from repro.cli import main as repro_main
from repro.tracking import tags
from tests.support.mlflow_store import FakeRunStore
from tests.support.objectives import Regression, train_config
from tests.support.runs import finished_stage2
from tests.support.tiny import stage3_config


class Payload:
    """Unpickled, it creates `marker`: proof that a load ran code the file chose."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def plant(file: Path, marker: Path) -> None:
    torch.save({"model": {"w": torch.zeros(1)}, "trap": Payload(marker)}, file)


@pytest.fixture(scope="module")
def stage2_dir(tiny_assets, tmp_path_factory) -> Path:
    return finished_stage2(tiny_assets, tmp_path_factory.mktemp("stage2"))


@pytest.fixture
def booby_trapped(stage2_dir, tmp_path) -> tuple[Path, Path]:
    """(run folder under tmp_path/runs, marker): each of its checkpoint files replaced by a
    payload, plus a pickle under the old single-file name."""
    run_dir = tmp_path / "runs" / "colleague"
    shutil.copytree(stage2_dir, run_dir, ignore=shutil.ignore_patterns("cache"))
    marker = tmp_path / "payload-ran"
    files = sorted(p for p in (run_dir / "checkpoints").rglob("*") if p.is_file())
    assert [p.name for p in files] == ["model.safetensors", "state.pt"]
    for file in files:
        plant(file, marker)
    plant(run_dir / "checkpoints" / "step-00000008.pt", marker)
    return run_dir, marker


def _generate(workdir: Path, checkpoint: str, *options: str) -> int:
    return repro_main(["--workdir", str(workdir), "generate", "--checkpoint", checkpoint, *options,
                       "--prompt", "a dog", "-n", "1", "--steps", "1", "--size", "32",
                       "--out", str(workdir / "out")])


def test_generate_refuses_every_planted_file_and_runs_none(booby_trapped, tmp_path, capsys):
    run_dir, marker = booby_trapped
    weights = run_dir / "checkpoints" / "step-00000004" / "model.safetensors"
    state, old_format = weights.parent / "state.pt", run_dir / "checkpoints" / "step-00000008.pt"
    for reference, named in ((run_dir, weights), (weights.parent, weights), (weights, weights),
                             (state, state), (old_format, old_format)):
        assert _generate(tmp_path, str(reference)) == 2, reference
        error = capsys.readouterr().err
        assert f"{named}: refused" in error, error
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_generate_on_an_mlflow_run_id_refuses_the_planted_weights(booby_trapped, tmp_path, capsys):
    run_dir, marker = booby_trapped
    store = FakeRunStore(tmp_path, "kosmos-g")
    run_id = store.create_run({tags.KIND: "run", tags.CONFIG_HASH: run_dir.name})
    assert _generate(tmp_path, run_id, "--tracking-uri", store.uri) == 2
    assert "model.safetensors: refused" in capsys.readouterr().err
    assert not marker.exists()


def test_stage3_refuses_a_planted_init_from(booby_trapped, tiny_assets):
    run_dir, marker = booby_trapped
    with pytest.raises(UnsafeCheckpointError, match="model.safetensors: refused"):
        InstructObjective(stage3_config(tiny_assets, run_dir))
    assert not marker.exists()


def test_a_resume_refuses_a_planted_state_file(tmp_path):
    torch.manual_seed(0)
    train(Regression(), train_config(10), tmp_path, RecordingTracker(), progress=False)
    marker = tmp_path / "payload-ran"
    state = tmp_path / "checkpoints" / "step-00000010" / "state.pt"
    plant(state, marker)
    with pytest.raises(UnsafeCheckpointError, match="arbitrary unpickling") as refused:
        train(Regression(), train_config(20), tmp_path, RecordingTracker(), progress=False)
    assert str(state) in str(refused.value)
    assert not marker.exists()
