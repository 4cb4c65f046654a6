"""The harness's FID against torchmetrics' FrechetInceptionDistance, the metric the official
sample_kosmosg_coco.py scores with, on the same images through the official preprocessing and
with the same Inception weights (the tiny tier's random ones)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance

from experiments.config import FidConfig
from experiments.evaluation.fid import INCEPTION, compute_fid, generate_images, prepare_reference
from experiments.evaluation.fid_images import fid_image

RESOLUTION = 32


def official_tensor(image: Image.Image, resolution: int, antialias: bool) -> torch.Tensor:
    """(code) COCO_Dataset_Image: uint8 -> float / 255 -> F.resize(r) -> F.center_crop(r)."""
    pixels = torch.tensor(np.array(image.convert("RGB"))).permute(2, 0, 1) / 255.0
    return TF.center_crop(TF.resize(pixels, resolution, antialias=antialias), [resolution, resolution])


def shapes(seed: int, size: tuple[int, int], count: int, bright: bool) -> list[Image.Image]:
    """Noisy images with a box in them: two sets whose statistics differ."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 120, (size[1], size[0], 3)).astype(np.uint8)
        top, left = rng.integers(0, size[1] // 2), rng.integers(0, size[0] // 2)
        pixels[top:top + size[1] // 3, left:left + size[0] // 3] = 250 if bright else 60
        images.append(Image.fromarray(pixels))
    return images


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("size", [(45, 31), (31, 45), (64, 64), (20, 27)])
def test_fid_images_are_torchvisions_tensor_resize_and_crop_truncated(size, antialias) -> None:
    image = shapes(size[0], size, 1, True)[0]
    official = (official_tensor(image, RESOLUTION, antialias) * 255).byte()  # FID(normalize=True)'s cast
    ours = torch.from_numpy(np.array(fid_image(image, RESOLUTION, antialias))).permute(2, 0, 1)
    assert torch.equal(ours, official)


def test_the_harness_fid_is_torchmetrics_fid(tiny_assets: Path, tmp_path: Path) -> None:
    """Four images a set: on a CPU the cost is Inception at 299 px and the two 2048 x 2048
    eigenvalue problems; the two agree to float32 rounding (about 1e-7 relative)."""
    weights = tiny_assets / "inception-random.pth"
    real = shapes(0, (48, 36), 4, bright=True)  # COCO-like: non-square photos
    fake = shapes(1, (64, 64), 4, bright=False)  # generated at the decoder's square size
    (tmp_path / "real").mkdir()
    for index, image in enumerate(real):
        image.save(tmp_path / "real" / f"{index}.png")
    captions = tmp_path / "captions.jsonl"
    rows = [json.dumps({"caption": "x", "image": f"{index}.png"}) for index in range(len(real))]
    captions.write_text("".join(row + "\n" for row in rows))
    fid = FidConfig(captions=str(captions), images=str(tmp_path / "real"), resolution=RESOLUTION,
                    feature_extractor=INCEPTION, inception_weights=str(weights))
    reference = prepare_reference(fid, tmp_path / "cache")

    def generate(prompts: list[str], batch: int) -> list[Image.Image]:
        return fake[batch * 2:batch * 2 + len(prompts)]

    generated = generate_images(generate, ["x"] * len(fake), tmp_path / "generated", 2, RESOLUTION, False,
                                antialias=False)
    ours = compute_fid(generated, reference, fid, tmp_path / "cache")

    # torchmetrics 1.0.0 (the official pin) resized to 299 as torch-fidelity does: antialias=False.
    metric = FrechetInceptionDistance(normalize=True, feature_extractor_weights_path=str(weights),
                                      antialias=False)
    metric.update(torch.stack([official_tensor(image, RESOLUTION, False) for image in real]), real=True)
    metric.update(torch.stack([official_tensor(image, RESOLUTION, False) for image in fake]), real=False)
    theirs = float(metric.compute())
    assert ours > 1.0  # the two sets differ, so agreement is not two zeros
    # torchmetrics returns float32 (about 6e-8 relative); a preprocessing or statistics slip moves
    # an FID of ~9 by far more (measured here: 2.9e-8).
    assert ours == pytest.approx(theirs, rel=1e-6)
