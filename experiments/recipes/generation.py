"""Images from a trained Kosmos-G: an interleaved prompt ("<i> wearing <i> in the jungle") with
its images, through the aligned MLLM and the frozen SD decoder."""

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


def load_kosmos_g(config: RunConfig, weights: Path) -> tuple[KosmosGConditioner, ImageDecoder]:
    """The conditioner and decoder of a run of `config`, with the weights it trained (a
    checkpoint file or run directory): the aligner alone for stages 2 and E2E, MLLM and
    aligner for stage 3."""
    recipe = recipe_named(config.recipe)
    if not (recipe.trains and recipe.generates):
        makers = [r.name for r in RECIPES.values() if r.trains and r.generates]
        raise ValueError(f"a {config.recipe} run trains no Kosmos-G model; pick a run of {', '.join(makers)}")
    device = pick_device()
    mllm = MLLMEncoder.from_pretrained(config.models.mllm)
    target = ClipTextTarget.from_pretrained(config.models.stable_diffusion)
    aligner = aligner_for(config.aligner, mllm, target)
    trained = nn.ModuleDict({"mllm": mllm, "aligner": aligner}) if recipe.trains_mllm else aligner
    trained.load_state_dict(trained_weights(weights))
    conditioner = frozen(KosmosGConditioner(mllm, aligner), device)
    decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), device)
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
