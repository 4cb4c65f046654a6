"""Image files as the models take them: the protocol's resize and crop, and pixel tensors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Short side to `resolution` (bicubic), then the central square; rounding as torchvision's
    Resize + CenterCrop, which the official evaluation uses."""
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
    """An RGB image (a file, or its encoded bytes) as a (3, r, r) tensor in [-1, 1], cropped the
    way the FID protocol crops."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        pixels = np.asarray(center_crop_resize(image.convert("RGB"), resolution), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0
