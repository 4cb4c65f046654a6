"""The modules recipes build from a RunConfig: the device, frozen parts, the aligner, and the
pair that samples from what a recipe built."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar, cast

import torch
from transformers.models.kosmos2.configuration_kosmos2 import Kosmos2TextConfig

from experiments.config import AlignerConfig, RunConfig, TrainConfig
from experiments.recipes.registry import Generates, Trains
from experiments.training.flops import ModelSizes, Stack, decoder_cost
from models import Aligner, ClipTextTarget, ImageDecoder, MLLMEncoder, build_aligner

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def frozen(module: ModuleT, device: torch.device) -> ModuleT:
    """Frozen parts never hold gradients or optimizer state and run in eval mode."""
    return module.to(device).eval().requires_grad_(False)


def frozen_mllm(path: str, train: TrainConfig, device: torch.device) -> MLLMEncoder:
    """The MLLM of a recipe that trains through it without training it (stage 2, E2E): no
    gradients, its text dropout at `train.mllm_dropout` and, while that is on, in train mode,
    as (code) the official stage 2 leaves it (it never calls eval() on the MLLM)."""
    mllm = frozen(MLLMEncoder.from_pretrained(path), device).set_text_dropout(train.mllm_dropout)
    return mllm.train(train.mllm_dropout > 0)


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """`module` in eval mode for the block, then back in the modes it was in: held-out losses
    are measured without the training-time dropout of a frozen MLLM."""
    modes = {sub: sub.training for sub in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for sub, mode in modes.items():
            sub.training = mode


def sampling_models(built: Trains | Generates, config: RunConfig) -> Generates:
    """The conditioner and decoder the evaluations sample with: a trained objective's own, with
    Stable Diffusion's frozen decoder where the objective trains without one."""
    if isinstance(built, Generates):
        return built
    objective = built.objective
    decoder = objective.decoder
    if decoder is None:
        decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), pick_device())
    return Generates(objective.conditioner.eval(), decoder)


def aligner_for(cfg: AlignerConfig, mllm: MLLMEncoder, target: ClipTextTarget) -> Aligner:
    return build_aligner(cfg, mllm.hidden_size, target.hidden_size, target.max_length)


def model_sizes(
    mllm: MLLMEncoder, target: ClipTextTarget, decoder: ImageDecoder | None = None, resolution: int = 0
) -> ModelSizes:
    """What a step's FLOP count needs to know of the frozen models (the decoder's parts at the
    training `resolution`, for the recipes that train through it)."""
    text, clip = cast(Kosmos2TextConfig, mllm.model.config.text_config), target.text_encoder.config
    cost = None
    if decoder is not None:
        unet, vae = decoder.unet, decoder.vae
        cost = decoder_cost(type(unet), unet.config, type(vae), vae.config, resolution, target.max_length)
    return ModelSizes(
        source_dim=mllm.hidden_size, target_dim=target.hidden_size, target_len=target.max_length,
        mllm=Stack(text.layers, text.embed_dim, text.ffn_dim),
        clip=Stack(clip.num_hidden_layers, clip.hidden_size, clip.intermediate_size), decoder=cost,
    )
