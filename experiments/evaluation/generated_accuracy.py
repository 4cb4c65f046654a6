"""Attribute accuracy of a run's FID samples: the images generate_images wrote, scored by the
mini world's attribute classifier against the captions they were made for (the list in sampling
order, as captions.txt pins it). Logged beside eval/fid by every run whose fid.attribute_classifier
is set.

    eval/attribute_accuracy                  overall (every attribute of the image right)
    eval/attribute_accuracy/<attribute>      count, background, shape, colour, size, position
    eval/attribute_accuracy/one_object       overall, over the captions that name one object
    eval/attribute_accuracy/two_objects      overall, over the captions that name two

The samples are stored at fid.resolution, which the mini tier sets to the world's IMAGE_SIZE (32
px), what the classifier was trained on; at another resolution the classifier's own input step
(pixels_of) scales them to IMAGE_SIZE, so they still reach it at the size it knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from experiments.evaluation.attribute_accuracy import attribute_accuracy
from experiments.mini.attribute_classifier import load_classifier
from experiments.mini.captions import scene_of

METRIC = "eval/attribute_accuracy"
# Overall accuracy over the captions naming this many objects, under these metric suffixes.
BY_COUNT = {1: "one_object", 2: "two_objects"}


def generated_accuracy(
    images: Sequence[Path], captions: Sequence[str], classifier_weights: Path
) -> dict[str, float]:
    """The metrics above for the image files `images` against `captions`, one each."""
    classifier = load_classifier(classifier_weights)
    pictures = [_read(path) for path in images]
    scores = attribute_accuracy(classifier, pictures, captions)
    metrics = {_name(name): value for name, value in scores.items()}
    counts = [len(scene_of(text).objects) for text in captions]
    for count, suffix in BY_COUNT.items():
        if chosen := [i for i, n in enumerate(counts) if n == count]:
            subset = attribute_accuracy(classifier, [pictures[i] for i in chosen],
                                        [captions[i] for i in chosen])
            metrics[f"{METRIC}/{suffix}"] = subset["overall"]
    return metrics


def _name(attribute: str) -> str:
    return METRIC if attribute == "overall" else f"{METRIC}/{attribute}"


def _read(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
