"""Trains the mini CLIP contrastively (CLIP's symmetric InfoNCE, CLIPModel's own loss) on a mini
world's training images, each step pairing distinct images with one of their captions. Seeded:
the same seed on the same machine gives the same weights. The loss goes out as JSON lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import CLIPProcessor

from experiments.mini.clip import RECORD_FILE, MiniClipConfig, save_untrained_clip
from experiments.mini.labelled_images import labelled_images
from experiments.mini.provenance import Provenance, write_record
from experiments.mini.training_loop import LossLog, MiniTraining, optimise, print_line
from experiments.mini.version import WORLD_VERSION


@dataclass(frozen=True)
class ClipTraining(MiniTraining):
    steps: int = 2000  # the side needs it: own caption over the side-swapped 0.575 at 500, 0.995 at 2000
    batch_size: int = 128  # distinct images per step: the contrastive negatives
    config: MiniClipConfig = MiniClipConfig()


def train_clip(
    captions_file: Path,
    images: Path,
    out: Path,
    training: ClipTraining,
    command: str,
    log: LossLog = print_line,
) -> list[float]:
    """Writes the trained mini CLIP to `out`; returns every step's loss."""
    labelled = [item for item in labelled_images(captions_file, images) if item.captions]
    out = Path(out)
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's global RNG
        torch.manual_seed(training.seed)
        model = save_untrained_clip(out, training.config)
        processor = CLIPProcessor.from_pretrained(out, local_files_only=True)
        pixels = processor(images=[item.rgb() for item in labelled], return_tensors="pt").pixel_values
        texts = [text for item in labelled for text in item.captions]
        tokens = processor(text=texts, return_tensors="pt", padding=True)
        # Each image's captions are rows first[i] .. first[i] + count[i] - 1 of `tokens`.
        count = torch.tensor([len(item.captions) for item in labelled])
        first = torch.cumsum(count, 0) - count
        batch = min(training.batch_size, len(labelled))
        draws = torch.Generator().manual_seed(training.seed)

        def step_loss() -> torch.Tensor:
            chosen = torch.randperm(len(labelled), generator=draws)[:batch]
            # One caption of each chosen image, drawn among its own.
            text = first[chosen] + (torch.rand(batch, generator=draws) * count[chosen]).long()
            return model(
                input_ids=tokens.input_ids[text],
                attention_mask=tokens.attention_mask[text],
                pixel_values=pixels[chosen],
                return_loss=True,
            ).loss

        model.train()
        losses = optimise(
            model.parameters(), step_loss, training.steps, training.learning_rate, training.log_every, log
        )
    model.eval().save_pretrained(out)
    write_record(out / RECORD_FILE, Provenance(command, training.seed, WORLD_VERSION, training))
    return losses
