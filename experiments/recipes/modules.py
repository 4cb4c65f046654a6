"""The modules recipes build from a RunConfig: the device, frozen parts, the aligner."""

from __future__ import annotations

import torch

from experiments.config import AlignerConfig
from experiments.training.flops import ModelSizes, Stack, decoder_cost
from models import Aligner, ClipTextTarget, ImageDecoder, MLLMEncoder, build_aligner


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


def model_sizes(
    mllm: MLLMEncoder, target: ClipTextTarget, decoder: ImageDecoder | None = None, resolution: int = 0
) -> ModelSizes:
    """What a step's FLOP count needs to know of the frozen models (the decoder's parts at the
    training `resolution`, for the recipes that train through it)."""
    text, clip = mllm.model.config.text_config, target.text_encoder.config
    cost = None
    if decoder is not None:
        unet, vae = decoder.unet, decoder.vae
        cost = decoder_cost(type(unet), unet.config, type(vae), vae.config, resolution, target.max_length)
    return ModelSizes(
        source_dim=mllm.hidden_size, target_dim=target.hidden_size, target_len=target.max_length,
        mllm=Stack(text.layers, text.embed_dim, text.ffn_dim),
        clip=Stack(clip.num_hidden_layers, clip.hidden_size, clip.intermediate_size), decoder=cost,
    )
