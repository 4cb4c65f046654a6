"""The shared training loop on a toy objective: it learns, it resumes exactly, it fails cleanly."""

from __future__ import annotations

import torch
from torch import nn

from experiments.config import OptimConfig, TrainConfig
from experiments.data.batches import WHOLE, EpochShuffler, Part
from experiments.training.checkpoints import CheckpointStore
from experiments.training.loop import train
from experiments.training.tracking import RecordingTracker


class Regression:
    """y = x @ w_true; the batch of a step depends only on the step."""

    def __init__(self, scale: float = 1.0) -> None:
        self.device = torch.device("cpu")
        self.trainable = nn.Linear(4, 1, bias=False)
        self.w_true = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
        self.scale = scale

    def batch(self, step: int, part: Part = WHOLE) -> torch.Tensor:
        first, last = part.bounds(8)
        return torch.randn(8, 4, generator=torch.Generator().manual_seed(step))[first:last]

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        error = self.trainable(x) - x @ self.w_true.T
        return {"loss": (error**2).mean() * self.scale}

    def heldout(self) -> dict[str, float]:
        with torch.no_grad():
            return {"mse": self.loss(self.batch(10_000))["loss"].item()}


def config(steps: int, **overrides) -> TrainConfig:
    values = dict(steps=steps, batch_size=8, optim=OptimConfig(lr=0.2, warmup_steps=2),
                  log_every=5, eval_every=10, checkpoint_every=10)
    values.update(overrides)
    return TrainConfig(**values)


def test_loss_falls_and_everything_is_logged(tmp_path):
    torch.manual_seed(0)
    tracker = RecordingTracker()
    outcome = train(Regression(), config(60), tmp_path, tracker, progress=False)
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
    train(straight, config(40), tmp_path / "straight", RecordingTracker(), progress=False)

    torch.manual_seed(0)
    _train_until(Regression(), config(40), tmp_path / "split", stop_after=20)
    assert CheckpointStore(tmp_path / "split" / "checkpoints").latest().name == "step-00000020.pt"

    resumed = Regression()  # a fresh process would start from a fresh, differently seeded model
    tracker = RecordingTracker()
    outcome = train(resumed, config(40), tmp_path / "split", tracker, progress=False)
    assert outcome.steps == 40
    steps_logged = [step for step, _ in tracker.metrics["train/loss"]]
    assert steps_logged == [25, 30, 35, 40]  # continues from 20; nothing repeated
    assert torch.allclose(resumed.trainable.weight, straight.trainable.weight, atol=1e-6)


def _train_until(objective: Regression, cfg: TrainConfig, run_dir, stop_after: int) -> None:
    """Runs the loop and kills it (an exception from the batch source) after `stop_after` steps."""
    original = objective.batch

    def batch(step: int, part: Part = WHOLE) -> torch.Tensor:
        if step == stop_after:
            raise KeyboardInterrupt
        return original(step, part)

    objective.batch = batch
    try:
        train(objective, cfg, run_dir, RecordingTracker(), progress=False)
    except KeyboardInterrupt:
        pass


def test_divergence_ends_the_run_with_a_reason(tmp_path):
    outcome = train(Regression(scale=float("nan")), config(20), tmp_path, RecordingTracker(), progress=False)
    assert outcome.failure is not None and outcome.failure.startswith("diverged at step 1")
    exploding = train(Regression(scale=1e9), config(20), tmp_path / "b", RecordingTracker(), progress=False)
    assert exploding.failure is not None and "diverged" in exploding.failure


def test_checkpoint_store_keeps_the_newest(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save(step, {"value": step})
    assert [p.name for p in store.paths()] == ["step-00000020.pt", "step-00000030.pt"]
    assert store.load_latest()["value"] == 30
    (tmp_path / "step-00000040.partial").write_bytes(b"truncated by a kill")
    assert store.load_latest()["step"] == 30


def test_epoch_shuffler_is_a_pure_function_of_the_step():
    items = list(range(10))
    a, b = EpochShuffler(items, 4, seed=3), EpochShuffler(items, 4, seed=3)
    first_epochs = [a(step) for step in range(5)]
    assert [b(step) for step in (4, 0, 2, 1, 3)] == [first_epochs[i] for i in (4, 0, 2, 1, 3)]
    covered = [x for batch in first_epochs[:2] for x in batch] + first_epochs[2][:2]
    assert sorted(covered) == items  # each epoch is a permutation
    assert EpochShuffler(items, 4, seed=4)(0) != a(0)
