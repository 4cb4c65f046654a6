"""A damaged newest checkpoint: resuming moves it aside (never deletes it), says which file was
bad, and carries on from the next older one; the report's loss curve keeps one point per step."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch
from mlflow.entities import Metric

from experiments.training.checkpoints import CheckpointStore, UnsafeCheckpointError
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from repro.report.collect import loss_histories
from repro.tracking import tags
from tests.support.mlflow_store import FakeRunStore
from tests.support.objectives import Regression, train_config
from tests.test_checkpoint_safety import plant

TRAIN_CONFIG = dict(checkpoint_every=5)


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])


@pytest.mark.parametrize(("name", "how"), [
    ("state.pt", "truncated"), ("state.pt", "empty"), ("model.safetensors", "truncated"),
    ("model.safetensors", "empty"),
])
def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(tmp_path, caplog, name, how):
    torch.manual_seed(0)
    straight = Regression()
    train(straight, train_config(20, **TRAIN_CONFIG), tmp_path / "straight", RecordingTracker(),
          progress=False)

    torch.manual_seed(0)
    run_dir = tmp_path / "damaged"
    train(Regression(), train_config(20, **TRAIN_CONFIG), run_dir, RecordingTracker(), progress=False)
    folder = run_dir / "checkpoints"
    bad = folder / "step-00000020" / name
    _damage(bad, how)

    resumed = Regression()
    tracker = RecordingTracker()
    with caplog.at_level(logging.WARNING):
        outcome = train(resumed, train_config(20, **TRAIN_CONFIG), run_dir, tracker, progress=False)
    assert outcome.steps == 20
    assert str(bad) in caplog.text and "moved aside" in caplog.text
    # Resumed from step 15: the steps after it are trained again, and end where a straight run does.
    assert [step for step, _ in tracker.metrics["train/loss"]] == [20]
    assert torch.allclose(resumed.trainable.weight, straight.trainable.weight, atol=1e-6)
    aside = [p for p in folder.iterdir() if p.name.startswith("step-00000020.corrupt-")]
    assert len(aside) == 1
    assert sorted(p.name for p in aside[0].iterdir()) == ["model.safetensors", "state.pt"]
    assert [p.name for p in CheckpointStore(folder).paths()] == ["step-00000015", "step-00000020"]


def test_with_every_checkpoint_damaged_training_starts_over(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(5, {"model": {"w": torch.zeros(2)}})
    _damage(tmp_path / "step-00000005" / "state.pt", "empty")
    with caplog.at_level(logging.WARNING):
        assert store.load_latest() is None
    assert "step-00000005" in caplog.text
    assert [p.name.split(".")[0] for p in tmp_path.iterdir()] == ["step-00000005"]  # kept, aside


def test_a_planted_state_file_is_still_refused_not_skipped(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(5, {"model": {"w": torch.zeros(2)}})
    plant(tmp_path / "step-00000005" / "state.pt", tmp_path / "payload-ran")
    with pytest.raises(UnsafeCheckpointError, match="arbitrary unpickling"):
        store.load_latest()
    assert (tmp_path / "step-00000005").is_dir() and not (tmp_path / "payload-ran").exists()


def test_the_report_keeps_the_last_value_logged_for_a_step(tmp_path):
    store = FakeRunStore(tmp_path, "kosmos-g")
    run_id = store.create_run({tags.KIND: "run"})
    first = [Metric(tags.METRIC_TRAIN_LOSS, 10.0 + step, 1000 + step, step) for step in (1, 2, 3, 4)]
    # The resume from step 2's checkpoint logs steps 3 and 4 again, later, then goes on.
    again = [Metric(tags.METRIC_TRAIN_LOSS, 20.0 + step, 2000 + step, step) for step in (3, 4, 5)]
    store.client.log_batch(run_id, metrics=first)
    store.client.log_batch(run_id, metrics=again)
    runs = pd.DataFrame({"run_id": [run_id], "experiment": ["e"], "seed": [0]})
    history = loss_histories(store.uri, runs)
    assert history["step"].tolist() == [1, 2, 3, 4, 5]
    assert history["loss"].tolist() == [11.0, 12.0, 23.0, 24.0, 25.0]
