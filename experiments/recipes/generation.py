"""Images from a trained Kosmos-G: an interleaved prompt ("<i> wearing <i> in the jungle") with
its images, through the aligned MLLM and the frozen SD decoder. The model comes from a run's
checkpoint (`load_kosmos_g`) or from a folder `repro export` wrote (`load_exported`)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from experiments.config import RunConfig
from experiments.recipes.modules import aligner_for, frozen, pick_device
from experiments.recipes.registry import RECIPES, recipe_named
from experiments.training.checkpoints import trained_weights
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner, MLLMEncoder
from models.conditioning import saved_config


def trained_conditioner(config: RunConfig, weights: Path) -> KosmosGConditioner:
    """The conditioner a run of `config` trained, on the CPU, with its weights (a run directory,
    checkpoint folder or model.safetensors): the aligner alone for stages 2 and E2E, MLLM and
    aligner for stage 3."""
    recipe = recipe_named(config.recipe)
    if not (recipe.trains and recipe.generates):
        makers = [r.name for r in RECIPES.values() if r.trains and r.generates]
        raise ValueError(f"a {config.recipe} run trains no Kosmos-G model; pick a run of {', '.join(makers)}")
    state = trained_weights(weights)  # first: a refused file stops us before any model loads
    mllm = MLLMEncoder.from_pretrained(config.models.mllm)
    target = ClipTextTarget.from_pretrained(config.models.stable_diffusion)
    aligner = aligner_for(config.aligner, mllm, target)
    trained = nn.ModuleDict({"mllm": mllm, "aligner": aligner}) if recipe.trains_mllm else aligner
    trained.load_state_dict(state)
    return KosmosGConditioner(mllm, aligner, config.train.append_eos).eval()


def load_kosmos_g(config: RunConfig, weights: Path) -> tuple[KosmosGConditioner, ImageDecoder]:
    """The conditioner and decoder of a run of `config`, frozen on this machine's device."""
    device = pick_device()
    conditioner = frozen(trained_conditioner(config, weights), device)
    decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), device)
    return conditioner, decoder


def load_exported(folder: Path) -> tuple[KosmosGConditioner, ImageDecoder]:
    """The conditioner an export holds and the decoder of the Stable Diffusion it names."""
    device = pick_device()
    config = saved_config(folder)
    if config is None:
        raise ValueError(f"{folder}: not a folder `repro export` wrote (no Kosmos-G config.json)")
    conditioner = frozen(KosmosGConditioner.from_pretrained(folder), device)
    decoder = frozen(ImageDecoder.from_pretrained(config["stable_diffusion"]), device)
    return conditioner, decoder


@torch.no_grad()
def generate(
    conditioner: KosmosGConditioner, decoder: ImageDecoder, prompt: str, images: list[Image.Image],
    *, count: int, guidance: float, steps: int, sampler: str, size: int, seed: int,
) -> list[Image.Image]:
    """`count` images for one prompt, whose k-th "<i>" is images[k]."""
    condition = conditioner([prompt], [images])
    return decoder.sample(
        condition.expand(count, -1, -1), conditioner.null(count), guidance=guidance, steps=steps,
        sampler=sampler, height=size, width=size, generator=torch.Generator().manual_seed(seed),
    )
