"""Stage 3, instruction tuning (paper, Training): the MLLM and AlignerNet's M learn together,
from an aligned stage-2 run, with the diffusion loss through the frozen U-Net, on a 2 : 2 : 1
mixture of compositional, edit and caption-only rows.

Trainable: the MLLM's language model and image connector, the last vision layer(s), and M.
Frozen: the U-Net and VAE (always), the rest of the vision tower, and N, which only stage 2's
reconstruction loss needed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.config import STAGE3_KINDS, RunConfig
from experiments.data.shards import open_shards
from experiments.data.stage3_examples import (
    Example,
    captioned_example,
    compositional_example,
    edit_example,
)
from experiments.data.stage3_filters import CaptionedFilter
from experiments.data.stage3_rows import PARSERS, CaptionedRow
from experiments.data.stage3_stream import MixedStepRows, Stage3Kind
from experiments.recipes.diffusion import (
    heldout_diffusion_loss,
    heldout_pairs,
    with_null_conditions,
)
from experiments.recipes.modules import aligner_for, frozen, pick_device
from experiments.recipes.registry import Trains
from experiments.training.checkpoints import trained_weights
from experiments.training.streaming_objective import StreamingObjective
from experiments.training.tracker import DataInput
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner, MLLMEncoder

Batch = tuple[torch.Tensor, list[str], list[list]]  # target images, prompts, prompt images


def build(config: RunConfig, cache_dir: Path | None) -> Trains:
    return Trains(InstructObjective(config, cache_dir))


class InstructObjective(StreamingObjective):
    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        super().__init__(config, cache_dir)
        train = config.train
        if not train.init_from:
            raise ValueError("the instruct recipe starts from an aligned stage-2 run: set "
                             "train.init_from, or the experiment's `after`")
        self.device = pick_device()
        self.null_prob = train.null_condition_prob

        self.mllm = MLLMEncoder.from_pretrained(config.models.mllm).to(self.device)
        # (code) Stage 3 trains the MLLM with kosmosg_xl's dropout too.
        self.mllm.set_text_dropout(train.mllm_dropout)
        self.mllm.unfreeze_for_instruction_tuning(train.trainable_vision_layers)
        target = ClipTextTarget.from_pretrained(config.models.stable_diffusion)  # sizes M's output
        self.aligner = aligner_for(config.aligner, self.mllm, target)
        self.aligner.load_state_dict(trained_weights(train.init_from))
        self.aligner.requires_grad_(False)
        for parameter in self.aligner.generation_parameters():
            parameter.requires_grad_(True)
        self.aligner.to(self.device)
        self.decoder: ImageDecoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion),
                                            self.device)
        self.trainable = nn.ModuleDict({"mllm": self.mllm, "aligner": self.aligner})
        self.conditioner = KosmosGConditioner(self.mllm, self.aligner, train.append_eos)

        kinds = [_stage3_kind(config, name, weight, self.mllm.tokenizer, cache_dir)
                 for name, weight in zip(STAGE3_KINDS, config.data.mix)]
        mixture = MixedStepRows(kinds, config.data.mix, train.batch_size, config.seed, train.resolution,
                                config.data.max_image_pixels)
        self.stream_steps(mixture)
        self.heldout_pairs = heldout_pairs(config, target.tokenizer, cache_dir)

    def collate(self, items: list[tuple[Any, ...]]) -> Batch:
        targets, prompts, images = zip(*items)
        return torch.stack(targets).to(self.device, non_blocking=True), list(prompts), list(images)

    def data_inputs(self) -> list[DataInput]:
        heldout = DataInput("data.heldout", "heldout", self.config.data.heldout, len(self.heldout_pairs[1]))
        return [*self.training_inputs(), heldout]

    def tokens(self, batch: Batch) -> int:
        """Prompt tokens and image slots the MLLM encodes."""
        _, prompts, images = batch
        inputs = self.mllm.tokenize(prompts, images, append_eos=self.conditioner.append_eos)
        return int(inputs.attention_mask.sum())

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        targets, prompts, images = batch
        condition = with_null_conditions(self.conditioner(prompts, images), self.conditioner, self.null_prob)
        return {"loss": self.decoder.diffusion_loss(targets, condition)}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        return {"diffusion_loss": heldout_diffusion_loss(self.decoder, self.conditioner, self.heldout_pairs)}


def _stage3_kind(
    config: RunConfig, name: str, weight: float, sp_tokenizer: Any, cache_dir: Path | None
) -> Stage3Kind | None:
    """The kind's manifest as shards read row by row (none for a kind whose share of the mix is 0);
    caption-only rows also through the official loader's filters (`sp_tokenizer`: the MLLM's)."""
    if not weight:
        return None
    path = getattr(config.data, name)
    if path is None:
        raise ValueError(f"data.{name}: the mix gives it a share ({weight:g}) but no manifest is set")
    train, data = config.train, config.data
    examples: dict[str, Callable[[Any, random.Random], Example]] = {
        "compositional": partial(compositional_example, entity_drop_prob=train.entity_drop_prob,
                                 background_keep_prob=train.background_keep_prob,
                                 max_pixels=data.max_image_pixels),
        "edits": partial(edit_example, caption_drop_prob=train.edit_caption_drop_prob,
                         max_pixels=data.max_image_pixels),
        "captioned": _captioned,
    }
    refuse = None
    if name == "captioned":
        refuse = CaptionedFilter(sp_tokenizer, data.captioned_max_sp_tokens, data.captioned_min_image_side)
    shards = open_shards(path, cache_dir=cache_dir, whole_rows=True)
    parse = partial(PARSERS[name], max_pixels=data.max_image_pixels)
    return Stage3Kind(name, shards, parse, examples[name], refuse)


def _captioned(row: CaptionedRow, rng: random.Random) -> Example:
    return captioned_example(row)
