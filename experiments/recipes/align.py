"""Stage 2, image decoder aligning (paper, Training): AlignerNet learns to map the frozen MLLM's
caption encodings s onto the frozen CLIP text encodings t, with L_mse = ||t - M(s)||^2 and
L_rec = ||s - N(M(s))||^2. Captions only, no images."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import torch

from experiments.config import RunConfig
from experiments.data.batches import WHOLE, Part
from experiments.data.items import CaptionItem
from experiments.data.shards import open_shards
from experiments.data.stream import StepRows, StreamedSteps, first_rows
from experiments.recipes.modules import aligner_for, frozen, model_sizes, pick_device
from experiments.training.encoder_cache import EncoderCache, checkpoint_fingerprint
from experiments.training.flops import align_step, nominal_step_flops
from experiments.training.objective import Objective
from experiments.training.tracking import DataInput
from models import ClipTextTarget, KosmosGConditioner, MLLMEncoder, alignment_losses

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # source, mask, target


class AlignObjective(Objective):
    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        """cache_dir: where train.cache_encoder_outputs keeps encoder outputs on disk, shared by
        every run on the same checkpoints; without it they are kept in memory only."""
        super().__init__(config, cache_dir)
        self.device = pick_device()
        self.aligner_config = config.aligner
        self.mllm = frozen(MLLMEncoder.from_pretrained(config.models.mllm), self.device)
        self.target = frozen(ClipTextTarget.from_pretrained(config.models.stable_diffusion), self.device)
        self.trainable = aligner_for(config.aligner, self.mllm, self.target).to(self.device)
        self.conditioner = KosmosGConditioner(self.mllm, self.trainable)
        self.rec_weight = config.train.rec_weight
        data = config.data
        captions = CaptionItem(self.target.tokenizer, config.train.max_caption_tokens)
        shards = open_shards(data.train, text_column=data.text_column, cache_dir=cache_dir)
        rows = StepRows(shards, captions, config.train.batch_size, config.seed)
        self.steps = StreamedSteps(rows, data, pin_memory=self.device.type == "cuda")
        heldout = open_shards(data.heldout, text_column=data.text_column, cache_dir=cache_dir)
        self.heldout_texts, _ = first_rows(heldout, captions, data.heldout_size)
        self.eval_batch_size = config.train.batch_size
        self.cache: EncoderCache | None = None
        if config.train.cache_encoder_outputs:
            folder = None
            if cache_dir is not None:
                sd = Path(config.models.stable_diffusion)
                encoders = [config.models.mllm, sd / "text_encoder", sd / "tokenizer"]
                folder = Path(cache_dir) / "encoder-outputs" / checkpoint_fingerprint(encoders)
            self.cache = EncoderCache(self.encode, self.device, folder)
        self.sizes = model_sizes(self.mllm, self.target)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> Batch:
        """Frozen encoders: MLLM source states (zero at padding, which every consumer masks, so
        a batch re-assembled from cached rows equals a fresh one), their mask, CLIP targets."""
        source, mask = self.mllm(self.mllm.tokenize(captions).to(self.device))
        return source * mask.unsqueeze(-1), mask, self.target(captions)

    def _encoded(self, captions: list[str]) -> Batch:
        return self.cache(captions) if self.cache is not None else self.encode(captions)

    def prefetching(self, start: int, parts: list[Part]) -> AbstractContextManager[None]:
        return self.steps.streaming(start, parts)

    def batch(self, step: int, part: Part = WHOLE) -> Batch:
        return self._encoded(self.steps.take(step, part))

    def data_counts(self) -> dict[str, int]:
        return self.steps.counts()

    def data_inputs(self) -> list[DataInput]:
        data = self.config.data
        return [DataInput("data.train", "training", data.train, self.steps.rows.stream.order.total),
                DataInput("data.heldout", "heldout", data.heldout, len(self.heldout_texts))]

    def tokens(self, batch: Batch) -> int:
        """Real (unpadded) caption tokens the MLLM encodes."""
        return int(batch[1].sum())

    def flops(self, batch: Batch) -> int:
        """Model FLOPs of one training step. With the cache on, the frozen encoders count as
        free: that holds from the second epoch on, which is what a long run is made of."""
        source, _, target = batch
        encoded = self.cache is None
        return align_step(
            self.aligner_config, batch=source.shape[0], source_len=source.shape[1],
            source_dim=source.shape[2], target_dim=target.shape[2], target_len=target.shape[1],
            mllm=self.sizes.mllm if encoded else None, clip=self.sizes.clip if encoded else None,
        )

    def nominal_step_flops(self) -> int:
        return nominal_step_flops(self.config, self.sizes)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        source, mask, target = batch
        losses = alignment_losses(self.trainable, source, mask, target)
        total = losses["mse_loss"] + self.rec_weight * losses["rec_loss"]
        return {"loss": total, "mse_loss": losses["mse_loss"], "rec_loss": losses["rec_loss"]}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        sums = {"mse_loss": 0.0, "rec_loss": 0.0}
        for start in range(0, len(self.heldout_texts), self.eval_batch_size):
            chunk = self.heldout_texts[start:start + self.eval_batch_size]
            losses = self.loss(self._encoded(chunk))
            for name in sums:
                sums[name] += losses[name].item() * len(chunk)
        return {name: total / len(self.heldout_texts) for name, total in sums.items()}
