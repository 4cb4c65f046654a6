"""Every run logs its throughput and memory; the compiled loss trains like the eager one."""

from __future__ import annotations

import pytest
import torch

from experiments.recipes.align import AlignObjective
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from tests.support.objectives import Regression, train_config
from tests.support.tiny import tiny_config


class TokenRegression(Regression):
    """The toy objective, saying each of its 8 rows holds 3 tokens."""

    def tokens(self, batch: torch.Tensor) -> int:
        return 3 * batch.shape[0]


def test_tokens_per_s_and_peak_memory_are_logged(tmp_path):
    tracker = RecordingTracker()
    train(TokenRegression(), train_config(10), tmp_path, tracker, progress=False)
    samples, tokens = tracker.series("train/samples_per_s"), tracker.series("train/tokens_per_s")
    assert len(tokens) == len(samples) == 2
    assert all(t == pytest.approx(3 * s) for t, s in zip(tokens, samples))  # same step times
    rss = tracker.series("train/peak_rss_mib")
    assert len(rss) == 2 and 10 < rss[0] <= rss[1]  # a high-water mark never falls
    assert "train/mfu" not in tracker.metrics and "train/peak_cuda_mib" not in tracker.metrics  # CPU


def test_objectives_without_a_token_count_log_no_tokens_per_s(tmp_path):
    tracker = RecordingTracker()
    train(Regression(), train_config(5), tmp_path, tracker, progress=False)
    assert "train/tokens_per_s" not in tracker.metrics and tracker.series("train/peak_rss_mib")


def test_align_counts_real_caption_tokens(tiny_assets):
    objective = AlignObjective(tiny_config(tiny_assets, "aligner-12"))
    _, mask, _ = batch = objective.batch(0)
    assert objective.tokens(batch) == int(mask.sum()) < mask.numel()  # padding is not counted


def test_compiled_loss_trains_like_the_eager_one(tmp_path, monkeypatch):
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported here")
    # The real capture (graphs for forward and backward) without inductor's C++ build, which
    # takes half a minute on a 2-core CPU.
    compiled_fns = []
    real_compile = torch.compile

    def compile_aot_eager(fn):
        compiled_fns.append(fn)
        return real_compile(fn, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        tracker = RecordingTracker()
        train(Regression(), train_config(4, log_every=1, compile=compiled), tmp_path / str(compiled), tracker,
              progress=False)
        losses[compiled] = tracker.series("train/loss")
    assert len(compiled_fns) == 1
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
