"""A miniature MS-COCO captions dataset for the tiny tier and tests.

Each image is one coloured shape on a plain background, and its captions name the shape, its
colour, its size and the background colour, so a model can learn the caption-image relation and
FID can tell a right-looking sample set from a wrong one. Written in the real COCO captions
layout, so the loaders and the FID protocol run unchanged on it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 40, 170),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
SCALES = {"small": 0.3, "large": 0.65}  # shape extent as a share of the image side
TEMPLATES = (
    "a {colour} {shape} on a {background} background",
    "a {scale} {colour} {shape}",
    "a {background} background with a {colour} {shape}",
    "{colour} {shape}, {background} background",
    "a {scale} {colour} {shape} in front of a {background} wall",
)
# COCO assigns image ids across splits; val ids start here so the two splits never collide.
VAL_ID_OFFSET = 1_000_000


@dataclass(frozen=True)
class CocoFixture:
    train_captions: Path
    val_captions: Path
    train_images: Path
    val_images: Path


def build_coco_fixture(
    root: Path, n_train: int = 256, n_val: int = 128, size: int = 32, seed: int = 0
) -> CocoFixture:
    """Writes root/{train,val}/*.png and root/captions_{train,val}.json; same arguments, same bytes."""
    root = Path(root)
    fixture = CocoFixture(
        train_captions=root / "captions_train.json",
        val_captions=root / "captions_val.json",
        train_images=root / "train",
        val_images=root / "val",
    )
    _write_split(fixture.train_images, fixture.train_captions, n_train, size, f"{seed}/train", 0)
    _write_split(fixture.val_images, fixture.val_captions, n_val, size, f"{seed}/val", VAL_ID_OFFSET)
    return fixture


def _write_split(image_dir: Path, captions_file: Path, n: int, size: int, seed: str, first_id: int) -> None:
    # One random stream per split: growing one split leaves the other's images unchanged.
    rng = random.Random(seed)
    image_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id in range(first_id, first_id + n):
        file_name = f"{image_id:012d}.png"
        colour, background = rng.sample(sorted(COLOURS), 2)
        shape, scale = rng.choice(SHAPES), rng.choice(sorted(SCALES))
        image = _draw(shape, COLOURS[colour], COLOURS[background], SCALES[scale], size, rng)
        image.save(image_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        words = {"colour": colour, "background": background, "shape": shape, "scale": scale}
        for template in rng.sample(TEMPLATES, rng.randint(2, 5)):
            caption = template.format(**words)
            annotations.append({"image_id": image_id, "id": first_id + len(annotations), "caption": caption})
    info = {"description": "synthetic shapes fixture (experiments/tiny/coco.py)"}
    captions_file.write_text(json.dumps({"info": info, "images": images, "annotations": annotations}))


def _draw(
    shape: str,
    colour: tuple[int, int, int],
    background: tuple[int, int, int],
    scale: float,
    size: int,
    rng: random.Random,
) -> Image.Image:
    image = Image.new("RGB", (size, size), background)
    extent = max(2, round(scale * size))
    # Random placement (fully inside the frame) so equal captions still give distinct images.
    left, top = rng.randint(0, size - extent), rng.randint(0, size - extent)
    draw_shape(ImageDraw.Draw(image), shape, left, top, extent, colour)
    return image


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, left: int, top: int, extent: int, fill: tuple[int, ...] | int
) -> None:
    """A circle, square, triangle or cross in the square of side `extent` whose top-left pixel is
    (left, top)."""
    box = (left, top, left + extent - 1, top + extent - 1)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(left + extent / 2, top), (left, box[3]), (box[2], box[3])], fill=fill)
    elif shape == "cross":
        # Arms a third of the extent wide: at 8 px still a plus sign, not a blob.
        arm = max(1, round(extent / 3))
        inner = left + (extent - arm) // 2, top + (extent - arm) // 2
        draw.rectangle((inner[0], top, inner[0] + arm - 1, box[3]), fill=fill)
        draw.rectangle((left, inner[1], box[2], inner[1] + arm - 1), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: circle, square, triangle, cross")
