"""(m) What the mini DINO and mini CLIP score on the mini world's own images, the yardstick for
Table 1's DreamBench columns on the mini tier: the mean cosine similarity of two photos of one
subject (what a perfect generator scores; the oracle row), of photos of two different subjects,
and of a held-out world scene against a subject photo (what an image unrelated to the subject
scores). docs/performance.md, "The mini tier's tables".

    python -m bench.mini_dreambench_baselines [--scenes 64]
"""

from __future__ import annotations

import argparse
import os

import torch
from PIL import Image

from bench._common import CACHE, parse_args, report
from experiments.evaluation.similarity import ClipEncoder, DinoEncoder
from experiments.mini.assets import ensure_mini_assets


def pair_means(features: torch.Tensor, subject: torch.Tensor, scenes: torch.Tensor) -> dict[str, float]:
    """Mean cosine over photo pairs of one subject, of two subjects, and scene against photo."""
    similarity = features @ features.T
    same = subject[:, None] == subject[None, :]
    distinct = ~torch.eye(len(subject), dtype=torch.bool)
    return {
        "same_subject": similarity[same & distinct].mean().item(),
        "different_subjects": similarity[~same].mean().item(),
        "scene_against_subject_photo": (scenes @ features.T).mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=64, help="held-out world scenes compared")
    args = parse_args(parser)
    load = os.getloadavg()
    world = ensure_mini_assets(CACHE / "mini-assets")
    folders = sorted(path for path in (world / "dreambench").iterdir() if path.is_dir())
    photos, subject = [], []
    for index, folder in enumerate(folders):
        for path in sorted(folder.glob("*.jpg")):
            photos.append(Image.open(path).convert("RGB"))
            subject.append(index)
    held_out = sorted((world / "coco" / "val").iterdir())[: args.scenes]
    scenes = [Image.open(path).convert("RGB") for path in held_out]
    labels = torch.tensor(subject)
    cpu = torch.device("cpu")
    encoders: dict[str, DinoEncoder | ClipEncoder] = {
        "dino": DinoEncoder.from_pretrained(str(world / "dino"), cpu),
        "clip_i": ClipEncoder.from_pretrained(str(world / "clip"), cpu),
    }
    figures = {
        name: pair_means(encoder.image_features(photos), labels, encoder.image_features(scenes))
        for name, encoder in encoders.items()
    }
    report("mini_dreambench_baselines", {
        "subjects": len(folders), "photos": len(photos), "scenes": len(scenes), **figures,
    }, load)


if __name__ == "__main__":
    main()
