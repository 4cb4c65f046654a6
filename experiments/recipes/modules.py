"""The modules recipes build from a RunConfig: the device, frozen parts, the aligner."""

from __future__ import annotations

import torch

from experiments.config import AlignerConfig
from models import Aligner, ClipTextTarget, MLLMEncoder, build_aligner


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
