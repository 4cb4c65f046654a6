"""Stage 2, image decoder aligning (paper, Training): AlignerNet learns to map the frozen MLLM's
caption encodings s onto the frozen CLIP text encodings t, with L_mse = ||t - M(s)||^2 and
L_rec = ||s - N(M(s))||^2. Captions only, no images."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from experiments.config import RunConfig
from experiments.data.batches import WHOLE, Part
from experiments.data.items import CaptionItem
from experiments.data.shards import open_shards
from experiments.data.stream import StepRows, first_rows
from experiments.recipes.modules import aligner_for, evaluating, frozen, frozen_mllm, model_sizes, pick_device
from experiments.recipes.registry import Trains
from experiments.training.encoder_cache import EncoderCache, checkpoint_fingerprint
from experiments.training.flops import align_step, nominal_step_flops
from experiments.training.streaming_objective import StreamingObjective
from experiments.training.tracker import DataInput
from models import Aligner, ClipTextTarget, KosmosGConditioner, alignment_losses

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # source, mask, target


def build(config: RunConfig, cache_dir: Path | None) -> Trains:
    return Trains(AlignObjective(config, cache_dir))


class AlignObjective(StreamingObjective):
    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        """cache_dir: where train.cache_encoder_outputs keeps encoder outputs on disk, shared by
        every run on the same checkpoints; without it they are kept in memory only."""
        super().__init__(config, cache_dir)
        self.device = pick_device()
        self.aligner_config = config.aligner
        train = config.train
        self.mllm = frozen_mllm(config.models.mllm, train, self.device)
        self.target = frozen(ClipTextTarget.from_pretrained(config.models.stable_diffusion), self.device)
        self.trainable: Aligner = aligner_for(config.aligner, self.mllm, self.target).to(self.device)
        self.append_eos = train.append_eos
        self.conditioner = KosmosGConditioner(self.mllm, self.trainable, self.append_eos)
        self.rec_weight = train.rec_weight
        self.rec_mask_padding = train.rec_mask_padding
        data = config.data
        captions = CaptionItem(self.target.tokenizer, train.max_caption_tokens,
                               self.mllm.tokenizer, train.max_caption_sp_tokens)
        shards = open_shards(data.train, text_column=data.text_column, cache_dir=cache_dir)
        self.stream_steps(StepRows(shards, captions, train.batch_size, config.seed))
        heldout = open_shards(data.heldout, text_column=data.text_column, cache_dir=cache_dir)
        self.heldout_texts, _ = first_rows(heldout, captions, data.heldout_size)
        self.eval_batch_size = config.train.batch_size
        self.cache: EncoderCache | None = None
        if config.train.cache_encoder_outputs:
            folder = None
            if cache_dir is not None:
                sd = Path(config.models.stable_diffusion)
                encoders: list[Path | str] = [config.models.mllm, sd / "text_encoder", sd / "tokenizer"]
                tokenized = f"append_eos={self.append_eos}"
                folder = Path(cache_dir) / "encoder-outputs" / checkpoint_fingerprint(encoders, tokenized)
            self.cache = EncoderCache(self.encode, self.device, folder)
        self.sizes = model_sizes(self.mllm, self.target)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen encoders: the MLLM's states at every position, padding included (at a pad, the
        pad token's state: (code) L_rec's target there), their mask, the CLIP targets, and each
        row's pad state, read from one pad column past the batch's length: without dropout (the
        cache's case) every padded position of a row holds that same state, so the cache can
        re-pad a row to any length with it."""
        inputs = self.mllm.tokenize(captions, append_eos=self.append_eos, min_padding=1)
        states, mask = self.mllm(inputs.to(self.device))
        return states[:, :-1], mask[:, :-1], self.target(captions), states[:, -1]

    def _encoded(self, captions: list[str]) -> Batch:
        source, mask, target, _ = self.cache(captions) if self.cache is not None else self.encode(captions)
        return source, mask, target

    def items(self, step: int, part: Part = WHOLE) -> list[str]:
        captions = super().items(step, part)
        prob = self.config.train.empty_caption_prob
        if prob == 0:  # no draws: runs without it keep the captions and random state they had
            return captions
        first, _ = part.bounds(self.config.train.batch_size)
        # Drawn per place in the global batch, so a resumed run and every split of the batch over
        # ranks or micro-batches empty the same captions.
        return ["" if random.Random(f"empty:{self.config.seed}:{step}:{first + i}").random() < prob
                else caption for i, caption in enumerate(captions)]

    def collate(self, items: list[str]) -> Batch:
        return self._encoded(items)

    def data_inputs(self) -> list[DataInput]:
        heldout = DataInput("data.heldout", "heldout", self.config.data.heldout, len(self.heldout_texts))
        return [*self.training_inputs(), heldout]

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
        losses = alignment_losses(
            self.trainable, source, mask, target, rec_mask_padding=self.rec_mask_padding
        )
        total = losses["mse_loss"] + self.rec_weight * losses["rec_loss"]
        return {"loss": total, "mse_loss": losses["mse_loss"], "rec_loss": losses["rec_loss"]}

    @torch.no_grad()
    def heldout(self) -> dict[str, float]:
        sums = {"mse_loss": 0.0, "rec_loss": 0.0}
        for start in range(0, len(self.heldout_texts), self.eval_batch_size):
            chunk = self.heldout_texts[start:start + self.eval_batch_size]
            # Without the MLLM's dropout: the same captions give the same loss at every eval.
            with evaluating(self.mllm):
                batch = self._encoded(chunk)
            losses = self.loss(batch)
            for name in sums:
                sums[name] += losses[name].item() * len(chunk)
        return {name: total / len(self.heldout_texts) for name, total in sums.items()}
