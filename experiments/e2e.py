"""Table 2's "E2E" rows: the alignment is trained end to end with the diffusion loss through the
frozen U-Net (paper eq. 3) instead of the CLIP-supervised MSE, either through a plain linear
projection ("E2E w/o AlignerNet") or through AlignerNet's M ("E2E w/ AlignerNet")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from experiments.coco import Caption, load_captions
from experiments.components import aligner_for, frozen, pick_device, training_captions
from experiments.config import RunConfig
from experiments.fid import center_crop_resize
from experiments.sampling import WHOLE, EpochShuffler, Part
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner, MLLMEncoder

_HELDOUT_NOISE_SEED = 1234


def image_tensor(path: Path, resolution: int) -> torch.Tensor:
    """An RGB file as a (3, r, r) tensor in [-1, 1], cropped the way the FID protocol crops."""
    with Image.open(path) as image:
        pixels = np.asarray(center_crop_resize(image.convert("RGB"), resolution), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0


class E2EObjective:
    def __init__(self, config: RunConfig) -> None:
        if config.data.train_images is None:
            raise ValueError("the e2e recipe trains on images: set data.train_images")
        self.device = pick_device()
        self.image_root = Path(config.data.train_images)
        self.resolution = config.train.resolution
        self.null_prob = config.train.null_condition_prob
        self.mllm = frozen(MLLMEncoder.from_pretrained(config.models.mllm), self.device)
        target = ClipTextTarget.from_pretrained(config.models.stable_diffusion)
        self.decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), self.device)
        self.trainable = aligner_for(config.aligner, self.mllm, target).to(self.device)
        self.conditioner = KosmosGConditioner(self.mllm, self.trainable)
        captions, self.dropped_captions = training_captions(
            config.data, target, config.train.max_caption_tokens
        )
        with_images = [c for c in captions if c.image_file]
        self.sampler = EpochShuffler(with_images, config.train.batch_size, config.seed)
        self.heldout_pairs = heldout_pairs(config)

    def _images(self, captions: list[Caption]) -> torch.Tensor:
        return torch.stack([
            image_tensor(self.image_root / c.image_file, self.resolution) for c in captions
        ]).to(self.device)

    def batch(self, step: int, part: Part = WHOLE) -> tuple[torch.Tensor, list[str]]:
        captions = self.sampler(step, part)
        return self._images(captions), [c.caption for c in captions]

    def loss(self, batch: tuple[torch.Tensor, list[str]]) -> dict[str, torch.Tensor]:
        images, texts = batch
        condition = with_null_conditions(self.conditioner(texts), self.conditioner, self.null_prob)
        return {"loss": self.decoder.diffusion_loss(images, condition)}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        return {"diffusion_loss": heldout_diffusion_loss(self.decoder, self.conditioner, self.heldout_pairs)}


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
