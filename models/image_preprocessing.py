"""Images as the official Kosmos-G code prepares them: torchvision's Resize(size) (short side to
`size`) then CenterCrop(size), on PIL images, for the MLLM's vision tower and the U-Net's targets.

Written on PIL directly: torchvision's Resize on a PIL image is PIL's `resize` with the sizes and
rounding below, so the pixels are the same without importing torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

# (code) The MLLM's images: Resize(224, interpolation=BICUBIC) + CenterCrop(224) + CLIP's mean
# and std (unilm/data/vl/*_loader.py 'gpt' transform, app_model.py).
MLLM_RESAMPLE = Image.Resampling.BICUBIC
# (code) The U-Net's target images: Resize(512) + CenterCrop(512), torchvision's default
# interpolation, bilinear (the loaders' 'diff' transform).
TARGET_RESAMPLE = Image.Resampling.BILINEAR


def resize_center_crop(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Short side to `size`, then the central `size` square, rounded as torchvision rounds."""
    width, height = image.size
    if width <= height:
        scaled = (size, int(size * height / width))
    else:
        scaled = (int(size * width / height), size)
    image = image.resize(scaled, resample)
    left = int(round((scaled[0] - size) / 2.0))
    top = int(round((scaled[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def clip_pixel_values(
    images: list[Image.Image], size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """(N, 3, size, size) float pixels for the vision tower: bicubic resize and centre crop, then
    (x / 255 - mean) / std per channel. Stock Kosmos-2 processors squash an image to the square
    instead, which distorts every non-square photo."""
    pixels = np.stack([
        np.asarray(resize_center_crop(image.convert("RGB"), size, MLLM_RESAMPLE), dtype=np.float32)
        for image in images
    ])
    normalised = (pixels / 255.0 - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(normalised).permute(0, 3, 1, 2).contiguous()
