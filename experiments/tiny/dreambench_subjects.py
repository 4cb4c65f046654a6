"""A miniature DreamBench in DreamBooth's layout for the tiny tier and tests.

Each subject is one coloured shape: its photos share shape and colour and vary in placement,
size and background shade, so photos of one subject look more alike than photos of two, which
is what DINO and CLIP-I (and the real-image oracle) measure. The prompts file is the real one,
a byte-identical copy of DreamBooth's `dataset/prompts_and_classes.txt`.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from experiments.tiny.coco import COLOURS, SHAPES, draw_shape

PROMPTS_FILE = Path(__file__).parent / "prompts_and_classes.txt"
# The tiny tier's asset folder keeps DreamBench here (assets.py), so its prompts file there is a
# verbatim copy of PROMPTS_FILE, which `repro plan` reads before any asset is built.
ASSET_FOLDER = "dreambench"
# Objects and a live subject, so both template lists are exercised.
DEFAULT_SUBJECTS = ("backpack", "dog", "teapot")


@dataclass(frozen=True)
class DreamBenchFixture:
    root: Path  # the dataset/ folder: one folder per subject
    prompts: Path  # root/prompts_and_classes.txt, as DreamBooth keeps it


def build_dreambench_fixture(
    root: Path,
    subjects: tuple[str, ...] = DEFAULT_SUBJECTS,
    photos_per_subject: int = 3,
    size: int = 64,
    seed: int = 0,
) -> DreamBenchFixture:
    """Writes root/<subject>/00.jpg ... and root/prompts_and_classes.txt; same arguments, same bytes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # Colour is what a random encoder picks up most, so no two subjects share one.
    colours = sorted(COLOURS)
    if len(subjects) > len(colours):
        raise ValueError(f"{len(subjects)} subjects but only {len(colours)} distinct colours")
    random.Random(f"{seed}/colours").shuffle(colours)
    for index, (subject, colour) in enumerate(zip(subjects, colours)):
        shape = SHAPES[index % len(SHAPES)]
        folder = root / subject
        folder.mkdir(exist_ok=True)
        # Placement and shade come from one stream per subject name, independent of the others.
        rng = random.Random(f"{seed}/{subject}")
        for photo in range(photos_per_subject):
            _photo(shape, COLOURS[colour], size, rng).save(folder / f"{photo:02d}.jpg", quality=95)
    prompts = root / PROMPTS_FILE.name
    shutil.copyfile(PROMPTS_FILE, prompts)
    return DreamBenchFixture(root, prompts)


def _photo(shape: str, colour: tuple[int, int, int], size: int, rng: random.Random) -> Image.Image:
    shade = rng.randint(110, 170)
    image = Image.new("RGB", (size, size), (shade, shade, shade))
    extent = round(rng.uniform(0.55, 0.8) * size)
    left, top = rng.randint(0, size - extent), rng.randint(0, size - extent)
    draw_shape(ImageDraw.Draw(image), shape, left, top, extent, colour)
    return image
