"""The shared training loop on a toy objective: it learns, it resumes exactly, it fails cleanly."""

from __future__ import annotations

import torch

from experiments.training.checkpoints import CheckpointStore
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from tests.support.interrupt import train_until
from tests.support.objectives import Regression, train_config


def test_loss_falls_and_everything_is_logged(tmp_path):
    torch.manual_seed(0)
    tracker = RecordingTracker()
    outcome = train(Regression(), train_config(60), tmp_path, tracker, progress=False)
    assert outcome.failure is None and outcome.steps == 60
    heldout = tracker.series("heldout/mse")
    assert heldout[-1] < 0.1 * heldout[0]
    for name in ("train/loss", "train/lr", "train/grad_norm", "train/samples_per_s", "train/step_seconds"):
        assert len(tracker.series(name)) == 12, name
    # linear decay reaches 0 at the last step
    assert tracker.series("train/lr")[-1] == 0.0


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    torch.manual_seed(0)
    straight = Regression()
    train(straight, train_config(40), tmp_path / "straight", RecordingTracker(), progress=False)

    torch.manual_seed(0)
    train_until(Regression(), train_config(40), tmp_path / "split", stop_at=20)
    assert CheckpointStore(tmp_path / "split" / "checkpoints").latest().name == "step-00000020"

    resumed = Regression()  # a fresh process would start from a fresh, differently seeded model
    tracker = RecordingTracker()
    outcome = train(resumed, train_config(40), tmp_path / "split", tracker, progress=False)
    assert outcome.steps == 40
    steps_logged = [step for step, _ in tracker.metrics["train/loss"]]
    assert steps_logged == [25, 30, 35, 40]  # continues from 20; nothing repeated
    assert torch.allclose(resumed.trainable.weight, straight.trainable.weight, atol=1e-6)


def test_divergence_ends_the_run_with_a_reason(tmp_path):
    outcome = train(Regression(scale=float("nan")), train_config(20), tmp_path, RecordingTracker(),
                    progress=False)
    assert outcome.failure is not None and outcome.failure.startswith("diverged at step 1")
    exploding = train(Regression(scale=1e9), train_config(20), tmp_path / "b", RecordingTracker(),
                      progress=False)
    assert exploding.failure is not None and "diverged" in exploding.failure


def test_checkpoint_store_keeps_the_newest(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save(step, {"model": {"w": torch.full((2,), float(step))}, "value": step})
    assert [p.name for p in store.paths()] == ["step-00000020", "step-00000030"]
    assert sorted(p.name for p in (tmp_path / "step-00000030").iterdir()) == ["model.safetensors", "state.pt"]
    latest = store.load_latest()
    assert latest["value"] == 30 and torch.equal(latest["model"]["w"], torch.full((2,), 30.0))
    (tmp_path / ".step-00000040.partial").mkdir()  # a write a kill cut short
    (tmp_path / ".step-00000040.partial" / "model.safetensors").write_bytes(b"truncated")
    assert store.load_latest()["step"] == 30
