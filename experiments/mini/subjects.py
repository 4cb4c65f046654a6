"""The mini world's DreamBench subjects: each of DreamBooth's subject names becomes one object
whose surface carries a pattern (stripes, dots, checks) in a second colour. No caption word names
a pattern, so only an image of the subject in the prompt can make a model draw it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from experiments.mini.scenes import OBJECT_COLOURS, SHAPES

PATTERNS = ("stripes", "dots", "checks")


@dataclass(frozen=True)
class Subject:
    name: str  # DreamBooth's subject name, e.g. "backpack"
    shape: str
    colour: str
    pattern: str
    pattern_colour: str


def assign_subjects(names: list[str], seed: int) -> list[Subject]:
    """A distinct (shape, colour, pattern) per name, drawn from the seed."""
    looks = [
        (shape, colour, pattern)
        for shape in SHAPES
        for colour in sorted(OBJECT_COLOURS)
        for pattern in PATTERNS
    ]
    if len(names) > len(looks):
        raise ValueError(f"{len(names)} subjects but the world has only {len(looks)} distinct looks")
    rng = random.Random(f"{seed}/subjects")
    rng.shuffle(looks)
    subjects = []
    for name, (shape, colour, pattern) in zip(names, looks):
        second = rng.choice([c for c in sorted(OBJECT_COLOURS) if c != colour])
        subjects.append(Subject(name, shape, colour, pattern, second))
    return subjects


def texture(subject: Subject, size: int, rng: random.Random) -> Image.Image:
    """A size x size image of the subject's pattern; its phase moves from photo to photo."""
    image = Image.new("RGB", (size, size), OBJECT_COLOURS[subject.colour])
    draw = ImageDraw.Draw(image)
    ink = OBJECT_COLOURS[subject.pattern_colour]
    period = max(4, size // 8)  # 4 px at 32: the finest pattern a 32-px image still shows
    phase = rng.randrange(period)
    half = period // 2
    for a in range(-period + phase, size, period):
        if subject.pattern == "stripes":
            draw.rectangle((0, a, size - 1, a + half - 1), fill=ink)
        for b in range(-period + phase, size, period):
            if subject.pattern == "dots":
                draw.rectangle((b + 1, a + 1, b + half, a + half), fill=ink)
            elif subject.pattern == "checks" and ((a - phase) // period + (b - phase) // period) % 2 == 0:
                draw.rectangle((b, a, b + period - 1, a + period - 1), fill=ink)
    return image
