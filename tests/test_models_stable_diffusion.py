"""The frozen SD v1.5 parts (CLIP text target, U-Net + VAE decoder) on a tiny random checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.tiny.models import save_tiny_stable_diffusion
from models.image_decoder import ImageDecoder
from models.text_target import ClipTextTarget


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny_sd")
    save_tiny_stable_diffusion(path)
    return str(path)


@pytest.fixture(scope="module")
def target(sd_path: str) -> ClipTextTarget:
    return ClipTextTarget.from_pretrained(sd_path)


@pytest.fixture(scope="module")
def decoder(sd_path: str) -> ImageDecoder:
    return ImageDecoder.from_pretrained(sd_path)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_text_target_shapes_and_frozen(target: ClipTextTarget) -> None:
    assert (target.max_length, target.hidden_size) == (77, 32)
    embeddings = target(["a dog on the beach", "two cats"])
    assert embeddings.shape == (2, 77, 32)
    assert not embeddings.requires_grad
    assert not any(p.requires_grad for p in target.parameters())
    target.train()
    assert not target.text_encoder.training


def test_token_counts_exclude_bos_and_eos(target: ClipTextTarget) -> None:
    short, long = target.token_counts(["a dog", " ".join(["a dog"] * 50)])
    assert short == 2  # both words are whole tokens of the tiny vocabulary
    assert long == 100 > 75
    ids = target.tokenize(["a dog", " ".join(["a dog"] * 50)])
    assert ids.shape == (2, 77)
    tok = target.tokenizer
    assert ids[0, 0] == tok.bos_token_id and ids[0, 3] == tok.eos_token_id
    assert ids[1, -1] == tok.eos_token_id  # truncated, still closed with EOS


def test_diffusion_loss_trains_the_condition_only(decoder: ImageDecoder) -> None:
    images = torch.rand(2, 3, 32, 32, generator=seeded()) * 2 - 1
    condition = torch.randn(2, 77, decoder.cross_attention_dim, requires_grad=True)
    loss = decoder.diffusion_loss(images, condition, generator=seeded(1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert condition.grad is not None and condition.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in decoder.parameters())
    again = decoder.diffusion_loss(images, condition.detach(), generator=seeded(1))
    torch.testing.assert_close(again, loss.detach())


def test_encode_images_gives_scaled_latents(decoder: ImageDecoder) -> None:
    latents = decoder.encode_images(torch.zeros(3, 3, 32, 32), generator=seeded())
    assert latents.shape == (3, 4, 8, 8)
    assert not latents.requires_grad


@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
def test_sample_size_and_determinism(decoder: ImageDecoder, sampler: str) -> None:
    condition = torch.randn(2, 77, 32, generator=seeded(2))
    null = torch.zeros(1, 77, 32)
    kwargs = dict(guidance=3.0, steps=4, sampler=sampler, height=32, width=48)
    first = decoder.sample(condition, null, generator=seeded(), **kwargs)
    second = decoder.sample(condition, null, generator=seeded(), **kwargs)
    assert len(first) == 2 and all(image.size == (48, 32) for image in first)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_different_conditions_give_different_images(decoder: ImageDecoder) -> None:
    null = torch.zeros(1, 77, 32)
    kwargs = dict(guidance=7.5, steps=4, sampler="ddim", height=32, width=32)
    one = decoder.sample(torch.randn(1, 77, 32, generator=seeded(3)), null, generator=seeded(), **kwargs)
    two = decoder.sample(torch.randn(1, 77, 32, generator=seeded(4)), null, generator=seeded(), **kwargs)
    assert not np.array_equal(np.asarray(one[0]), np.asarray(two[0]))


def test_unknown_sampler_is_rejected(decoder: ImageDecoder) -> None:
    with pytest.raises(ValueError, match="'euler'"):
        decoder.sample(torch.zeros(1, 77, 32), torch.zeros(1, 77, 32), guidance=3.0, steps=2,
                       sampler="euler", height=32, width=32)
