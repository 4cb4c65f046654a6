"""The full tier's `train.compile = true` compiles the loss with inductor, torch.compile's default
backend, which on a CPU writes and builds C++ kernels: the loop's compiled loss trains as the
eager one does."""

from __future__ import annotations

import pytest
import torch

from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from tests.support.objectives import Regression, train_config

pytestmark = pytest.mark.slow  # inductor's C++ builds


def test_the_loop_compiles_its_loss_with_inductor(tmp_path, monkeypatch):
    """On the toy objective: stage 2's real loss compiles and matches too, but its forward and
    backward kernels took 274 s to build on this project's 2-core CI box (the whole suite has 30
    minutes); tests/test_speed_metrics.py captures the graphs with aot_eager."""
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this Python")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold build, as in CI
    compiled_losses = []
    real_compile = torch.compile

    def recording_compile(fn, **options):
        compiled = real_compile(fn, **options)
        compiled_losses.append(compiled)
        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    losses, weights = {}, {}
    for compiled in (False, True):
        torch.manual_seed(0)
        objective = Regression()
        tracker = RecordingTracker()
        train(objective, train_config(4, log_every=1, compile=compiled), tmp_path / str(compiled), tracker,
              progress=False)
        losses[compiled] = tracker.series("train/loss")
        weights[compiled] = objective.trainable.weight.detach()
    assert len(compiled_losses) == 1
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    torch.testing.assert_close(weights[True], weights[False])
    assert list((tmp_path / "inductor").rglob("*.so")) or list((tmp_path / "inductor").rglob("*.cpp")), \
        "inductor built no kernel: the loss ran some other way"
