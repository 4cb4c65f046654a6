"""Attribute accuracy of a run's FID samples: the folder generate_images filled (its PNGs in
caption order, captions.txt pinning the captions) scored by the mini world's attribute classifier
against the captions the images were made for. Logged beside eval/fid by every run whose
fid.attribute_classifier is set.

    eval/attribute_accuracy                  overall (every attribute of the image right)
    eval/attribute_accuracy/<attribute>      count, background, shape, colour, size, position
    eval/attribute_accuracy/one_object       overall, over the captions that name one object
    eval/attribute_accuracy/two_objects      overall, over the captions that name two

The samples are stored at fid.resolution, which the mini tier sets to the world's IMAGE_SIZE (32
px), what the classifier was trained on; at another resolution the classifier's own input step
(pixels_of) scales them to IMAGE_SIZE, so they still reach it at the size it knows.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from experiments.evaluation.attribute_accuracy import attribute_accuracy
from experiments.mini.attribute_classifier import AttributeClassifier, load_classifier
from experiments.mini.captions import scene_of

METRIC = "eval/attribute_accuracy"
# Overall accuracy over the captions naming this many objects, under these metric suffixes.
BY_COUNT = {1: "one_object", 2: "two_objects"}


def generated_accuracy(folder: Path, classifier_weights: Path) -> dict[str, float]:
    """The metrics above for the images of `folder` (000000.png, ... one per line of captions.txt)."""
    folder = Path(folder)
    captions = (folder / "captions.txt").read_text(encoding="utf-8").splitlines()
    paths = [folder / f"{index:06d}.png" for index in range(len(captions))]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: {len(missing)} of the {len(captions)} images captions.txt names are missing, "
            f"e.g. {missing[0]}; attribute accuracy scores the whole set"
        )
    return accuracy_metrics(load_classifier(classifier_weights), [_read(path) for path in paths], captions)


def accuracy_metrics(
    classifier: AttributeClassifier, images: list[Image.Image], captions: list[str]
) -> dict[str, float]:
    """The metrics above for `images` against `captions` (one each)."""
    scores = attribute_accuracy(classifier, images, captions)
    metrics = {_name(attribute): value for attribute, value in scores.items()}
    counts = [len(scene_of(text).objects) for text in captions]
    for count, suffix in BY_COUNT.items():
        chosen = [index for index, n in enumerate(counts) if n == count]
        if chosen:
            subset = attribute_accuracy(
                classifier, [images[i] for i in chosen], [captions[i] for i in chosen]
            )
            metrics[f"{METRIC}/{suffix}"] = subset["overall"]
    return metrics


def _name(attribute: str) -> str:
    return METRIC if attribute == "overall" else f"{METRIC}/{attribute}"


def _read(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
