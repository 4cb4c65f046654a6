"""Attribute accuracy on the mini world, as GenEval scores compositional generation: the attribute
classifier reads each image, and its reading is compared with the scene the image's caption (or
label) names.

    count, background   share of images whose count / background is right
    shape, colour, size, position
                        share of the named objects whose attribute is right in its slot (objects
                        in canonical order: left before right, top before bottom)
    overall             share of images with every attribute of every object, the count and the
                        background right
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from experiments.mini.attribute_classifier import (
    ABSENT,
    OBJECT_ATTRIBUTES,
    AttributeClassifier,
    pixels_of,
    targets,
)
from experiments.mini.captions import scene_of
from experiments.mini.scenes import MAX_OBJECTS, Scene

ATTRIBUTES = ("count", "background", *OBJECT_ATTRIBUTES, "overall")
BATCH = 256


def attribute_accuracy(
    classifier: AttributeClassifier,
    images: Sequence[Image.Image],
    captions_or_scenes: Sequence[str | Scene],
) -> dict[str, float]:
    """Accuracy per name of ATTRIBUTES, over `images` against what `captions_or_scenes` says."""
    if len(images) != len(captions_or_scenes) or not images:
        raise ValueError(
            f"attribute accuracy needs one caption per image and at least one image; got "
            f"{len(images)} images and {len(captions_or_scenes)} captions"
        )
    scenes = [item if isinstance(item, Scene) else scene_of(item) for item in captions_or_scenes]
    wanted = targets(scenes)
    with torch.no_grad():
        chunks = [
            classifier(pixels_of(list(images[start : start + BATCH])))
            for start in range(0, len(images), BATCH)
        ]
    predicted = {name: torch.cat([chunk[name] for chunk in chunks]).argmax(dim=1) for name in wanted}
    right = {name: predicted[name] == wanted[name] for name in wanted}
    scores = {
        "count": right["count"].float().mean().item(),
        "background": right["background"].float().mean().item(),
    }
    every = right["count"] & right["background"]
    for attribute in OBJECT_ATTRIBUTES:
        named = torch.stack([wanted[f"slot{k}.{attribute}"] != ABSENT for k in range(MAX_OBJECTS)])
        correct = torch.stack([right[f"slot{k}.{attribute}"] for k in range(MAX_OBJECTS)])
        scores[attribute] = (correct & named).sum().item() / named.sum().item()
        every &= (correct | ~named).all(dim=0)
    scores["overall"] = every.float().mean().item()
    return {name: scores[name] for name in ATTRIBUTES}
