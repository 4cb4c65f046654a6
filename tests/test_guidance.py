"""Classifier-free guidance as eq. 4 defines it, checked against DDIM written out by hand on the
tiny SD checkpoint, and the share of null conditions training learns the unconditional branch from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from experiments.config import TrainConfig
from experiments.recipes.diffusion import with_null_conditions
from experiments.tiny.models import save_tiny_kosmos2, save_tiny_stable_diffusion
from models import KosmosGConditioner, MLLMEncoder, build_aligner
from models.aligner_config import AlignerConfig
from models.image_decoder import ImageDecoder


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> ImageDecoder:
    path = tmp_path_factory.mktemp("tiny_sd")
    save_tiny_stable_diffusion(path)
    return ImageDecoder.from_pretrained(str(path))


def conditions(seed: int) -> torch.Tensor:
    return torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(seed)) * 3


@torch.no_grad()
def ddim_by_hand(decoder: ImageDecoder, condition, null, guidance: float, steps: int,
                 seed: int) -> np.ndarray:
    """Eq. 4, w eps(z, C) - (w - 1) eps(z, null), in a DDIM loop of its own; uint8 images as the
    pipeline's PIL output holds them."""
    scheduler = DDIMScheduler.from_config(decoder.samplers["ddim"].config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(condition.shape[0], 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps_c = decoder.unet(latents, t, encoder_hidden_states=condition).sample
        eps_u = decoder.unet(latents, t, encoder_hidden_states=null).sample
        latents = scheduler.step(guidance * eps_c - (guidance - 1) * eps_u, t, latents).prev_sample
    images = decoder.vae.decode(latents / decoder.vae.config.scaling_factor).sample
    return ((images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def sampled(decoder: ImageDecoder, condition, null, guidance: float, steps: int, seed: int) -> np.ndarray:
    images = decoder.sample(condition, null, guidance=guidance, steps=steps, sampler="ddim", height=32,
                            width=32, generator=torch.Generator().manual_seed(seed))
    return np.stack([np.asarray(image) for image in images])


def largest_gap(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_sampling_is_eq4_against_the_null_condition(decoder: ImageDecoder, guidance: float) -> None:
    condition, null = conditions(0), conditions(1)
    expected = ddim_by_hand(decoder, condition, null, guidance, steps=2, seed=3)
    # The check can tell the mistakes apart: condition and null swapped, the sign of the guidance
    # term flipped, the null ignored (guidance 1 is the condition alone: any null gives it).
    swapped = ddim_by_hand(decoder, null, condition, guidance, steps=2, seed=3)
    flipped = ddim_by_hand(decoder, condition, null, 2 - guidance, steps=2, seed=3)
    assert largest_gap(expected, swapped) > 8
    assert guidance == 1.0 or largest_gap(expected, flipped) > 8
    # The pipeline batches both branches in one U-Net call: float sums in another order.
    assert largest_gap(sampled(decoder, condition, null, guidance, steps=2, seed=3), expected) <= 1
    if guidance == 1.0:
        other_null = torch.zeros(1, 77, 32)
        assert largest_gap(sampled(decoder, condition, other_null, guidance, steps=2, seed=3), expected) <= 1


def test_a_tenth_of_training_conditions_are_the_null_one(tmp_path) -> None:
    save_tiny_kosmos2(tmp_path)
    mllm = MLLMEncoder.from_pretrained(str(tmp_path))
    aligner = build_aligner(AlignerConfig(kind="linear"), source_dim=32, target_dim=32, target_len=77)
    conditioner = KosmosGConditioner(mllm, aligner)
    with torch.no_grad():
        null = conditioner.null(1)
        prob, rows = TrainConfig().null_condition_prob, 10_000
        torch.manual_seed(0)
        condition = torch.randn(rows, 77, 32)
        mixed = with_null_conditions(condition, conditioner, prob)
    is_null = (mixed == null).flatten(1).all(1)
    assert torch.equal(mixed[~is_null], condition[~is_null])  # the others are untouched
    # 4.5 standard deviations of Binomial(rows, prob): a seeded draw outside it is a wrong share.
    spread = 4.5 * math.sqrt(rows * prob * (1 - prob))
    assert prob == 0.1 and abs(int(is_null.sum()) - rows * prob) < spread
