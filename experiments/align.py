"""Stage 2, image decoder aligning (paper, Training): AlignerNet learns to map the frozen MLLM's
caption encodings s onto the frozen CLIP text encodings t, with L_mse = ||t - M(s)||^2 and
L_rec = ||s - N(M(s))||^2. Captions only, no images."""

from __future__ import annotations

import torch

from experiments.components import (
    aligner_for, frozen, heldout_captions, pick_device, training_captions,
)
from experiments.config import RunConfig
from experiments.sampling import EpochShuffler
from models import ClipTextTarget, MLLMEncoder, alignment_losses


class AlignObjective:
    def __init__(self, config: RunConfig) -> None:
        self.device = pick_device()
        self.mllm = frozen(MLLMEncoder.from_pretrained(config.models.mllm), self.device)
        self.target = frozen(ClipTextTarget.from_pretrained(config.models.stable_diffusion), self.device)
        self.trainable = aligner_for(config.aligner, self.mllm, self.target).to(self.device)
        self.rec_weight = config.train.rec_weight
        captions, self.dropped_captions = training_captions(
            config.data, self.target, config.train.max_caption_tokens
        )
        self.sampler = EpochShuffler([c.caption for c in captions], config.train.batch_size, config.seed)
        self.heldout_texts = [c.caption for c in heldout_captions(config.data)]
        self.eval_batch_size = config.train.batch_size

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen encoders: MLLM source states, their mask, CLIP target states."""
        source, mask = self.mllm(self.mllm.tokenize(captions).to(self.device))
        return source, mask, self.target(captions)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encode(self.sampler(step))

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        source, mask, target = batch
        losses = alignment_losses(self.trainable, source, mask, target)
        total = losses["mse_loss"] + self.rec_weight * losses["rec_loss"]
        return {"loss": total, "mse_loss": losses["mse_loss"], "rec_loss": losses["rec_loss"]}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        sums = {"mse_loss": 0.0, "rec_loss": 0.0}
        for start in range(0, len(self.heldout_texts), self.eval_batch_size):
            chunk = self.heldout_texts[start:start + self.eval_batch_size]
            losses = self.loss(self.encode(chunk))
            for name in sums:
                sums[name] += losses[name].item() * len(chunk)
        return {name: total / len(self.heldout_texts) for name, total in sums.items()}
