"""`repro data build`: compositional rows from captioned images, the paper's caption -> entity ->
segment pipeline with captions and entity words already given (the paper got them from BLIP-2 and
MPT-7B-Instruct) and the segmentation done here.

Input: a captioned manifest (experiments/data/stage3_rows.py) whose rows also name their entities:
    entities: list[str]            words to find in the caption, in any order
    masks?: list[str | null]       parallel to entities: a precomputed grayscale mask of the
                                   image's size (white = entity) used instead of the segmenter
    {"image": "images/7.png", "caption": "a red circle and a blue square",
     "entities": ["circle", "square"], "masks": ["masks/7_circle.png", null]}

Each entity is found in the caption (first whole-word, case-insensitive match not already taken
by an earlier entity, so "a dog and a dog" gives two spans), masked over the image's central
square, which is what the official build segments, and cut into its two segment images
(experiments/data/segments.py: threshold 0.3, dilation, largest component, square crop, with its
background and on white, `segment_size` px). Entities that cannot be placed are skipped and
counted; a row keeps the entities that remain, and is dropped only when none does. Output:
out_dir/compositional.jsonl (target images referenced where they are; training crops them to
the same central square) and out_dir/segments/.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from experiments.config import MAX_IMAGE_PIXELS
from experiments.data.manifest import (
    ManifestError,
    RowError,
    checked_image,
    load_manifest,
    required,
    required_text,
)
from experiments.data.segments import central_square, entity_images
from experiments.data.untrusted_images import open_untrusted_image

log = logging.getLogger(__name__)

MANIFEST_NAME = "compositional.jsonl"
ENTITY_SKIP_REASONS = (
    "entity_not_in_caption",  # no free whole-word match of the word in the caption
    "no_mask",  # no mask given and no segmenter to make one
    "bad_mask",  # a given mask that is not the image's size
    "empty_mask",  # nothing of the mask over the threshold
)
# (code) scripts/convert_openimage.py: --threshold 0.3, segments resized to 512 x 512.
DEFAULT_THRESHOLD = 0.3
DEFAULT_SEGMENT_SIZE = 512
_SEGMENTS_PER_FOLDER = 1000  # rows per segments/ subfolder, so no folder grows to millions of files


class Segmenter(Protocol):
    """Text-prompted segmentation: CLIPSeg in the paper (experiments/data/clipseg.py)."""

    def __call__(self, image: Image.Image, words: list[str]) -> Sequence[np.ndarray | torch.Tensor]:
        """One mask per word, values in [0, 1], each image.height x image.width (a square here)."""
        ...


@dataclass(frozen=True)
class BuildInputRow:
    image: Path
    caption: str
    entities: tuple[str, ...]
    masks: tuple[Path | None, ...]  # parallel to entities


@dataclass(frozen=True)
class BuildStats:
    manifest: Path  # the compositional manifest written
    rows_read: int  # usable input rows
    rows_written: int
    segments_written: int
    skipped_input_rows: dict[str, int]  # input rows skipped on load, by reason
    skipped_entities: dict[str, int]  # by ENTITY_SKIP_REASONS
    rows_without_entities: int  # rows dropped because every entity was skipped

    def summary(self) -> str:
        skipped_rows = _counts(self.skipped_input_rows)
        skipped_entities = _counts(self.skipped_entities)
        return (
            f"wrote {self.rows_written} row(s) with {self.segments_written} segment(s) to {self.manifest} "
            f"from {self.rows_read} usable input row(s); input rows skipped: {skipped_rows}; entities "
            f"skipped: {skipped_entities}; rows left without any entity: {self.rows_without_entities}"
        )


def _counts(by_reason: dict[str, int]) -> str:
    return ", ".join(f"{reason}={n}" for reason, n in by_reason.items() if n) or "none"


def build_compositional(
    captioned_manifest: str | Path, out_dir: str | Path, segmenter: Segmenter | None,
    threshold: float = DEFAULT_THRESHOLD, segment_size: int = DEFAULT_SEGMENT_SIZE,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> BuildStats:
    """Writes out_dir/compositional.jsonl and its segments from `captioned_manifest` (format in the
    module docstring); masks come from the rows where given, else from `segmenter`. An image or
    mask that cannot be used (experiments/data/untrusted_images.py; over `max_pixels`, say)
    skips its input row, counted by reason."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"the mask threshold is in [0, 1), got {threshold}")
    if segment_size < 1:
        raise ValueError(f"the segment size is at least 1 px, got {segment_size}")
    out_dir = Path(out_dir)
    loaded = load_manifest(captioned_manifest, functools.partial(_input_row, max_pixels=max_pixels),
                           "entity-annotated captioned")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST_NAME
    partial = manifest.with_suffix(".jsonl.partial")
    skipped = Counter({reason: 0 for reason in ENTITY_SKIP_REASONS})
    rows_written = segments_written = 0
    # Written under another name and renamed at the end, so a build that dies half-way never
    # leaves a manifest that looks finished.
    with partial.open("w", encoding="utf-8") as lines:
        for index, row in enumerate(loaded.rows):
            entities = _segment_row(row, index, out_dir, segmenter, threshold, segment_size, max_pixels,
                                    skipped)
            if not entities:
                continue
            image = Path(os.path.relpath(row.image, out_dir)).as_posix()
            record = {"caption": row.caption, "image": image, "entities": entities}
            lines.write(json.dumps(record) + "\n")
            rows_written += 1
            segments_written += len(entities)
    stats = BuildStats(
        manifest, len(loaded.rows), rows_written, segments_written, loaded.skipped, dict(skipped),
        len(loaded.rows) - rows_written,
    )
    if not rows_written:
        partial.unlink()
        raise ManifestError(
            f"no compositional row could be built from {captioned_manifest}: {stats.summary()}"
        )
    partial.replace(manifest)
    if loaded.total_skipped or any(skipped.values()):
        log.warning("%s", stats.summary())
    return stats


