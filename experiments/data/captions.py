"""COCO captions JSON and JSONL caption manifests read whole (the FID protocol's captions and
other small sets), and the FID caption sample.

A `.json` file is a COCO captions file ({"images": [...], "annotations": [...]}); a `.jsonl`
file is a manifest with one {"caption": ..., "image": optional relative path} per line. Image
paths stay relative: the caller resolves them against its configured image root.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.data.shards import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caption:
    image_id: int
    caption: str
    image_file: str | None  # relative to the image root; None for caption-only data


def load_captions(path: str | Path) -> list[Caption]:
    """All caption annotations of `path`, in file order (the order `sample_captions` draws from)."""
    path = Path(path)
    if path.suffix == ".json":
        return _load_coco(path)
    if path.suffix == ".jsonl":
        return _load_manifest(path)
    raise ValueError(f"{path}: unknown caption format; expected a COCO captions .json or a .jsonl manifest")


def sample_captions(captions: list[Caption], n: int, seed: int) -> list[Caption]:
    """`n` captions drawn like the official code: random.sample over all annotations."""
    if n > len(captions):
        log.warning("asked for %d captions but only %d exist; using all of them", n, len(captions))
        n = len(captions)
    return random.Random(seed).sample(captions, n)


def _load_coco(path: Path) -> list[Caption]:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("annotations"), list
    ):
        raise ValueError(f"{path}: not a COCO captions file (needs 'images' and 'annotations' lists)")
    files: dict[int, str] = {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) or not _is_text(
            image.get("file_name")
        ):
            raise ValueError(f"{path}: images[{i}] needs an integer 'id' and a 'file_name': {image!r}")
        files[image["id"]] = image["file_name"]
    captions = []
    for i, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict) or not _is_text(annotation.get("caption")):
            raise ValueError(f"{path}: annotations[{i}] has no non-empty 'caption': {annotation!r}")
        image_id = annotation.get("image_id")
        if image_id not in files:
            raise ValueError(f"{path}: annotations[{i}] names unknown image_id {image_id!r}: {annotation!r}")
        captions.append(Caption(image_id, _clean(annotation["caption"]), files[image_id]))
    return captions


def _load_manifest(path: Path) -> list[Caption]:
    captions = []
    # Captions of the same image share an id, as in COCO; caption-only lines get their own.
    ids: dict[str, int] = {}
    next_id = 0
    with path.open("rb") as lines:
        for lineno, raw in enumerate(lines, start=1):
            line = _utf8(raw, path, f"line {lineno}")
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg}): {line.strip()!r}") from None
            if not isinstance(entry, dict) or not _is_text(entry.get("caption")):
                raise ValueError(f"{path}:{lineno}: needs a non-empty 'caption': {line.strip()!r}")
            image = entry.get("image")
            if image is not None and not _is_text(image):
                raise ValueError(f"{path}:{lineno}: 'image' must be a relative path string: {line.strip()!r}")
            if image is not None and image in ids:
                image_id = ids[image]
            else:
                image_id = next_id
                next_id += 1
                if image is not None:
                    ids[image] = image_id
            captions.append(Caption(image_id, _clean(entry["caption"]), image))
    return captions


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_utf8(path.read_bytes(), path, "the file"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def _utf8(raw: bytes, path: Path, where: str) -> str:
    """JSON is UTF-8 by definition (RFC 8259); a file in another encoding is named, with where."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({where}, byte {err.start}: {err.reason}); "
                        "save it as UTF-8") from None


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _clean(caption: str) -> str:
    # COCO captions carry stray trailing spaces and newlines that would reach the tokenizer.
    return caption.strip()
