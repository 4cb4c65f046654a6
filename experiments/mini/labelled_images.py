"""The mini world's images with their scenes and captions, read back from its COCO captions files
(whose "images" entries carry the labels), for the mini models' training and attribute accuracy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from experiments.mini.scenes import Scene
from experiments.mini.version import WORLD_VERSION


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    scene: Scene
    captions: tuple[str, ...]

    def rgb(self) -> Image.Image:
        """The image, read whole so the file is closed at once."""
        with Image.open(self.path) as image:
            return image.convert("RGB")


def labelled_images(captions_file: Path, images: Path) -> list[LabelledImage]:
    """Every image of a mini-world COCO captions file; an error if the file was drawn under
    another world version (its labels would not mean what this code's do)."""
    data = json.loads(Path(captions_file).read_text())
    version = data.get("info", {}).get("world_version")
    if version != WORLD_VERSION:
        raise ValueError(
            f"{captions_file} was written by mini world version {version!r}, this code draws "
            f"version {WORLD_VERSION!r}: rebuild it with `repro mini world`"
        )
    captions: dict[int, list[str]] = {}
    for annotation in data["annotations"]:
        captions.setdefault(annotation["image_id"], []).append(annotation["caption"])
    out = []
    for entry in data["images"]:
        if "labels" not in entry:
            raise ValueError(f"{captions_file}: image {entry.get('file_name')!r} has no 'labels'")
        scene = Scene.from_labels(entry["labels"])
        texts = tuple(captions.get(entry["id"], ()))
        out.append(LabelledImage(Path(images) / entry["file_name"], scene, texts))
    return out
