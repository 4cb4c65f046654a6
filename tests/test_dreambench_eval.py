"""DreamBench end to end on the tiny tier: the tiny Kosmos-G (Kosmos-2 + aligner) drives the tiny
SD decoder over a synthetic DreamBench, scored by the tiny DINO and CLIP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.config import AlignerConfig, DreamBenchConfig
from experiments.data.dreambench_layout import (
    benchmark_prompts,
    load_subjects,
    read_prompts_file,
)
from experiments.evaluation.dreambench_generate import generate_dreambench_images
from experiments.evaluation.dreambench_scores import (
    dreambench_oracle,
    dreambench_sheets,
    evaluate_dreambench,
)
from experiments.evaluation.similarity import ClipEncoder, DinoEncoder
from experiments.recipes.modules import aligner_for
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner, MLLMEncoder
from tests.support.tiny import tiny_dreambench

CPU = torch.device("cpu")
# CLIP-T's texts: the original templates with the class, for the templates the tests run.
CAPTIONS = {
    ("backpack", 0): "a backpack in the jungle",
    ("backpack", 10): "a backpack with a wheat field in the background",
    ("backpack", 20): "a red backpack",
    ("dog", 0): "a dog in the jungle",
    ("dog", 10): "a dog wearing a red hat",
    ("dog", 20): "a red dog",
}
METRICS = {"eval/dino", "eval/clip_i", "eval/clip_t", "eval/dreambench_images", "eval/dreambench_seconds"}


@pytest.fixture(scope="module")
def cfg(tiny_assets) -> DreamBenchConfig:
    return tiny_dreambench(tiny_assets, subjects=("backpack", "dog"), templates=(0, 10, 20), steps=2,
                           generate_size=32, batch_size=2)


@pytest.fixture(scope="module")
def kosmos_g(tiny_assets) -> tuple[KosmosGConditioner, ImageDecoder]:
    mllm = MLLMEncoder.from_pretrained(str(tiny_assets / "kosmos2"))
    target = ClipTextTarget.from_pretrained(str(tiny_assets / "sd"))
    torch.manual_seed(0)
    aligner = aligner_for(AlignerConfig(layers=1, width=32, ffn=64, heads=2, max_source_len=256), mllm,
                          target)
    return KosmosGConditioner(mllm, aligner).eval(), ImageDecoder.from_pretrained(str(tiny_assets / "sd"))


@pytest.fixture(scope="module")
def evaluated(cfg, kosmos_g, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, evaluate_dreambench(*kosmos_g, cfg, seed=0, run_dir=run_dir, progress=False)


def generated(run_dir: Path) -> dict[str, int]:
    """Generated files (relative path -> mtime in ns)."""
    folder = run_dir / "dreambench" / "generated"
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*.png"))}


def subject_photos(cfg: DreamBenchConfig, subject: str) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((Path(cfg.root) / subject).glob("*.jpg"))]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_every_image_is_written_and_the_scores_are_cosines(evaluated):
    run_dir, metrics = evaluated
    assert set(metrics) == METRICS
    assert list(generated(run_dir)) == [
        f"{subject}/{template:02d}_{k}.png" for subject, template in CAPTIONS for k in (0, 1)
    ]
    assert metrics["eval/dreambench_images"] == 12
    assert all(0 <= metrics[key] <= 1 for key in ("eval/dino", "eval/clip_i", "eval/clip_t"))
    assert [p.name for p in dreambench_sheets(run_dir)] == ["backpack.png", "dog.png"]


def test_a_resumed_evaluation_makes_only_the_missing_images(evaluated, cfg, kosmos_g):
    run_dir, metrics = evaluated
    before = generated(run_dir)
    again = evaluate_dreambench(*kosmos_g, cfg, seed=0, run_dir=run_dir, progress=False)
    assert generated(run_dir) == before
    assert {k: again[k] for k in ("eval/dino", "eval/clip_i", "eval/clip_t")} == {
        k: metrics[k] for k in ("eval/dino", "eval/clip_i", "eval/clip_t")
    }

    lost = run_dir / "dreambench" / "generated" / "dog" / "10_1.png"
    original = pixels(lost)
    lost.unlink()
    evaluate_dreambench(*kosmos_g, cfg, seed=0, run_dir=run_dir, progress=False)
    after = generated(run_dir)
    assert [name for name in after if after[name] != before[name]] == ["dog/10_1.png"]
    # Alone in its batch now, the image gets the same noise; batched float sums may move a level.
    assert np.abs(pixels(lost) - original).max() <= 2


def test_the_scores_are_means_over_images_of_the_papers_cosines(evaluated, cfg, kosmos_g):
    run_dir, _ = evaluated
    against_input = evaluate_dreambench(*kosmos_g, cfg, seed=0, run_dir=run_dir, progress=False)
    against_all = evaluate_dreambench(
        *kosmos_g, dataclasses.replace(cfg, reference="subject"), seed=0, run_dir=run_dir, progress=False
    )
    dino = DinoEncoder.from_pretrained(cfg.dino, CPU)
    clip = ClipEncoder.from_pretrained(cfg.clip, CPU)
    cosines: dict[str, list[float]] = {"dino": [], "clip_i": [], "clip_t": [], "dino_all_photos": []}
    subjects = load_subjects(cfg, read_prompts_file(cfg.prompts))
    # (code) the official input photos, not the first
    input_names = {subject.name: subject.input_photo.name for subject in subjects}
    assert input_names == {"backpack": "02.jpg", "dog": "02.jpg"}
    inputs = {subject.name: Image.open(subject.input_photo) for subject in subjects}
    for (subject, template), caption in CAPTIONS.items():
        photos = subject_photos(cfg, subject)
        for k in (0, 1):
            image = Image.open(run_dir / "dreambench" / "generated" / subject / f"{template:02d}_{k}.png")
            dino_image, clip_image = dino.image_features([image]), clip.image_features([image])
            cosines["dino"].append(float(dino_image @ dino.image_features([inputs[subject]]).T))
            cosines["clip_i"].append(float(clip_image @ clip.image_features([inputs[subject]]).T))
            cosines["clip_t"].append(float(clip_image @ clip.text_features([caption]).T))
            cosines["dino_all_photos"].append(float((dino_image @ dino.image_features(photos).T).mean()))
    for key in ("dino", "clip_i", "clip_t"):
        assert against_input[f"eval/{key}"] == pytest.approx(max(np.mean(cosines[key]), 0.0), abs=1e-5)
    assert against_all["eval/dino"] == pytest.approx(max(np.mean(cosines["dino_all_photos"]), 0.0), abs=1e-5)


def test_images_do_not_depend_on_how_they_are_batched(evaluated, cfg, kosmos_g, tmp_path):
    run_dir, _ = evaluated
    one_by_one = dataclasses.replace(cfg, batch_size=1, images_per_prompt=1, templates=(20,))
    prompts_file = read_prompts_file(cfg.prompts)
    subjects = load_subjects(one_by_one, prompts_file)
    generate_dreambench_images(
        *kosmos_g, one_by_one, subjects, benchmark_prompts(prompts_file, subjects, [20]),
        seed=0, folder=tmp_path, progress=False,
    )
    for name in ("backpack/20_0.png", "dog/20_0.png"):
        in_run = run_dir / "dreambench" / "generated" / name
        assert np.abs(pixels(tmp_path / name) - pixels(in_run)).max() <= 2


def test_the_oracle_compares_photos_of_one_subject_and_beats_pairs_of_two(cfg):
    every_subject = dataclasses.replace(cfg, subjects=("backpack", "dog", "teapot"))
    oracle = dreambench_oracle(every_subject)
    assert set(oracle) == {"eval/dino", "eval/clip_i"}
    encoders = {
        "eval/dino": DinoEncoder.from_pretrained(cfg.dino, CPU),
        "eval/clip_i": ClipEncoder.from_pretrained(cfg.clip, CPU),
    }
    photos = {subject: subject_photos(cfg, subject) for subject in every_subject.subjects}
    for key, encoder in encoders.items():
        features = {subject: encoder.image_features(images) for subject, images in photos.items()}
        within = [float(f[i] @ f[j]) for f in features.values() for i in range(len(f)) for j in range(i)]
        across = [float(features[a][i] @ features[b][j])
                  for a in photos for b in photos if a < b
                  for i in range(len(features[a])) for j in range(len(features[b]))]
        assert oracle[key] == pytest.approx(np.mean(within), abs=1e-5)
        assert oracle[key] > np.mean(across) + 0.1