def find_span(caption: str, word: str, taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    """[start, end) of the first whole-word, case-insensitive match of `word` in `caption` that
    overlaps no span in `taken`, or None."""
    pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
    for match in pattern.finditer(caption):
        if all(match.end() <= start or end <= match.start() for start, end in taken):
            return match.span()
    return None


def _segment_row(
    row: BuildInputRow, index: int, out_dir: Path, segmenter: Segmenter | None, threshold: float,
    segment_size: int, max_pixels: int, skipped: Counter[str],
) -> list[dict[str, Any]]:
    """The entity records of one row, in caption order, with their two segment images written."""
    spans: dict[int, tuple[int, int]] = {}
    for k, word in enumerate(row.entities):
        span = find_span(row.caption, word, list(spans.values()))
        if span is None:
            skipped["entity_not_in_caption"] += 1
        else:
            spans[k] = span
    image = open_untrusted_image(row.image, max_pixels)  # checked on load: it decodes
    top, left, side = central_square(image)
    square = (left, top, left + side, top + side)
    square_image = image.crop(square)
    masks = _masks(row, image, square, sorted(spans), segmenter, max_pixels)
    entities = []
    folder = Path("segments", f"{index // _SEGMENTS_PER_FOLDER:05d}")
    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for k, (start, end) in sorted(spans.items(), key=lambda item: item[1]):
        mask = masks.get(k)
        if mask is None:
            skipped["no_mask" if row.masks[k] is None else "bad_mask"] += 1
            continue
        images = entity_images(square_image, mask, threshold, segment_size)
        if images is None:
            skipped["empty_mask"] += 1
            continue
        name = f"{index:08d}_{k}"
        files = {"segment": folder / f"{name}.png", "segment_white": folder / f"{name}_white.png"}
        images.with_background.save(out_dir / files["segment"])
        images.on_white.save(out_dir / files["segment_white"])
        entities.append({"word": row.caption[start:end], "start": start, "end": end,
                         **{name: file.as_posix() for name, file in files.items()}})
    return entities


def _masks(
    row: BuildInputRow, image: Image.Image, square: tuple[int, int, int, int], entities: list[int],
    segmenter: Segmenter | None, max_pixels: int,
) -> dict[int, np.ndarray]:
    """Entity index -> mask in [0, 1] over the image's central `square` (a PIL box), for those of
    `entities` that have one: the given mask (at the image's size) if the row has one, else the
    segmenter's, which sees the square alone as the official build's CLIPSeg does."""
    masks = {}
    for k in entities:
        mask_file = row.masks[k]
        if mask_file is not None:
            given = open_untrusted_image(mask_file, max_pixels, mode="L")
            if given.size == image.size:
                masks[k] = np.asarray(given.crop(square), dtype=np.float32) / 255.0
    to_segment = [k for k in entities if row.masks[k] is None]
    if segmenter is not None and to_segment:
        image = image.crop(square)
        made = segmenter(image, [row.entities[k] for k in to_segment])
        if len(made) != len(to_segment):
            raise ValueError(f"the segmenter gave {len(made)} masks for {len(to_segment)} words")
        for k, mask in zip(to_segment, made):
            mask = mask.detach().float().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            if mask.shape != (image.height, image.width):
                raise ValueError(
                    f"the segmenter gave a {mask.shape} mask for a {image.width}x{image.height} image"
                )
            masks[k] = mask
    return masks


def _input_row(record: dict[str, Any], folder: Path, max_pixels: int) -> BuildInputRow:
    caption = required_text(record, "caption")
    entities = required(record, "entities", list)
    if not entities or not all(isinstance(word, str) and word.strip() for word in entities):
        raise RowError("bad_field", f"'entities' must be a non-empty list of words: {entities!r}")
    masks = record.get("masks") or [None] * len(entities)
    if not isinstance(masks, list) or len(masks) != len(entities):
        raise RowError("bad_field", f"'masks' must be a list parallel to 'entities': {masks!r}")
    if not all(mask is None or isinstance(mask, str) for mask in masks):
        raise RowError("bad_field", f"'masks' holds paths or nulls: {masks!r}")
    image = checked_image(folder, required_text(record, "image"), max_pixels)
    checked_masks = tuple(None if mask is None else checked_image(folder, mask, max_pixels) for mask in masks)
    return BuildInputRow(image, caption, tuple(word.strip() for word in entities), checked_masks)
