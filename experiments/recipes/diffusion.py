"""What the recipes that train through the frozen U-Net share (E2E and stage 3): null conditions
for guidance, and the held-out diffusion loss on fixed noise."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.config import RunConfig
from experiments.data.captions import load_captions
from experiments.data.images import image_tensor
from models import ImageDecoder, KosmosGConditioner

_HELDOUT_NOISE_SEED = 1234


def with_null_conditions(
    condition: torch.Tensor, conditioner: KosmosGConditioner, prob: float
) -> torch.Tensor:
    """(code) A share `prob` of the conditions become the null condition, so guidance has an
    unconditional branch to extrapolate from at sampling time."""
    dropped = torch.rand(condition.shape[0], device=condition.device) < prob
    # Made even where none is dropped: each rank draws its own `dropped`, and under FSDP every
    # rank has to run the same forwards (each gathers the weights it runs on).
    null = conditioner.null(1).expand_as(condition)
    return torch.where(dropped[:, None, None], null, condition)


@torch.no_grad()
def heldout_diffusion_loss(
    decoder: ImageDecoder, conditioner: KosmosGConditioner, pairs: tuple[torch.Tensor, list[str]]
) -> float:
    """Eq. 3 on held-out (image, caption) pairs with fixed noise and timesteps, so values at
    different steps (and of different runs) are comparable."""
    images, texts = pairs
    device = conditioner.device
    generator = torch.Generator(device).manual_seed(_HELDOUT_NOISE_SEED)
    return decoder.diffusion_loss(images.to(device), conditioner(texts), generator=generator).item()


def heldout_pairs(config: RunConfig) -> tuple[torch.Tensor, list[str]]:
    """The first `heldout_size` held-out (image, caption) pairs, one caption per image."""
    if config.data.heldout_images is None:
        raise ValueError(f"the {config.recipe} recipe evaluates on held-out images: set data.heldout_images")
    root = Path(config.data.heldout_images)
    seen: set[str] = set()
    pairs = []
    for caption in load_captions(config.data.heldout):
        if caption.image_file and caption.image_file not in seen:
            seen.add(caption.image_file)
            pairs.append(caption)
    pairs = pairs[: config.data.heldout_size]
    images = torch.stack([image_tensor(root / c.image_file, config.train.resolution) for c in pairs])
    return images, [c.caption for c in pairs]
