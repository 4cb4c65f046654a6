"""A DreamBench config over the tiny tier's assets (synthetic photos, tiny DINO and CLIP)."""

from __future__ import annotations

from pathlib import Path

from experiments.config import DreamBenchConfig


def tiny_dreambench(assets: Path, **values) -> DreamBenchConfig:
    base = dict(
        enabled=True, root=str(assets / "dreambench"), prompts=str(assets / "dreambench" / "prompts_and_classes.txt"),
        dino=str(assets / "dino"), clip=str(assets / "clip"), steps=2, generate_size=32, images_per_prompt=2,
    )
    return DreamBenchConfig(**{**base, **values})
