"""Images as the official loaders prepare them: torchvision's Resize + CenterCrop, written on PIL,
for the MLLM (bicubic, CLIP-normalised) and the U-Net's targets (bilinear)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from experiments.config import MAX_IMAGE_PIXELS
from experiments.data.images import image_tensor
from models.image_preprocessing import clip_pixel_values, resize_center_crop

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
RESAMPLES = {Image.Resampling.BICUBIC: T.InterpolationMode.BICUBIC,
             Image.Resampling.BILINEAR: T.InterpolationMode.BILINEAR}


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("resample", RESAMPLES)
@pytest.mark.parametrize("size", [(40, 20), (20, 40), (40, 33), (33, 40), (300, 301)])
def test_resize_center_crop_matches_torchvision(size: tuple[int, int], resample: Image.Resampling) -> None:
    img = noise(size)
    ours = resize_center_crop(img, 16, resample)
    theirs = T.CenterCrop(16)(T.Resize(16, interpolation=RESAMPLES[resample])(img))
    assert ours.size == (16, 16)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_a_wide_image_keeps_its_centre_instead_of_being_squashed() -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))  # red left and right quarters ...
    img.paste((0, 255, 0), (10, 0, 30, 20))  # ... a green centre square
    out = np.asarray(resize_center_crop(img, 10, Image.Resampling.BICUBIC)).astype(int)
    assert out.shape == (10, 10, 3)
    assert (out[:, 1:-1, 1] > 200).all() and (out[:, 1:-1, 0] < 60).all()


def test_mllm_pixels_are_the_official_gpt_transform() -> None:
    """(code) Resize(224, BICUBIC) + CenterCrop(224) + CLIP normalisation, here at 24 px."""
    images = [noise((50, 30), 2), noise((30, 41), 3)]
    ours = clip_pixel_values(images, 24, CLIP_MEAN, CLIP_STD)
    official = T.Compose([T.Resize(24, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(24),
                          T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    torch.testing.assert_close(ours, torch.stack([official(img) for img in images]), rtol=0, atol=1e-5)


def test_targets_are_the_official_diff_transform(tmp_path) -> None:
    """(code) Resize(512) (bilinear) + CenterCrop(512) + Normalize(0.5, 0.5), here at 16 px."""
    noise((37, 23), 4).save(tmp_path / "target.png")
    official = T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    with Image.open(tmp_path / "target.png") as img:
        expected = official(img.convert("RGB"))
    torch.testing.assert_close(image_tensor(tmp_path / "target.png", 16, MAX_IMAGE_PIXELS), expected,
                               rtol=0, atol=1e-5)
