"""Table 2's E2E rows train at the 12-layer AlignerNet's training compute (paper, section 4.3:
"under the same GPU days"): the steps experiments.toml declares for them are derived again here,
per tier, from the FLOPs of one nominal step (experiments/training/flops.py). That a run logs the
compute it trained with is checked where tests/test_recipes.py runs the E2E recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, Kosmos2TextConfig

from experiments.mini.assets import SHIPPED_WEIGHTS, ensure_mini_assets
from experiments.recipes.align import AlignObjective
from experiments.recipes.e2e import E2EObjective
from experiments.training import flops
from repro.config import load_matrix
from repro.config.paths import MINI_PREFIX, TINY_PREFIX
from tests.support.full_tier import EXPERIMENTS, fake_full_env

E2E_ROWS = ("e2e-linear", "e2e-aligner")


def full_size() -> flops.ModelSizes:
    """The paper's frozen models by their published configs: Kosmos-2's text model (the config's
    defaults are microsoft/kosmos-2-patch14-224's), SD v1.5's CLIP text encoder (ViT-L/14's),
    U-Net and VAE, at 512 px."""
    text = Kosmos2TextConfig()
    clip = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12)
    with torch.device("meta"):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512,
        )
    decoder = flops.decoder_cost(UNet2DConditionModel, unet.config, AutoencoderKL, vae.config, 512, 77)
    return flops.ModelSizes(
        source_dim=text.embed_dim, target_dim=clip.hidden_size, target_len=77,
        mllm=flops.Stack(text.layers, text.embed_dim, text.ffn_dim),
        clip=flops.Stack(clip.num_hidden_layers, clip.hidden_size, clip.intermediate_size), decoder=decoder,
    )


def test_full_tier_e2e_steps_match_the_12_layer_alignernets_compute(tmp_path: Path) -> None:
    matrix = load_matrix(EXPERIMENTS, "full", table="table2", env=fake_full_env(tmp_path / "world"))
    configs = {run.experiment: run.config for run in matrix.runs}
    sizes = full_size()
    assert (sizes.decoder.unet, sizes.decoder.vae_encoder) == pytest.approx((803e9, 1117e9), rel=1e-3)
    reference = configs["aligner-12"]
    aligned = flops.nominal_step_flops(reference, sizes)
    for row in E2E_ROWS:
        step = flops.nominal_step_flops(configs[row], sizes)
        assert configs[row].train.steps == flops.matched_steps(reference.train.steps, aligned, step), row
        # Fewer than stage 3's 200k steps, which the rows took before: aligning is the cheaper stage.
        assert configs[row].train.steps < 200_000 and configs[row].train.batch_size == 1_024


def test_tiny_tier_e2e_steps_match_the_12_layer_alignernets_compute(tiny_assets: Path) -> None:
    """Counted on the objectives the tiny runs build, from the tiny tier's own models."""
    _check_matched_steps("tiny", {TINY_PREFIX: tiny_assets})


@pytest.mark.skipif(not (SHIPPED_WEIGHTS / "sd").is_dir(), reason="the mini SD is not trained yet")
def test_mini_tier_e2e_steps_match_the_12_layer_alignernets_compute(tmp_path: Path) -> None:
    """Counted on the objectives the mini runs build, from the trained mini models."""
    _check_matched_steps("mini", {MINI_PREFIX: ensure_mini_assets(tmp_path / "mini-assets")})


def _check_matched_steps(tier: str, assets: dict[str, Path]) -> None:
    def declared(experiment: str):
        matrix = load_matrix(EXPERIMENTS, tier, only=experiment, seeds=[0], assets=assets, env={})
        return next(run.config for run in matrix.runs if run.experiment == experiment)

    reference = declared("aligner-12")
    aligned = AlignObjective(reference).nominal_step_flops()
    for row in E2E_ROWS:
        config = declared(row)
        objective = E2EObjective(config)
        step = objective.nominal_step_flops()
        # A real batch pads to its own longest caption, no longer than the nominal one.
        assert 0 < objective.flops(objective.batch(0)) <= step
        assert config.train.steps == flops.matched_steps(reference.train.steps, aligned, step), row
        # What the runs log as compute/train_flops: equal to within half a step.
        assert abs(config.train.steps * step - reference.train.steps * aligned) <= step / 2

