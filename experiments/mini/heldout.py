"""Attribute accuracy of a saved classifier on a mini world's real held-out images against their
own labels: how well the scorer itself reads the world (its ceiling for generated images)."""

from __future__ import annotations

from pathlib import Path

from experiments.evaluation.attribute_accuracy import attribute_accuracy
from experiments.mini.attribute_classifier import load_classifier
from experiments.mini.labelled_images import labelled_images


def heldout_accuracy(weights: Path, captions_file: Path, images: Path) -> dict[str, float]:
    labelled = labelled_images(captions_file, images)
    return attribute_accuracy(
        load_classifier(weights), [item.rgb() for item in labelled], [item.scene for item in labelled]
    )
