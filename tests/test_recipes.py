"""The stage recipes on the tiny tier's real (tiny, random) models and synthetic COCO data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch_fidelity

from experiments.data.batches import WHOLE
from experiments.data.items import CaptionItem, token_count
from experiments.data.shards import Record, open_shards
from experiments.data.stream import Skip
from experiments.recipes.align import AlignObjective
from experiments.recipes.run import run_recipe
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from repro.tracking import tags
from tests.support.tiny import tiny_config


def test_align_loss_falls_on_heldout_captions(tiny_assets, tmp_path):
    config = tiny_config(tiny_assets, "aligner-12")
    tracker = RecordingTracker()
    outcome = train(AlignObjective(config), config.train, tmp_path, tracker, progress=False)
    assert outcome.failure is None
    before = AlignObjective(config).heldout()  # a fresh, untrained aligner with the same seed data
    after = tracker.series("heldout/mse_loss")
    assert after[-1] < 0.7 * before["mse_loss"]
    assert tracker.series("heldout/rec_loss")[-1] < before["rec_loss"]


@pytest.mark.parametrize("limit, reason", [({"max_caption_tokens": 8}, "caption_too_long"),
                                           ({"max_caption_sp_tokens": 5}, "caption_too_long_sp")])
def test_align_skips_captions_over_the_clip_or_sentencepiece_limit_and_keeps_its_batch_full(
    tiny_assets, limit, reason
):
    objective = AlignObjective(tiny_config(tiny_assets, "aligner-12", **limit))
    for step in range(4):
        captions = objective.items(step, WHOLE)
        assert len(captions) == objective.config.train.batch_size
        assert max(objective.target.token_counts(captions)) <= objective.config.train.max_caption_tokens
        assert max(token_count(objective.mllm.tokenizer, c) for c in captions) <= (
            objective.config.train.max_caption_sp_tokens)
    assert objective.data_counts()[f"skipped_{reason}"] > 0
    unlimited = AlignObjective(tiny_config(tiny_assets, "aligner-12"))
    unlimited.batch(0, WHOLE)
    assert unlimited.data_counts() == {}


def test_the_clip_limit_is_tested_before_the_sentencepiece_one(tiny_assets):
    """(code) laion2b_loader.py's order: a caption over both limits counts for CLIP's."""
    objective = AlignObjective(tiny_config(tiny_assets, "aligner-12"))
    clip, mllm = objective.target.tokenizer, objective.mllm.tokenizer
    long = "a red circle and a blue square on a green background"
    assert token_count(clip, long) > 8 and token_count(mllm, long) > 5  # over both limits below
    captions = CaptionItem(clip, 8, mllm, 5)
    assert captions(Record(long)) == Skip("caption_too_long", broken=False)
    assert CaptionItem(clip, 75, mllm, 5)(Record(long)) == Skip("caption_too_long_sp", broken=False)
    assert CaptionItem(clip, 75, mllm, 100)(Record(long)) == long


@pytest.mark.parametrize(
    "experiment, kind", [("e2e-linear", "linear"), ("e2e-aligner", "aligner"), ("sd-v1-5", "aligner")]
)
def test_recipes_train_then_score_fid(tiny_assets, tmp_path, experiment, kind):
    config = tiny_config(tiny_assets, experiment, steps=6, log_every=1, eval_every=3, checkpoint_every=3)
    config = replace(config, aligner=replace(config.aligner, kind=kind))
    tracker = RecordingTracker()
    result = run_recipe(config, tmp_path, tmp_path / "cache", tracker, progress=False)
    assert result.failure is None
    assert result.metrics["eval/fid"] > 0
    # What computed the FID and how its images were prepared, so tables never mix two rules.
    assert tracker.tags == {
        tags.FID_IMPLEMENTATION: f"torch-fidelity {torch_fidelity.__version__} tiny-random-conv",
        tags.FID_PREPROCESSING: "float-bilinear-short32-centercrop32-uint8trunc",
    }
    assert (tmp_path / "samples" / "grid.png").stat().st_size > 500
    assert len(list((tmp_path / "fid" / "generated").glob("*.png"))) == 8
    if config.recipe == "e2e":
        heldout = tracker.series("heldout/diffusion_loss")
        assert len(tracker.series("train/loss")) == 6 and len(heldout) == 2
        # Fixed held-out pairs and noise, and M the only trainable: the loss moves only if M did.
        assert heldout[0] != heldout[1]
        # Counted compute (tests/test_e2e_compute.py derives a step's): what the run trained with.
        assert result.metrics["compute/train_flops"] == 6 * result.metrics["compute/step_flops"] > 0
        rows = sum(sum(shard.group_sizes()) for shard in open_shards(config.data.train))
        assert ("data.train", "training", rows) in {(i.name, i.context, i.rows) for i in tracker.inputs}
    else:
        assert "train/loss" not in tracker.metrics and result.metrics["compute/device_hours"] == 0.0
        assert result.metrics["compute/train_flops"] == 0.0


def test_diverging_training_fails_the_run_without_scoring(tiny_assets, tmp_path):
    config = tiny_config(tiny_assets, "aligner-12", steps=10, divergence_threshold=1e-9)
    result = run_recipe(config, tmp_path, tmp_path / "cache", RecordingTracker(), progress=False)
    assert result.failure is not None and result.failure.startswith("diverged")
    assert "eval/fid" not in result.metrics
