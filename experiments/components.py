"""Builds the pieces the recipes share from a RunConfig: frozen encoders, the aligner, data."""

from __future__ import annotations

import logging

import torch

from experiments.coco import Caption, load_captions
from experiments.config import AlignerConfig, DataConfig
from models import Aligner, ClipTextTarget, MLLMEncoder, build_aligner

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def frozen(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Frozen parts never hold gradients or optimizer state and never run in train mode."""
    return module.to(device).eval().requires_grad_(False)


def aligner_for(cfg: AlignerConfig, mllm: MLLMEncoder, target: ClipTextTarget) -> Aligner:
    return build_aligner(
        cfg.kind, source_dim=mllm.hidden_size, target_dim=target.hidden_size,
        target_len=target.max_length, layers=cfg.layers, width=cfg.width, ffn=cfg.ffn,
        heads=cfg.heads, max_source_len=cfg.max_source_len, dropout=cfg.dropout,
    )


def training_captions(
    data: DataConfig, target: ClipTextTarget, max_tokens: int
) -> tuple[list[Caption], int]:
    """Training captions minus those longer than `max_tokens` CLIP tokens (official code's
    filter), and how many were dropped."""
    captions = load_captions(data.train)
    counts = target.token_counts([c.caption for c in captions])
    kept = [c for c, n in zip(captions, counts) if n <= max_tokens]
    dropped = len(captions) - len(kept)
    if dropped:
        log.info("dropped %d of %d captions longer than %d CLIP tokens", dropped, len(captions), max_tokens)
    return kept, dropped


def heldout_captions(data: DataConfig) -> list[Caption]:
    """The first `heldout_size` held-out captions: the same set for every run and every eval."""
    return load_captions(data.heldout)[: data.heldout_size]
