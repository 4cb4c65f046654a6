"""The released-checkpoint rows (Table 1's final model, Table 2's stage 2) on the tiny tier: the
"released" recipe samples the export `repro import` made of an official-layout file, and
refuses an export checked against another Stable Diffusion."""

from __future__ import annotations

import pytest
import torch

from experiments.recipes.registry import Generates, build_recipe
from experiments.recipes.run import run_recipe
from experiments.released.fairseq_pickle import read_fairseq_checkpoint
from experiments.training.tracker import RecordingTracker
from tests.support.tiny import tiny_config


def test_the_final_row_samples_the_released_weights_and_scores_both_panels(tiny_assets, tmp_path):
    quick = {"dreambench.steps": 2, "dreambench.templates": [0]}
    config = tiny_config(tiny_assets, "kosmos-g-released", quick)
    built = build_recipe(config, tmp_path / "cache")
    assert isinstance(built, Generates)
    official = read_fairseq_checkpoint(tiny_assets / "released" / "files" / "checkpoint_final.pt")["model"]
    torch.testing.assert_close(built.conditioner.aligner.m.decoder.queries.float(),
                               official["aligner.encoder_query"].float(), atol=0, rtol=0)
    result = run_recipe(config, tmp_path, tmp_path / "cache", RecordingTracker(), progress=False)
    assert result.failure is None
    assert result.metrics["eval/fid"] > 0 and result.metrics["compute/train_flops"] == 0.0
    assert {"eval/dino", "eval/clip_i", "eval/clip_t"} <= set(result.metrics)


def test_an_export_checked_against_another_stable_diffusion_is_refused_naming_both(tiny_assets, tmp_path):
    other = {"models.stable_diffusion": str(tiny_assets / "sd")}
    config = tiny_config(tiny_assets, "aligner-12-released", other)
    with pytest.raises(ValueError, match=r"released/stage2 was imported against Stable Diffusion "
                                         r".*released/sd, but models.stable_diffusion is .*/sd:"):
        build_recipe(config, tmp_path / "cache")
