"""Training images as the decoder takes them: short side resized, centre crop, pixel tensors.
(FID prepares its two image sets another way, the official one: evaluation/fid_images.py.)"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Short side to `resolution` (PIL bicubic), then the central square; sizes and offsets
    rounded as torchvision's Resize + CenterCrop round them."""
    width, height = img.size
    if width <= height:
        size = (resolution, int(resolution * height / width))
    else:
        size = (int(resolution * width / height), resolution)
    img = img.resize(size, Image.Resampling.BICUBIC)
    left = int(round((size[0] - resolution) / 2.0))
    top = int(round((size[1] - resolution) / 2.0))
    return img.crop((left, top, left + resolution, top + resolution))


def image_tensor(source: Path | bytes, resolution: int) -> torch.Tensor:
    """An RGB image (a file, or its encoded bytes) as a (3, r, r) tensor in [-1, 1], cropped by
    `center_crop_resize`."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        pixels = np.asarray(center_crop_resize(image.convert("RGB"), resolution), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0
