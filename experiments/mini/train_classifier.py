"""Trains the attribute classifier on a mini world's training split. Seeded: the same seed on the
same machine gives the same weights. The loss goes to stdout as JSON lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.mini.attribute_classifier import (
    AttributeClassifier,
    ClassifierConfig,
    TrainingRecord,
    loss,
    pixels_of,
    save_classifier,
    targets,
)
from experiments.mini.labelled_images import labelled_images
from experiments.mini.scenes import IMAGE_SIZE
from experiments.mini.training_loop import LossLog, MiniTraining, optimise, print_line
from experiments.mini.version import WORLD_VERSION


@dataclass(frozen=True)
class ClassifierTraining(MiniTraining):
    steps: int = 3000  # held-out attribute accuracy 1.0 on every attribute (bench.mini_world)
    learning_rate: float = 2e-3
    config: ClassifierConfig = ClassifierConfig()


def train_classifier(
    captions_file: Path,
    images: Path,
    out: Path,
    training: ClassifierTraining,
    command: str,
    log: LossLog = print_line,
) -> tuple[Path, list[float]]:
    """Writes out/attribute_classifier.{safetensors,json}; returns the weights file and every step's loss."""
    labelled = labelled_images(captions_file, images)
    originals = [item.rgb() for item in labelled]
    odd = next(
        (item.path for item, image in zip(labelled, originals) if image.size != (IMAGE_SIZE, IMAGE_SIZE)),
        None,
    )
    if odd is not None:
        raise ValueError(
            f"{odd}: not {IMAGE_SIZE} px square; the classifier trains on the world's own images"
        )
    pixels = pixels_of(originals)
    target = targets([item.scene for item in labelled])
    with torch.random.fork_rng(devices=[]):  # seeded init without moving the caller's global RNG
        torch.manual_seed(training.seed)
        model = AttributeClassifier(training.config)
    batches = torch.Generator().manual_seed(training.seed)

    def step_loss() -> torch.Tensor:
        index = torch.randint(len(labelled), (training.batch_size,), generator=batches)
        return loss(model(pixels[index]), {name: t[index] for name, t in target.items()})

    model.train()
    losses = optimise(
        model.parameters(), step_loss, training.steps, training.learning_rate, training.log_every, log
    )
    record = TrainingRecord(
        command,
        training.seed,
        training.steps,
        training.batch_size,
        training.learning_rate,
        WORLD_VERSION,
        training.config,
    )
    return save_classifier(model.eval(), record, out), losses
