"""DreamBench (paper, Table 1 left): DINO, CLIP-I and CLIP-T of a subject-driven generator, and
the real-image oracle the paper lists above the methods.

(code) sample_kosmosg_dreambench.py with eval/{dino,clip}_score.py: each metric is the mean over
all generated images of one cosine, clamped at 0, reported in [0, 1] (the code prints x100).
DINO and CLIP-I compare a generated image with its subject's input photo (reference = "input")
or, averaged, with each of the subject's photos ("subject"); CLIP-T compares it with the
original template filled with the subject's class ("a dog in the jungle").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from experiments.config import DreamBenchConfig, Reference
from experiments.data.dreambench_layout import (
    Subject,
    benchmark_prompts,
    load_subjects,
    open_photo,
    read_prompts_file,
    selected_templates,
)
from experiments.evaluation.dreambench_generate import (
    GeneratedImage,
    SubjectConditioner,
    generate_dreambench_images,
)
from experiments.evaluation.sheets import save_subject_sheet
from experiments.evaluation.similarity import ClipEncoder, DinoEncoder
from experiments.recipes.modules import pick_device
from models import ImageDecoder


def dreambench_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "dreambench"


def dreambench_sheets(run_dir: Path) -> list[Path]:
    """The per-subject sample sheets an evaluation in `run_dir` wrote, for logging as artifacts."""
    return sorted((dreambench_dir(run_dir) / "sheets").glob("*.png"))


def evaluate_dreambench(
    conditioner: SubjectConditioner, decoder: ImageDecoder, cfg: DreamBenchConfig, *,
    seed: int, run_dir: Path, progress: bool,
) -> dict[str, float]:
    """Generates the missing images (split over torch.distributed ranks), then rank 0 scores
    them and draws the sheets; the other ranks return {}."""
    started = time.perf_counter()
    scorer_paths = _scorer_paths(cfg)  # checked before hours of sampling, not after
    prompts_file = read_prompts_file(_required(cfg.prompts, "dreambench.prompts"))
    subjects = load_subjects(cfg, prompts_file)
    prompts = benchmark_prompts(prompts_file, subjects, selected_templates(cfg.templates))
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    images = generate_dreambench_images(
        conditioner, decoder, cfg, subjects, prompts, seed=seed,
        folder=dreambench_dir(run_dir) / "generated", progress=progress, shard=(rank, world),
    )
    if world > 1:
        dist.barrier()
    if rank != 0:
        return {}
    dino, clip = _scorers(*scorer_paths)
    scores = _score(images, subjects, cfg.reference, dino, clip)
    for subject in subjects:
        save_subject_sheet(subject, images, dreambench_dir(run_dir) / "sheets" / f"{subject.name}.png")
    return {
        **scores,
        "eval/dreambench_images": float(len(images)),
        "eval/dreambench_seconds": time.perf_counter() - started,
    }


def dreambench_oracle(cfg: DreamBenchConfig) -> dict[str, float]:
    """DINO and CLIP-I between distinct real photos of one subject: the ceiling a generator that
    reproduced its subject perfectly would reach. Averaged over all such pairs of all subjects
    pooled, so a subject with more photos weighs more (it has more pairs)."""
    subjects = load_subjects(cfg, read_prompts_file(_required(cfg.prompts, "dreambench.prompts")))
    dino, clip = _scorers(*_scorer_paths(cfg))
    totals = {"eval/dino": 0.0, "eval/clip_i": 0.0}
    pairs = 0
    for subject in subjects:
        photos = [open_photo(path) for path in subject.photos]
        for key, encoder in (("eval/dino", dino), ("eval/clip_i", clip)):
            features = encoder.image_features(photos)
            totals[key] += float(torch.triu(features @ features.T, diagonal=1).sum())
        pairs += len(photos) * (len(photos) - 1) // 2
    if not pairs:
        raise ValueError("the DreamBench oracle needs a subject with at least two photos")
    return {key: max(total / pairs, 0.0) for key, total in totals.items()}


def _required(value: str | None, key: str) -> str:
    if value is None:
        raise ValueError(f"{key} is not set")
    return value


def _scorer_paths(cfg: DreamBenchConfig) -> tuple[str, str]:
    return _required(cfg.dino, "dreambench.dino"), _required(cfg.clip, "dreambench.clip")


def _scorers(dino_path: str, clip_path: str) -> tuple[DinoEncoder, ClipEncoder]:
    device = pick_device()
    return DinoEncoder.from_pretrained(dino_path, device), ClipEncoder.from_pretrained(clip_path, device)


def _score(
    images: Sequence[GeneratedImage],
    subjects: Sequence[Subject],
    reference: Reference,
    dino: DinoEncoder,
    clip: ClipEncoder,
) -> dict[str, float]:
    totals = {"eval/dino": 0.0, "eval/clip_i": 0.0, "eval/clip_t": 0.0}
    # One subject at a time keeps at most one subject's generated images in memory.
    for subject in subjects:
        mine = [image for image in images if image.prompt.subject == subject.name]
        reference_photos = [subject.input_photo] if reference == "input" else subject.photos
        references = [open_photo(path) for path in reference_photos]
        generated = [open_photo(image.path) for image in mine]
        clip_features = clip.image_features(generated)
        captions = sorted({image.prompt.caption for image in mine})
        caption_features = dict(zip(captions, clip.text_features(captions)))
        texts = torch.stack([caption_features[image.prompt.caption] for image in mine])
        # Rows: generated images; columns: reference photos, averaged ("subject") or just one ("input").
        dino_features = dino.image_features(generated) @ dino.image_features(references).T
        totals["eval/dino"] += float(dino_features.mean(1).sum())
        totals["eval/clip_i"] += float((clip_features @ clip.image_features(references).T).mean(1).sum())
        totals["eval/clip_t"] += float((clip_features * texts).sum(1).sum())
    return {key: max(total / len(images), 0.0) for key, total in totals.items()}
