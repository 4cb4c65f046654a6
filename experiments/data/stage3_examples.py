"""Stage-3 rows -> what the model trains on: an interleaved prompt, its images, a target image,
drawn as (code) unilm/data/vl/openimage_loader.py and instructpix2pix_loader.py draw them.

- compositional: the caption with each entity's segment image after its word, "a dog <i> in a hat
  <i>". With p = entity_drop_prob the words of all the caption's entities go at once ("a <i> in
  a <i>"): one draw per caption. Each segment then keeps its background with p =
  background_keep_prob, else it is the entity on white: one draw per entity, in caption order.
- edit: "<caption> <i> <instruction>" with the source image; with p = caption_drop_prob the
  caption goes, "<i> <instruction>", the shape of a DreamBench prompt. A row without a caption
  draws all the same, so the stream of draws does not depend on which rows have one.
- captioned: the caption alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from experiments.data.stage3_rows import CaptionedRow, CompositionalRow, EditRow
from experiments.data.untrusted_images import open_untrusted_image
from models.mllm import MLLMEncoder

IMAGE = MLLMEncoder.IMAGE_PLACEHOLDER


@dataclass(frozen=True)
class Example:
    prompt: str
    images: list[Image.Image]  # one per IMAGE placeholder, in order
    target: Path | bytes  # the image the diffusion loss reconstructs (a file, or its encoded bytes)


def compositional_example(
    row: CompositionalRow, rng: random.Random, entity_drop_prob: float, background_keep_prob: float,
    max_pixels: int,
) -> Example:
    drop_words = rng.random() < entity_drop_prob
    pieces: list[str] = []
    images: list[Image.Image] = []
    cursor = 0
    for entity in row.entities:  # in caption order
        pieces.append(row.caption[cursor:entity.start])
        if not drop_words:
            pieces.append(f"{entity.word} ")
        pieces.append(IMAGE)
        cursor = entity.end
        keep_background = rng.random() < background_keep_prob
        segment = entity.segment if keep_background else entity.segment_white
        images.append(open_untrusted_image(segment, max_pixels))
    pieces.append(row.caption[cursor:])
    return Example("".join(pieces), images, row.image)


def edit_example(row: EditRow, rng: random.Random, caption_drop_prob: float, max_pixels: int) -> Example:
    drop_caption = rng.random() < caption_drop_prob
    caption = None if drop_caption else row.caption
    prompt = f"{caption} {IMAGE} {row.instruction}" if caption else f"{IMAGE} {row.instruction}"
    return Example(prompt, [open_untrusted_image(row.source, max_pixels)], row.target)


def captioned_example(row: CaptionedRow) -> Example:
    return Example(row.caption, [], row.image)
