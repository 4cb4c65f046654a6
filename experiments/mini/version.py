"""WORLD_VERSION: a hash of everything that decides what the mini world looks like and says.
Weights trained on the world carry it, and loading weights of another version is an error."""

from __future__ import annotations

import hashlib
import json

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
