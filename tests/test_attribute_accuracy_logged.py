"""A run's FID evaluation scores its samples' attributes when fid.attribute_classifier is set: the
mini world's real held-out images, handed back as if generated for their own captions, read as
right; the same images against shuffled captions read as wrong; without the field nothing is
scored. The classifier is the one shipped in the repository."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from experiments.config import FidConfig
from experiments.data.captions import load_captions
from experiments.evaluation.fid import evaluate_fid
from experiments.evaluation.generated_accuracy import METRIC, generated_accuracy
from experiments.mini.world import WorldSizes, build_world

SHIPPED = Path(__file__).parents[1] / "experiments/mini/weights/classifier/attribute_classifier.safetensors"
PER_ATTRIBUTE = ("count", "background", "shape", "colour", "size", "position", "one_object", "two_objects")


class RealImages:
    """Conditioner and decoder at once: each caption's condition is the index of the held-out image
    it describes, and sampling returns that image, so what is scored is the world's real images."""

    def __init__(self, captions_file: Path, images: Path) -> None:
        files = {c.caption: c.image_file for c in load_captions(captions_file)}
        self.index = {text: i for i, text in enumerate(files)}
        self.images = [Image.open(images / str(name)).convert("RGB") for name in files.values()]

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([[self.index[prompt]] for prompt in prompts])

    def null(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 1, dtype=torch.long)

    def sample(self, condition: torch.Tensor, null_condition: torch.Tensor, **_: object) -> list[Image.Image]:
        return [self.images[int(i)] for i in condition[:, 0]]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sizes = WorldSizes(train_images=8, heldout_images=96, photos_per_subject=1, stage3_rows=1)
    return build_world(tmp_path_factory.mktemp("mini"), seed=0, sizes=sizes)


def _fid(world, classifier: Path | None) -> FidConfig:
    return FidConfig(
        captions=str(world.val_captions), images=str(world.val_images), num_captions=96, generate_size=32,
        resolution=32, batch_size=32,
        feature_extractor="mini-attribute-classifier" if classifier else "tiny-random-conv",
        attribute_classifier=str(classifier) if classifier else None,
    )


def _evaluate(world, classifier: Path | None, run_dir: Path) -> dict[str, float]:
    real = RealImages(world.val_captions, world.val_images)
    return evaluate_fid(real, real, _fid(world, classifier), seed=0, run_dir=run_dir,  # type: ignore[arg-type]
                        cache_dir=run_dir / "cache", progress=False)


def test_real_images_score_high_against_their_captions_and_low_against_shuffled_ones(world, tmp_path):
    metrics = _evaluate(world, SHIPPED, tmp_path / "run")
    assert {f"{METRIC}/{name}" for name in PER_ATTRIBUTE} | {METRIC, "eval/fid"} <= set(metrics)
    assert metrics[METRIC] >= 0.9 and metrics[f"{METRIC}/one_object"] >= 0.9
    assert all(metrics[f"{METRIC}/{name}"] >= 0.9 for name in PER_ATTRIBUTE)

    generated = tmp_path / "run" / "fid" / "generated"
    captions = (generated / "captions.txt").read_text().splitlines()
    images = sorted(generated.glob("*.png"))
    assert len(images) == len(captions) == 96
    shuffled = generated_accuracy(images, random.Random(0).sample(captions, len(captions)), SHIPPED)
    assert shuffled[METRIC] <= 0.1 and shuffled[f"{METRIC}/colour"] < 0.5
    # Samples stored at a larger fid.resolution reach the classifier at the 32 px it was trained on.
    larger = []
    for path in images:
        larger.append(tmp_path / f"large-{path.name}")
        Image.open(path).resize((64, 64), Image.Resampling.BILINEAR).save(larger[-1])
    assert generated_accuracy(larger, captions, SHIPPED)[METRIC] >= 0.9


def test_a_run_without_the_classifier_logs_no_accuracy(world, tmp_path):
    metrics = _evaluate(world, None, tmp_path / "run")
    assert "eval/fid" in metrics
    assert not [name for name in metrics if name.startswith(METRIC)]

