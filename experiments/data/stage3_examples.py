"""Stage-3 rows -> what the model trains on: an interleaved prompt, its images, a target image.

- compositional: the caption with each entity's segmented image after its word, "a dog <i> in
  a hat <i>"; the word itself is dropped with p = entity_drop_prob ("a <i> in a <i>") and the
  segment keeps its original background with p = background_keep_prob (paper, Training).
- edit: "<caption> <i> <instruction>" with the source image (paper's InstructPix2Pix layout).
- captioned: the caption alone.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from experiments.data.segments import segment_view
from experiments.data.stage3_rows import CaptionedRow, CompositionalRow, EditRow
from models.mllm import MLLMEncoder

IMAGE = MLLMEncoder.IMAGE_PLACEHOLDER


@dataclass(frozen=True)
class Example:
    prompt: str
    images: list[Image.Image]  # one per IMAGE placeholder, in order
    target: Path | bytes  # the image the diffusion loss reconstructs (a file, or its encoded bytes)


def compositional_example(
    row: CompositionalRow, rng: random.Random, entity_drop_prob: float, background_keep_prob: float
) -> Example:
    pieces: list[str] = []
    images: list[Image.Image] = []
    cursor = 0
    for entity in sorted(row.entities, key=lambda e: e.start):
        pieces.append(row.caption[cursor:entity.start])
        if rng.random() >= entity_drop_prob:
            pieces.append(f"{entity.word} ")
        pieces.append(IMAGE)
        cursor = entity.end
        with Image.open(entity.segment) as segment:
            images.append(segment_view(segment, keep_background=rng.random() < background_keep_prob))
    pieces.append(row.caption[cursor:])
    return Example("".join(pieces), images, row.image)


def edit_example(row: EditRow) -> Example:
    with Image.open(io.BytesIO(row.source) if isinstance(row.source, bytes) else row.source) as source:
        image = source.convert("RGB")
    prompt = f"{row.caption} {IMAGE} {row.instruction}" if row.caption else f"{IMAGE} {row.instruction}"
    return Example(prompt, [image], row.target)


def captioned_example(row: CaptionedRow) -> Example:
    return Example(row.caption, [], row.image)
