"""A small CNN that reads a mini-world image's attributes: the object count, the background and,
per object slot (canonical order: left before right, top before bottom), shape, colour, size and
position. Its penultimate layer is FID's feature extractor on the mini world
(experiments/mini/feature_extractor.py), and attribute accuracy reads its heads
(experiments/evaluation/attribute_accuracy.py).

Saved as WEIGHTS_FILE (safetensors) with a JSON beside it naming the command, seed and
WORLD_VERSION it was trained under (experiments/mini/provenance.py); weights of another world version
are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from experiments.mini.provenance import read_record, write_record
from experiments.mini.scenes import (
    BACKGROUNDS,
    COUNTS,
    IMAGE_SIZE,
    MAX_OBJECTS,
    OBJECT_COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
)

MODEL = "attribute classifier"
RETRAIN = "repro mini classifier"
WEIGHTS_FILE = "attribute_classifier.safetensors"
OBJECT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(OBJECT_COLOURS),
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
}
# Every head, in the order of the logits: (name, its choices); slot heads are "slot{k}.{attribute}".
HEADS: tuple[tuple[str, tuple], ...] = (
    ("count", COUNTS),
    ("background", tuple(BACKGROUNDS)),
    *(
        (f"slot{k}.{name}", choices)
        for k in range(MAX_OBJECTS)
        for name, choices in OBJECT_ATTRIBUTES.items()
    ),
)
ABSENT = -100  # the target of a slot with no object: cross_entropy's ignore_index


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 16  # channels of the first block; each later block doubles them
    features: int = 128  # the penultimate layer: FID's feature dimension


@dataclass(frozen=True)
class TrainingRecord:
    """What made the weights, kept beside them."""

    command: str
    seed: int
    steps: int
    batch_size: int
    learning_rate: float
    world_version: str
    config: ClassifierConfig


class AttributeClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        blocks = []
        for c_in, c_out in ((3, w), (w, 2 * w), (2 * w, 4 * w)):
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, stride=2, padding=1),
                nn.ReLU(),
            ]
        self.trunk = nn.Sequential(*blocks, nn.Flatten())
        # Flattened rather than pooled: position is an attribute, so where a feature fired matters.
        spatial = IMAGE_SIZE // 8
        self.features = nn.Sequential(nn.Linear(4 * w * spatial * spatial, config.features), nn.ReLU())
        self.heads = nn.Linear(config.features, sum(len(choices) for _, choices in HEADS))

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Penultimate features of uint8-range pixels [N, 3, H, W] (resized to IMAGE_SIZE)."""
        x = pixels.float()
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(
                x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False
            )
        return self.features(self.trunk((x - 127.5) / 127.5))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head name."""
        logits = self.heads(self.embed(pixels))
        return dict(zip((name for name, _ in HEADS), logits.split([len(c) for _, c in HEADS], dim=1)))


def targets(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Class indices per head; ABSENT for the slots a scene has no object in."""
    out: dict[str, list[int]] = {name: [] for name, _ in HEADS}
    for scene in scenes:
        out["count"].append(COUNTS.index(len(scene.objects)))
        out["background"].append(tuple(BACKGROUNDS).index(scene.background))
        for k in range(MAX_OBJECTS):
            for name, choices in OBJECT_ATTRIBUTES.items():
                value = getattr(scene.objects[k], name) if k < len(scene.objects) else None
                out[f"slot{k}.{name}"].append(ABSENT if value is None else choices.index(value))
    return {name: torch.tensor(values) for name, values in out.items()}


def loss(logits: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over heads of each head's cross-entropy (absent slots left out)."""
    return torch.stack(
        [F.cross_entropy(logits[name], target[name], ignore_index=ABSENT) for name, _ in HEADS]
    ).mean()


def pixels_of(images: list[Image.Image]) -> torch.Tensor:
    """uint8 [N, 3, IMAGE_SIZE, IMAGE_SIZE]; images of another size (a generator's) are scaled to it."""
    square = (IMAGE_SIZE, IMAGE_SIZE)
    arrays = [
        np.asarray(
            image.convert("RGB").resize(square, Image.Resampling.BILINEAR)
            if image.size != square
            else image.convert("RGB")
        )
        for image in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def save_classifier(model: AttributeClassifier, record: TrainingRecord, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS_FILE
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    write_record(weights.with_suffix(".json"), record)
    return weights


def load_classifier(weights: Path) -> AttributeClassifier:
    """The classifier in `weights` (a WEIGHTS_FILE, or the folder holding one), in eval mode."""
    weights = Path(weights)
    if weights.is_dir():
        weights = weights / WEIGHTS_FILE
    record = read_record(weights.with_suffix(".json"), MODEL, weights, RETRAIN)
    model = AttributeClassifier(ClassifierConfig(**record["config"]))
    model.load_state_dict(load_file(weights))
    model.requires_grad_(False)
    return model.eval()
