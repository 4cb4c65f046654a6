"""Table 2's "SD v1.5" row: Stable Diffusion conditioned by its own CLIP text encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.config import RunConfig
from experiments.recipes.modules import frozen, pick_device
from experiments.recipes.registry import Generates
from models import ClipTextTarget, ImageDecoder


class ClipConditioner:
    """SD's own conditioning: CLIP's last hidden state, and the empty prompt as the null one."""

    def __init__(self, text_encoder: ClipTextTarget) -> None:
        self.text_encoder = text_encoder

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return self.text_encoder(prompts)

    def null(self, batch_size: int) -> torch.Tensor:
        return self.text_encoder([""] * batch_size)


def build(config: RunConfig, cache_dir: Path | None) -> Generates:
    """SD v1.5 as published: its own text encoder and its decoder, both frozen."""
    sd, device = config.models.stable_diffusion, pick_device()
    text_encoder = frozen(ClipTextTarget.from_pretrained(sd), device)
    return Generates(ClipConditioner(text_encoder), frozen(ImageDecoder.from_pretrained(sd), device))
