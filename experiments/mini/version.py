"""WORLD_VERSION: a hash of everything that decides what the mini world looks like and says.
Weights trained on the world carry it, and loading weights of another version is an error.
assets_version: that and the shipped weights, what a mini run's numbers rest on beyond its config."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from experiments.mini import captions, scenes, subjects


def _parameters() -> dict:
    return {
        "shapes": scenes.SHAPES,
        "object_colours": scenes.OBJECT_COLOURS,
        "backgrounds": scenes.BACKGROUNDS,
        "sizes": scenes.SIZES,
        "positions": scenes.POSITIONS,
        "counts": scenes.COUNTS,
        "jitter": scenes.JITTER,
        "drawing": scenes.DRAWING_REVISION,
        "image_size": scenes.IMAGE_SIZE,
        "patterns": subjects.PATTERNS,
        "templates": [captions.ONE_OBJECT_TEMPLATES, captions.TWO_OBJECT_TEMPLATES, captions.EDIT_TEMPLATES],
        "where": captions.WHERE,
        "relations": captions.RELATIONS,
    }


WORLD_VERSION = hashlib.sha256(json.dumps(_parameters(), sort_keys=True).encode()).hexdigest()[:12]

SHIPPED_WEIGHTS = Path(__file__).parent / "weights"


@functools.cache
def assets_version() -> str:
    """12 hex digits over WORLD_VERSION and every file under SHIPPED_WEIGHTS (names and bytes):
    retrained weights give mini runs new ids, so their old runs' numbers are not reused
    (repro.config.expand). Once per process: about 0.05 s for the 25 MB."""
    digest = hashlib.sha256(WORLD_VERSION.encode())
    for path in sorted(path for path in SHIPPED_WEIGHTS.rglob("*") if path.is_file()):
        digest.update(str(path.relative_to(SHIPPED_WEIGHTS)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]
