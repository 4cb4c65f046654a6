"""A miniature stage-3 data set for the tiny tier and tests: the three kinds of rows of
experiments/data/stage3_rows.py over images of coloured shapes (the vocabulary of the COCO fixture).

The compositional rows come out of `build_compositional`, the build step real data goes through,
with each shape's exact mask given in place of a segmenter. Two rows are broken on purpose, an
edit whose source image is a corrupt file and a compositional row whose entity is not in its
caption, and one caption-only row has an image half the others' size, which the tiny tier's
`data.captioned_min_image_side` drops, so a run on this set logs a skip count of 1 for each.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from experiments.data.build import build_compositional
from experiments.tiny.coco import COLOURS, SCALES, SHAPES, TEMPLATES, draw_shape

PAIR_TEMPLATES = (
    "a {colour} {shape} and a {other_colour} {other_shape} on a {background} background",
    "a {colour} {shape} next to a {other_colour} {other_shape}",
    "{colour} {shape} and {other_colour} {other_shape}, {background} background",
)
EDIT_TEMPLATES = (
    "make the {shape} {new_colour}",
    "turn the {colour} {shape} {new_colour}",
    "paint the {shape} {new_colour}",
)
NOT_A_SHAPE = "hexagon"  # the entity word of the broken compositional row; no caption has it


@dataclass(frozen=True)
class InstructFixture:
    """Manifest paths, named like the DataConfig fields they fill."""

    compositional: Path
    edits: Path
    captioned: Path


def build_instruct_fixture(root: Path, n_rows: int = 32, size: int = 32, seed: int = 0) -> InstructFixture:
    """Writes `n_rows` good rows of each kind (plus the two broken ones) under `root`; same
    arguments, same bytes."""
    root = Path(root)

    def rng(kind: str) -> random.Random:
        # One stream per kind, so a change to how one kind is drawn leaves the others unchanged.
        return random.Random(f"{seed}/{kind}")

    return InstructFixture(
        compositional=_write_compositional(root / "compositional", n_rows, size, rng("compositional")),
        edits=_write_edits(root / "edits", n_rows, size, rng("edits")),
        captioned=_write_captioned(root / "captioned", n_rows, size, rng("captioned")),
    )


def _write_compositional(folder: Path, n: int, size: int, rng: random.Random) -> Path:
    source = folder / "source"
    (source / "images").mkdir(parents=True, exist_ok=True)
    (source / "masks").mkdir(exist_ok=True)
    rows = []
    extent = size * 2 // 5
    for i in range(n):
        colour, other_colour, background = rng.sample(sorted(COLOURS), 3)
        shape, other_shape = rng.choice(SHAPES), rng.choice(SHAPES)
        image = Image.new("RGB", (size, size), COLOURS[background])
        masks = []
        # One shape in each half of the image, so the two never overlap.
        for k, (name, fill, half) in enumerate(((shape, colour, 0), (other_shape, other_colour, size // 2))):
            left, top = half + rng.randint(0, size // 2 - extent), rng.randint(0, size - extent)
            draw_shape(ImageDraw.Draw(image), name, left, top, extent, COLOURS[fill])
            mask = Image.new("L", (size, size), 0)
            draw_shape(ImageDraw.Draw(mask), name, left, top, extent, 255)
            mask.save(source / "masks" / f"{i}_{k}.png")
            masks.append(f"masks/{i}_{k}.png")
        image.save(source / "images" / f"{i}.png")
        words = {"colour": colour, "shape": shape, "other_colour": other_colour, "other_shape": other_shape,
                 "background": background}
        caption = rng.choice(PAIR_TEMPLATES).format(**words)
        rows.append(
            {"image": f"images/{i}.png", "caption": caption, "entities": [shape, other_shape], "masks": masks}
        )
    _write_jsonl(source / "entities.jsonl", rows)
    # Segments at the images' own size: upscaled to the official 512 px they would only cost time.
    manifest = build_compositional(source / "entities.jsonl", folder, None, segment_size=size).manifest
    first = json.loads(manifest.read_text().splitlines()[0])
    broken = {**first, "entities": [{**first["entities"][0], "word": NOT_A_SHAPE}]}
    with manifest.open("a") as lines:
        lines.write(json.dumps(broken) + "\n")
    return manifest


def _write_edits(folder: Path, n: int, size: int, rng: random.Random) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour, new_colour, background = rng.sample(sorted(COLOURS), 3)
        shape, scale = rng.choice(SHAPES), rng.choice(sorted(SCALES))
        extent = max(2, round(SCALES[scale] * size))
        left, top = rng.randint(0, size - extent), rng.randint(0, size - extent)
        for name, fill in ((f"{i}_before.png", colour), (f"{i}_after.png", new_colour)):
            image = Image.new("RGB", (size, size), COLOURS[background])
            draw_shape(ImageDraw.Draw(image), shape, left, top, extent, COLOURS[fill])
            image.save(folder / "images" / name)
        instruction = rng.choice(EDIT_TEMPLATES).format(shape=shape, colour=colour, new_colour=new_colour)
        # Every fourth row has no caption of its source: the field is optional.
        caption = None if i % 4 == 3 else f"a {colour} {shape} on a {background} background"
        rows.append({"source": f"images/{i}_before.png", "instruction": instruction,
                     "target": f"images/{i}_after.png", "caption": caption})
    (folder / "images" / "corrupt.png").write_bytes(b"these bytes are not an image")
    rows.append({**rows[0], "source": "images/corrupt.png"})
    _write_jsonl(folder / "edits.jsonl", rows)
    return folder / "edits.jsonl"


def _write_captioned(folder: Path, n: int, size: int, rng: random.Random) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour, background = rng.sample(sorted(COLOURS), 2)
        shape, scale = rng.choice(SHAPES), rng.choice(sorted(SCALES))
        extent = max(2, round(SCALES[scale] * size))
        image = Image.new("RGB", (size, size), COLOURS[background])
        draw_shape(ImageDraw.Draw(image), shape, rng.randint(0, size - extent), rng.randint(0, size - extent),
                   extent, COLOURS[colour])
        image.save(folder / "images" / f"{i}.png")
        caption = rng.choice(TEMPLATES).format(colour=colour, shape=shape, scale=scale, background=background)
        rows.append({"image": f"images/{i}.png", "caption": caption})
    with Image.open(folder / "images" / "0.png") as first:
        first.resize((size // 2, size // 2)).save(folder / "images" / "small.png")
    rows.append({**rows[0], "image": "images/small.png"})
    _write_jsonl(folder / "captioned.jsonl", rows)
    return folder / "captioned.jsonl"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
