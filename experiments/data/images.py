"""Image files as the U-Net trains on them: (code) the official loaders' 'diff' transform.
(FID prepares its two image sets another way, the official one: evaluation/fid_images.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from experiments.data.untrusted_images import open_untrusted_image
from models.image_preprocessing import TARGET_RESAMPLE, resize_center_crop


def image_tensor(source: Path | bytes, resolution: int, max_pixels: int) -> torch.Tensor:
    """An RGB image (a file, or its encoded bytes) as a (3, r, r) tensor in [-1, 1]: (code)
    Resize(r) (bilinear, torchvision's default) + CenterCrop(r) + Normalize(0.5, 0.5), as
    unilm/data/vl/*_loader.py make the U-Net's targets. UnusableImage where it cannot be one
    (experiments/data/untrusted_images.py)."""
    square = resize_center_crop(open_untrusted_image(source, max_pixels), resolution, TARGET_RESAMPLE)
    pixels = np.asarray(square, dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0
