"""The one preprocessing both FID image sets go through before Inception: (code) the official
reference transform of sample_kosmosg_coco.py, as its environment ran it.

An RGB image becomes a float tensor in [0, 1]; torchvision's F.resize(256) on a tensor (bilinear;
the official image's torchvision 0.14 resized tensors without antialiasing, where torchvision >=
0.17 antialiases by default, so the flag is explicit here: `fid.antialias`) and
F.center_crop(256); then torchmetrics' FrechetInceptionDistance(normalize=True), which the
official script scores with, turns it into uint8 as (x * 255).byte(), truncating. The result is
stored as a PNG, which holds those uint8 values exactly, so torch-fidelity reading the folder sees
what torchmetrics' Inception would.

Deliberately not followed (bugs of the official script): its generated images reach the metric
at 512 px, unresized, on the first pass (resized only when a re-run reads them back from disk),
so the two sets are treated differently; here both take this same path. And it re-seeds every
batch to 0, so all 30k images start from the same 16 noises; here each batch has its own seed
(fid.py's `generate`).
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image


def preprocessing_tag(resolution: int, antialias: bool) -> str:
    """The rule, for the run's MLflow tags: FIDs of different rules must never share a table."""
    bilinear = "bilinear-antialias" if antialias else "bilinear"
    return f"float-{bilinear}-short{resolution}-centercrop{resolution}-uint8trunc"


def fid_image(image: Image.Image, resolution: int, antialias: bool) -> Image.Image:
    """`image` prepared for Inception as the official reference images are."""
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255.0
    resized = TF.resize(pixels, resolution, interpolation=TF.InterpolationMode.BILINEAR, antialias=antialias)
    square = TF.center_crop(resized, [resolution, resolution])
    return Image.fromarray((square * 255).byte().permute(1, 2, 0).numpy())
