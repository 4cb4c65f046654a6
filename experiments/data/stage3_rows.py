"""Stage-3 (instruction tuning) data: readers for the three kinds the paper mixes 2 : 2 : 1.

Each kind is a manifest, a `.jsonl` file (one JSON object per line) or a `.parquet` file (one
row per record, same field names), next to its images; image paths are relative to the
manifest's folder. Fields marked ? may be absent or null.

compositional (constructed entity data: caption -> entities -> segments)
    caption: str                   the target image's caption
    image: str                     the target image
    entities: list of {            at least one; spans must not overlap
        word: str                  the entity as written in the caption: caption[start:end] == word
        start: int, end: int       its character span [start, end) in the caption
        segment: str               its square crop from the image, background kept
        segment_white: str         the same crop, every pixel outside the entity's mask white
    }                              (how they are made: experiments/data/segments.py)
    {"caption": "a red circle and a blue square", "image": "images/7.png", "entities": [
     {"word": "circle", "start": 6, "end": 12, "segment": "segments/00000/00000007_0.png",
      "segment_white": "segments/00000/00000007_0_white.png"},
     {"word": "square", "start": 24, "end": 30, "segment": "segments/00000/00000007_1.png",
      "segment_white": "segments/00000/00000007_1_white.png"}]}

edits (InstructPix2Pix-style; its original_image / edit_prompt / edited_image / original_prompt)
    source: str                    the image before the edit
    instruction: str               the edit, in words
    target: str                    the image after the edit
    caption?: str                  a caption of the source; the prompt is
                                   `<s> caption <image>source</image> instruction </s>`
    {"source": "before/3.png", "instruction": "make the circle blue", "target": "after/3.png",
     "caption": "a red circle on a white background"}

captioned (text-to-image)
    image: str, caption: str       (the image's size is read from the file, for stage 3's filter)
    {"image": "images/12.png", "caption": "a small green triangle"}

Rows that cannot be used are skipped and counted by reason (experiments/data/manifest.py), including
a compositional row any of whose entities is not in its caption; entities come back sorted by
their position in the caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from experiments.config import MAX_IMAGE_PIXELS, STAGE3_KINDS
from experiments.data.manifest import (
    Loaded,
    RowError,
    checked_image,
    checked_image_bytes,
    load_manifest,
    optional_text,
    required,
    required_text,
    sized_image,
)


@dataclass(frozen=True)
class Entity:
    word: str  # == caption[start:end]
    start: int
    end: int
    segment: Path  # the square crop with its background (experiments/data/segments.py)
    segment_white: Path  # the same crop on white


@dataclass(frozen=True)
class CompositionalRow:
    caption: str
    image: Path
    entities: tuple[Entity, ...]  # in caption order, spans disjoint


@dataclass(frozen=True)
class EditRow:
    source: Path | bytes  # a file, or the encoded image itself (InstructPix2Pix's parquet)
    instruction: str
    target: Path | bytes
    caption: str | None  # of the source image


@dataclass(frozen=True)
class CaptionedRow:
    image: Path
    caption: str
    size: tuple[int, int]  # the image's width and height


# The loaders and parsers take data.max_image_pixels (experiments/data/untrusted_images.py).
def load_compositional(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Loaded[CompositionalRow]:
    return load_manifest(path, partial(_compositional_row, max_pixels=max_pixels), "compositional")


def load_edits(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Loaded[EditRow]:
    return load_manifest(path, partial(_edit_row, max_pixels=max_pixels), "edits")


def load_captioned(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Loaded[CaptionedRow]:
    return load_manifest(path, partial(_captioned_row, max_pixels=max_pixels), "captioned")


def _compositional_row(record: dict[str, Any], folder: Path, max_pixels: int) -> CompositionalRow:
    caption = required_text(record, "caption")
    entities = required(record, "entities", list)
    if not entities:
        raise RowError("bad_field", "'entities' is empty")
    parsed = sorted((_entity(entity, caption, folder, max_pixels) for entity in entities),
                    key=lambda e: e.start)
    for before, after in zip(parsed, parsed[1:]):
        if after.start < before.end:
            raise RowError("bad_field", f"entities {before.word!r} and {after.word!r} overlap in the caption")
    image = checked_image(folder, required_text(record, "image"), max_pixels)
    return CompositionalRow(caption, image, tuple(parsed))


def _entity(record: Any, caption: str, folder: Path, max_pixels: int) -> Entity:
    if not isinstance(record, dict):
        raise RowError("bad_field", f"an entity is a {type(record).__name__}, not an object: {record!r}")
    word = required_text(record, "word")
    start, end = required(record, "start", int), required(record, "end", int)
    if not (0 <= start < end <= len(caption)) or caption[start:end] != word:
        raise RowError("entity_not_in_caption", f"entity {word!r} is not at [{start}, {end}) of {caption!r}")
    segment = checked_image(folder, required_text(record, "segment"), max_pixels)
    white = checked_image(folder, required_text(record, "segment_white"), max_pixels)
    return Entity(word, start, end, segment, white)


# InstructPix2Pix as published on the Hugging Face hub: parquet shards with the images embedded.
_INSTRUCT_PIX2PIX = {"original_image": "source", "edit_prompt": "instruction", "edited_image": "target",
                     "original_prompt": "caption"}


def _edit_row(record: dict[str, Any], folder: Path, max_pixels: int) -> EditRow:
    if "edit_prompt" in record:
        return _embedded_edit_row(record, max_pixels)
    instruction = required_text(record, "instruction")
    caption = optional_text(record, "caption")
    source = checked_image(folder, required_text(record, "source"), max_pixels)
    target = checked_image(folder, required_text(record, "target"), max_pixels)
    return EditRow(source, instruction, target, caption)


def _embedded_edit_row(record: dict[str, Any], max_pixels: int) -> EditRow:
    fields = {ours: record.get(theirs) for theirs, ours in _INSTRUCT_PIX2PIX.items()}
    return EditRow(checked_image_bytes(fields, "source", max_pixels), required_text(fields, "instruction"),
                   checked_image_bytes(fields, "target", max_pixels), optional_text(fields, "caption"))


def _captioned_row(record: dict[str, Any], folder: Path, max_pixels: int) -> CaptionedRow:
    caption = required_text(record, "caption")
    image, size = sized_image(folder, required_text(record, "image"), max_pixels)
    return CaptionedRow(image, caption, size)


# One reader per kind, in the order of `data.mix`.
LOADERS: dict[str, Callable[[str | Path], Loaded]] = dict(
    zip(STAGE3_KINDS, (load_compositional, load_edits, load_captioned))
)
# One row parser per kind, as the streamed recipe checks each row (raising RowError to skip it),
# given data.max_image_pixels as `max_pixels`.
PARSERS: dict[str, Callable[..., Any]] = dict(
    zip(STAGE3_KINDS, (_compositional_row, _edit_row, _captioned_row))
)
