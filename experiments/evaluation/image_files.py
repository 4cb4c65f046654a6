"""Generated images as files: written aside and renamed, and checked before they are trusted.

The rename makes a kill mid-write harmless; the check catches what it cannot (a file truncated
or overwritten after the fact, a disk that lost blocks), so a damaged image is made again rather
than crashing FID or DreamBench scoring on every attempt."""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)


def save_png(image: Image.Image, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        image.save(partial, format="PNG")
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk or a kill leaves no half-written file behind
        raise
    partial.replace(path)


def intact(path: Path) -> bool:
    """Whether `path` is a whole image: absent files are not, and a damaged one says so in the
    log (it is replaced when its batch is made again). verify() reads every chunk and checks its
    CRC without decoding the pixels."""
    if not path.exists():
        return False
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as damaged:  # PIL raises OSError, SyntaxError or its own for broken files
        log.warning("generated image %s is damaged (%s); making it again", path, damaged)
        return False
    return True
