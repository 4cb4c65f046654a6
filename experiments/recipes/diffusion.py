"""What the recipes that train through the frozen U-Net share (E2E and stage 3): null conditions
for guidance, and the held-out diffusion loss on fixed noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from experiments.config import RunConfig
from experiments.data.items import CaptionItem, ImageCaptionItem
from experiments.data.shards import Record, holds_images, open_shards
from experiments.data.stream import Skip, first_rows
from models import ImageDecoder, KosmosGConditioner

_HELDOUT_NOISE_SEED = 1234
# Held-out images per VAE / U-Net pass: fixed, so that the loss does not depend on the launch.
HELDOUT_CHUNK = 8


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
    different steps (and of different runs) are comparable. The pairs go through the VAE and
    U-Net HELDOUT_CHUNK at a time, each chunk's noise seeded by its place: at 512 px the VAE
    encode alone takes ~0.64 GiB per image, so 256 at once would not fit any GPU."""
    images, texts = pairs
    device = conditioner.device
    total = 0.0
    for start in range(0, len(texts), HELDOUT_CHUNK):
        chunk = slice(start, start + HELDOUT_CHUNK)
        generator = torch.Generator(device).manual_seed(_HELDOUT_NOISE_SEED + start)
        loss = decoder.diffusion_loss(
            images[chunk].to(device), conditioner(texts[chunk]), generator=generator
        )
        total += loss.item() * len(texts[chunk])
    return total / len(texts)


def heldout_pairs(
    config: RunConfig, clip_tokenizer: Any, cache_dir: Path | None
) -> tuple[torch.Tensor, list[str]]:
    """The first `heldout_size` held-out (image, caption) pairs in file order, one caption per
    image: the same set for every run and every evaluation."""
    data = config.data
    shards = open_shards(data.heldout, text_column=data.text_column, cache_dir=cache_dir)
    if data.heldout_images is None and not holds_images(shards):
        raise ValueError(f"the {config.recipe} recipe evaluates on held-out images: set data.heldout_images")
    images = Path(data.heldout_images) if data.heldout_images else None
    pair = ImageCaptionItem(CaptionItem(clip_tokenizer, config.train.max_caption_tokens), images,
                            config.train.resolution, data.max_image_pixels)
    seen: set[str] = set()

    def first_caption_of_each_image(record: Record) -> tuple[torch.Tensor, str] | Skip:
        if isinstance(record.image, str):  # COCO lists five captions per image file
            if record.image in seen:
                return Skip("repeated_image")
            seen.add(record.image)
        return pair(record)

    pairs, _ = first_rows(shards, first_caption_of_each_image, data.heldout_size)
    pixels, texts = zip(*pairs)
    return torch.stack(pixels), list(texts)
