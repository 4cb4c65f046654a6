"""The DINO and CLIP scorers on the tiny random encoders: loadable from disk, not collapsed, and
computing the cosines the official evaluation computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPModel, ViTConfig, ViTModel

from experiments.evaluation.similarity import ClipEncoder, DinoEncoder
from experiments.tiny.dreambench_subjects import build_dreambench_fixture
from experiments.tiny.models import save_tiny_clip, save_tiny_dino

CPU = torch.device("cpu")
SUBJECTS = ("backpack", "dog", "teapot")


@pytest.fixture(scope="module")
def scorers(tmp_path_factory) -> tuple[DinoEncoder, ClipEncoder]:
    root = tmp_path_factory.mktemp("scorers")
    save_tiny_dino(root / "dino")
    save_tiny_clip(root / "clip")
    dino = DinoEncoder.from_pretrained(str(root / "dino"), CPU)
    return dino, ClipEncoder.from_pretrained(str(root / "clip"), CPU)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, list[Image.Image]]:
    root = build_dreambench_fixture(tmp_path_factory.mktemp("dreambench"), subjects=SUBJECTS).root
    return {s: [Image.open(p).convert("RGB") for p in sorted((root / s).glob("*.jpg"))] for s in SUBJECTS}


def test_builders_are_seeded(tmp_path: Path) -> None:
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        save_tiny_dino(tmp_path / name / "dino", seed=seed)
        save_tiny_clip(tmp_path / name / "clip", seed=seed)
    for part in ("dino", "clip"):
        a, b, c = (load_file(tmp_path / name / part / "model.safetensors") for name in "abc")
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("scorer", ["dino", "clip"])
def test_image_cosines_are_one_for_an_image_and_lower_across_subjects(scorers, photos, scorer):
    encoder = scorers[0] if scorer == "dino" else scorers[1]
    images = [image for subject in SUBJECTS for image in photos[subject]]
    features = encoder.image_features(images)
    cosines = features @ features.T
    assert torch.allclose(cosines.diagonal(), torch.ones(len(images)), atol=1e-5)
    same = torch.block_diag(*[torch.ones(3, 3, dtype=torch.bool)] * len(SUBJECTS))
    within = cosines[same & ~torch.eye(len(images), dtype=torch.bool)]
    across = cosines[~same]
    # Random weights must not collapse every image onto one feature.
    assert across.max() < 0.995
    assert within.mean() > across.mean() + 0.2


def test_dino_sizes_follow_the_model_so_the_real_one_gets_resize_256_crop_224():
    model = ViTModel(ViTConfig(image_size=224, patch_size=16, hidden_size=8, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=8), add_pooling_layer=False)
    resize, crop = DinoEncoder(model).preprocess.transforms[:2]
    assert resize.size == 256 and crop.size == (224, 224)
    assert resize.interpolation.value == "bicubic"


def test_clip_t_is_the_cosine_clip_itself_computes(scorers, photos):
    clip = scorers[1]
    images = [photos["dog"][0], photos["backpack"][1]]
    texts = ["a dog in the jungle", "a red backpack"]
    cosines = (clip.image_features(images) * clip.text_features(texts)).sum(1)
    # By hand, through CLIPModel's forward: logits_per_image is exp(logit_scale) x the cosine.
    inputs = clip.processor(text=texts, images=images, return_tensors="pt", padding=True)
    model: CLIPModel = clip.model
    with torch.no_grad():
        logits = model(**inputs).logits_per_image / model.logit_scale.exp()
    assert torch.allclose(cosines, logits.diagonal(), atol=1e-5)
    assert ((cosines >= -1) & (cosines <= 1)).all()


def test_features_do_not_depend_on_the_batch_split(scorers, photos, monkeypatch):
    dino, clip = scorers
    images = photos["dog"] + photos["teapot"]
    texts = ["a dog", "a red dog"] * 3
    whole = dino.image_features(images), clip.image_features(images), clip.text_features(texts)
    monkeypatch.setattr("experiments.evaluation.similarity.BATCH_SIZE", 2)
    split = dino.image_features(images), clip.image_features(images), clip.text_features(texts)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(whole, split))
