"""Table 2's "E2E" rows: the alignment is trained end to end with the diffusion loss through the
frozen U-Net (paper eq. 3) instead of the CLIP-supervised MSE, either through a plain linear
projection ("E2E w/o AlignerNet") or through AlignerNet's M ("E2E w/ AlignerNet")."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.config import RunConfig
from experiments.data.items import CaptionItem, ImageCaptionItem
from experiments.data.shards import holds_images, open_shards
from experiments.data.stream import StepRows
from experiments.recipes.diffusion import (
    heldout_diffusion_loss,
    heldout_pairs,
    with_null_conditions,
)
from experiments.recipes.modules import aligner_for, evaluating, frozen, frozen_mllm, model_sizes, pick_device
from experiments.recipes.registry import Trains
from experiments.training.flops import e2e_step, nominal_step_flops
from experiments.training.streaming_objective import StreamingObjective
from experiments.training.tracker import DataInput
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner


def build(config: RunConfig, cache_dir: Path | None) -> Trains:
    return Trains(E2EObjective(config, cache_dir))


class E2EObjective(StreamingObjective):
    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        super().__init__(config, cache_dir)
        data = config.data
        self.device = pick_device()
        train = config.train
        self.null_prob = train.null_condition_prob
        # E2E replaces stage 2, so its frozen MLLM is run as stage 2 runs it.
        self.mllm = frozen_mllm(config.models.mllm, train, self.device)
        target = ClipTextTarget.from_pretrained(config.models.stable_diffusion)
        self.decoder: ImageDecoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion),
                                            self.device)
        self.trainable = aligner_for(config.aligner, self.mllm, target).to(self.device)
        self.conditioner = KosmosGConditioner(self.mllm, self.trainable, train.append_eos)
        self.sizes = model_sizes(self.mllm, target, self.decoder, config.train.resolution)
        shards = open_shards(data.train, text_column=data.text_column, cache_dir=cache_dir)
        if data.train_images is None and not holds_images(shards):
            raise ValueError(f"data.train: {data.train} holds captions only; the e2e recipe trains on "
                             "images: set data.train_images to their folder, or train on image shards")
        # Stage 2's caption filters: E2E trains on its captions in its place.
        captions = CaptionItem(target.tokenizer, train.max_caption_tokens,
                               self.mllm.tokenizer, train.max_caption_sp_tokens)
        images = Path(data.train_images) if data.train_images else None
        pairs = ImageCaptionItem(captions, images, train.resolution, data.max_image_pixels)
        self.stream_steps(StepRows(shards, pairs, train.batch_size, config.seed))
        self.heldout_pairs = heldout_pairs(config, target.tokenizer, cache_dir)

    def collate(self, items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
        images, texts = zip(*items)
        return torch.stack(images).to(self.device, non_blocking=True), list(texts)

    def data_inputs(self) -> list[DataInput]:
        heldout = DataInput("data.heldout", "heldout", self.config.data.heldout, len(self.heldout_pairs[1]))
        return [*self.training_inputs(), heldout]

    def flops(self, batch: tuple[torch.Tensor, list[str]]) -> int:
        images, texts = batch
        source_len = self.mllm.tokenize(texts).input_ids.shape[1]
        sizes = self.sizes
        if sizes.decoder is None:
            raise RuntimeError("the e2e recipe's model sizes lack the decoder it trains through")
        return e2e_step(
            self.config.aligner, batch=images.shape[0], source_len=source_len, source_dim=sizes.source_dim,
            target_dim=sizes.target_dim, target_len=sizes.target_len, mllm=sizes.mllm, decoder=sizes.decoder,
        )

    def nominal_step_flops(self) -> int:
        return nominal_step_flops(self.config, self.sizes)

    def loss(self, batch: tuple[torch.Tensor, list[str]]) -> dict[str, torch.Tensor]:
        images, texts = batch
        condition = with_null_conditions(self.conditioner(texts), self.conditioner, self.null_prob)
        return {"loss": self.decoder.diffusion_loss(images, condition)}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        with evaluating(self.mllm):  # the same pairs and noise give the same loss at every eval
            loss = heldout_diffusion_loss(self.decoder, self.conditioner, self.heldout_pairs)
        return {"diffusion_loss": loss}
