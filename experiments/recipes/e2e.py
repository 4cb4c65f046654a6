"""Table 2's "E2E" rows: the alignment is trained end to end with the diffusion loss through the
frozen U-Net (paper eq. 3) instead of the CLIP-supervised MSE, either through a plain linear
projection ("E2E w/o AlignerNet") or through AlignerNet's M ("E2E w/ AlignerNet")."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.config import RunConfig
from experiments.data.batches import WHOLE, EpochShuffler, Part
from experiments.data.captions import Caption, training_captions
from experiments.data.images import image_tensor
from experiments.recipes.diffusion import (
    heldout_diffusion_loss,
    heldout_pairs,
    with_null_conditions,
)
from experiments.recipes.modules import aligner_for, frozen, pick_device
from experiments.training.objective import Objective
from experiments.training.tracking import DataInput
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner, MLLMEncoder


class E2EObjective(Objective):
    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        super().__init__(config, cache_dir)
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

    def data_counts(self) -> dict[str, int]:
        return {"dropped_captions": self.dropped_captions}

    def data_inputs(self) -> list[DataInput]:
        data = self.config.data
        return [DataInput("data.train", "training", data.train, len(self.sampler.items)),
                DataInput("data.heldout", "heldout", data.heldout, len(self.heldout_pairs[1]))]

    def loss(self, batch: tuple[torch.Tensor, list[str]]) -> dict[str, torch.Tensor]:
        images, texts = batch
        condition = with_null_conditions(self.conditioner(texts), self.conditioner, self.null_prob)
        return {"loss": self.decoder.diffusion_loss(images, condition)}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        return {"diffusion_loss": heldout_diffusion_loss(self.decoder, self.conditioner, self.heldout_pairs)}
