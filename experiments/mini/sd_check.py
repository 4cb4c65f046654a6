"""How well a mini Stable Diffusion draws what a caption says: it samples each caption through the
harness's own ImageDecoder (classifier-free guidance against the empty caption, as the "SD v1.5"
row samples) and the attribute classifier reads the images back. Used by `repro mini sd` after
training and by the CI test that fails when learning breaks."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from experiments.evaluation.attribute_accuracy import attribute_accuracy
from experiments.mini.attribute_classifier import load_classifier
from experiments.mini.labelled_images import labelled_images
from experiments.mini.scenes import IMAGE_SIZE
from models.image_decoder import ImageDecoder
from models.text_target import ClipTextTarget

BATCH = 64
SHIPPED_CLASSIFIER = Path(__file__).parent / "weights" / "classifier"


def sampled_images(
    sd: Path, captions: list[str], *, guidance: float, steps: int, seed: int
) -> list[Image.Image]:
    """One image per caption, each batch's noise drawn from its own seeded generator."""
    target = ClipTextTarget.from_pretrained(str(sd))
    with torch.no_grad():
        conditions, null = target(captions), target([""])
    decoder = ImageDecoder.from_pretrained(str(sd))
    return conditioned_images(decoder, conditions, null, guidance=guidance, steps=steps, seed=seed)


def conditioned_images(
    decoder: ImageDecoder,
    conditions: torch.Tensor,
    null: torch.Tensor,
    *,
    guidance: float,
    steps: int,
    seed: int,
) -> list[Image.Image]:
    """One image per condition (B, 77, T), guided against `null`, whoever made the conditions."""
    images: list[Image.Image] = []
    with torch.no_grad():
        for start in range(0, len(conditions), BATCH):
            images += decoder.sample(
                conditions[start : start + BATCH], null, guidance=guidance, steps=steps,
                height=IMAGE_SIZE, width=IMAGE_SIZE, generator=torch.Generator().manual_seed(seed + start),
            )  # fmt: skip
    return images


def sampled_accuracy(
    sd: Path,
    classifier: Path,
    captions: list[str],
    *,
    guidance: float = 3.0,
    steps: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """Attribute accuracy (experiments/evaluation/attribute_accuracy.py) of the SD's samples of
    `captions`; `classifier` is the attribute classifier's weights file or folder."""
    images = sampled_images(sd, captions, guidance=guidance, steps=steps, seed=seed)
    return attribute_accuracy(load_classifier(classifier), images, captions)


def heldout_sd_accuracy(sd: Path, coco: Path, seed: int, per_count: int = 64) -> dict[str, float]:
    """Overall attribute accuracy of the SD's samples of the first `per_count` one-object and
    two-object held-out captions of a world's coco/ folder, read by the shipped classifier."""
    heldout = labelled_images(coco / "captions_val.json", coco / "val")
    scores = {}
    for name, count in (("one_object", 1), ("two_objects", 2)):
        captions = [item.captions[0] for item in heldout if len(item.scene.objects) == count][:per_count]
        accuracy = sampled_accuracy(sd, SHIPPED_CLASSIFIER, captions, seed=seed)
        scores[name] = accuracy["overall"]
    return scores
