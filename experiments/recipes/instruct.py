"""Stage 3, instruction tuning (paper, Training): the MLLM and AlignerNet's M learn together,
from an aligned stage-2 run, with the diffusion loss through the frozen U-Net, on a 2 : 2 : 1
mixture of compositional, edit and caption-only rows.

Trainable: the MLLM's language model and image connector, the last vision layer(s), and M.
Frozen: the U-Net and VAE (always), the rest of the vision tower, and N, which only stage 2's
reconstruction loss needed.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from torch import nn

from experiments.config import STAGE3_KINDS, RunConfig
from experiments.data.batches import WHOLE, MixedShuffler, Part
from experiments.data.images import image_tensor
from experiments.data.stage3_examples import (
    Example,
    captioned_example,
    compositional_example,
    edit_example,
)
from experiments.data.stage3_rows import LOADERS
from experiments.recipes.diffusion import (
    heldout_diffusion_loss,
    heldout_pairs,
    with_null_conditions,
)
from experiments.recipes.modules import aligner_for, frozen, pick_device
from experiments.training.checkpoints import trained_weights
from experiments.training.objective import Objective
from experiments.training.tracking import DataInput
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner, MLLMEncoder

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, list[str], list[list]]  # target images, prompts, prompt images

class InstructObjective(Objective):
    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        super().__init__(config, cache_dir)
        train = config.train
        if not train.init_from:
            raise ValueError("the instruct recipe starts from an aligned stage-2 run: set "
                             "train.init_from, or the experiment's `after`")
        self.device = pick_device()
        self.seed = config.seed
        self.resolution = train.resolution
        self.null_prob = train.null_condition_prob
        self.entity_drop_prob = train.entity_drop_prob
        self.background_keep_prob = train.background_keep_prob

        self.mllm = MLLMEncoder.from_pretrained(config.models.mllm).to(self.device)
        self.mllm.unfreeze_for_instruction_tuning(train.trainable_vision_layers)
        target = ClipTextTarget.from_pretrained(config.models.stable_diffusion)  # sizes M's output
        self.aligner = aligner_for(config.aligner, self.mllm, target)
        self.aligner.load_state_dict(trained_weights(train.init_from))
        self.aligner.requires_grad_(False)
        for parameter in self.aligner.generation_parameters():
            parameter.requires_grad_(True)
        self.aligner.to(self.device)
        self.decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), self.device)
        self.trainable = nn.ModuleDict({"mllm": self.mllm, "aligner": self.aligner})
        self.conditioner = KosmosGConditioner(self.mllm, self.aligner)

        self.sources, self.skipped_rows = _stage3_rows(config)
        self.sampler = MixedShuffler(self.sources, config.data.mix, train.batch_size, config.seed)
        self.heldout_pairs = heldout_pairs(config)

    def _example(self, kind: int, row: object, step: int, position: int) -> Example:
        if STAGE3_KINDS[kind] == "compositional":
            # Seeded by (seed, step, position): a resumed run makes the very same prompts.
            rng = random.Random(f"{self.seed}:{step}:{position}")
            return compositional_example(row, rng, self.entity_drop_prob, self.background_keep_prob)
        if STAGE3_KINDS[kind] == "edits":
            return edit_example(row)
        return captioned_example(row)

    def batch(self, step: int, part: Part = WHOLE) -> Batch:
        examples = [self._example(d.kind, d.item, step, d.position) for d in self.sampler(step, part)]
        targets = torch.stack([image_tensor(e.target, self.resolution) for e in examples])
        return targets.to(self.device), [e.prompt for e in examples], [e.images for e in examples]

    def data_counts(self) -> dict[str, int]:
        return {f"skipped_{reason}": n for reason, n in self.skipped_rows.items()}

    def data_inputs(self) -> list[DataInput]:
        data = self.config.data
        kinds = [DataInput(f"data.{kind}", "training", getattr(data, kind), len(rows))
                 for kind, rows in zip(STAGE3_KINDS, self.sources) if rows]
        return [*kinds, DataInput("data.heldout", "heldout", data.heldout, len(self.heldout_pairs[1]))]

    def tokens(self, batch: Batch) -> int:
        """Prompt tokens and image slots the MLLM encodes."""
        _, prompts, images = batch
        return int(self.mllm.tokenize(prompts, images).attention_mask.sum())

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        targets, prompts, images = batch
        condition = with_null_conditions(self.conditioner(prompts, images), self.conditioner, self.null_prob)
        return {"loss": self.decoder.diffusion_loss(targets, condition)}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        return {"diffusion_loss": heldout_diffusion_loss(self.decoder, self.conditioner, self.heldout_pairs)}


def _stage3_rows(config: RunConfig) -> tuple[list[tuple], dict[str, int]]:
    """The valid rows of each kind (none for a kind whose share of the mix is 0) and how many
    rows were skipped, per kind and reason."""
    sources: list[tuple] = []
    skipped: dict[str, int] = {}
    for kind, weight in zip(STAGE3_KINDS, config.data.mix):
        path = getattr(config.data, kind)
        if not weight:
            sources.append(())
            continue
        if path is None:
            raise ValueError(f"data.{kind}: the mix gives it a share ({weight:g}) but no manifest is set")
        loaded = LOADERS[kind](path)
        log.info(loaded.summary())
        sources.append(loaded.rows)
        skipped.update({f"{kind}_{reason}": n for reason, n in loaded.skipped.items()})
    return sources, skipped
