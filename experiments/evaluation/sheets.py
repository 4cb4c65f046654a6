"""Pictures of generated images for people to look at: the FID run's sample grid, and one sheet
per DreamBench subject (the input photo, then a few generated images under the Kosmos-G prompts
that made them, "<i>" being the input photo)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid, save_image

from experiments.data.dreambench_layout import Subject, open_photo
from experiments.evaluation.dreambench_generate import GeneratedImage

IMAGES_PER_SHEET = 6
GRID_IMAGES = 16
PANEL_INCHES = 2.0


def save_subject_sheet(subject: Subject, images: Sequence[GeneratedImage], path: Path) -> Path:
    """The first image (k = 0) of each of the subject's first IMAGES_PER_SHEET prompts."""
    firsts = [image for image in images if image.prompt.subject == subject.name and image.k == 0]
    shown = firsts[:IMAGES_PER_SHEET]
    panels = [(subject.input_photo, f"input: {subject.input_photo.name}")]
    panels += [(image.path, image.prompt.input_prompt) for image in shown]
    # A bare Figure, not pyplot: no global figure registry and no GUI backend in a headless job.
    figure = Figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES + 0.6))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, (file, title) in zip(axes[0], panels):
        axis.imshow(open_photo(file))
        axis.set_title("\n".join(textwrap.wrap(title, 24)), fontsize=7)
        axis.axis("off")
    figure.suptitle(f"{subject.name} ({subject.class_name})", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def save_grid(image_dir: Path, path: Path) -> Path:
    files = sorted(image_dir.glob("*.png"))[:GRID_IMAGES]
    images = []
    for file in files:
        with Image.open(file) as image:
            images.append(pil_to_tensor(image.convert("RGB")))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.stack(images).float() / 255.0, nrow=4, padding=2), path)
    return path
