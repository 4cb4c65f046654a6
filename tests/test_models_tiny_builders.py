"""The tiny-tier checkpoints: seeded, fast, and loadable by the stock diffusers pipeline."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from safetensors.torch import load_file

from experiments.tiny.models import save_tiny_kosmos2, save_tiny_stable_diffusion


def weights(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(path.rglob("*.safetensors"))
    return {f"{f.parent.name}/{k}": v for f in files for k, v in load_file(f).items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_builders_are_seeded(tmp_path: Path) -> None:
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:  # how long a build takes: bench/startup.py
        save_tiny_kosmos2(tmp_path / name / "kosmos2", seed=seed)
        save_tiny_stable_diffusion(tmp_path / name / "sd", seed=seed)
    for part in ("kosmos2", "sd"):
        a, b, c = (weights(tmp_path / name / part) for name in "abc")
        assert same(a, b), f"{part}: same seed, different weights"
        assert not same(a, c), f"{part}: the seed has no effect"
    assert (tmp_path / "a" / "sd" / "tokenizer" / "vocab.json").read_bytes() == (
        tmp_path / "b" / "sd" / "tokenizer" / "vocab.json"
    ).read_bytes()


def test_stock_pipeline_loads_the_tiny_sd_dir_with_v15_schedule(tmp_path: Path) -> None:
    save_tiny_stable_diffusion(tmp_path)
    pipeline = StableDiffusionPipeline.from_pretrained(tmp_path, local_files_only=True, safety_checker=None)
    assert pipeline.unet.config.cross_attention_dim == pipeline.text_encoder.config.hidden_size == 32
    assert pipeline.vae_scale_factor == 4  # 32-px images <-> 8x8 latents
    ddim = DDIMScheduler.from_config(pipeline.scheduler.config)
    assert ddim.config.beta_schedule == "scaled_linear"
    assert (ddim.config.beta_start, ddim.config.beta_end) == (0.00085, 0.012)
    assert ddim.config.num_train_timesteps == 1000
    assert ddim.config.clip_sample is False and ddim.config.set_alpha_to_one is False
    unet_params = sum(p.numel() for p in pipeline.unet.parameters())
    assert 0.5e6 < unet_params < 2e6
