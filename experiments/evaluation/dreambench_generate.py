"""DreamBench's generated images: `images_per_prompt` per (subject, template), one PNG each at
<folder>/<subject>/<template index>_<k>.png.

Every image has its own generator, seeded from (seed, subject, template, k): an image is the same
whichever batch it lands in, so a resumed evaluation makes only the files that are missing, and
ranks splitting the work make the set a single process would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from experiments.config import DreamBenchConfig
from experiments.data.dreambench_layout import BenchmarkPrompt, Subject, open_photo
from experiments.evaluation.image_files import intact, save_png
from experiments.training.precision import sampling_autocast
from experiments.training.progress import Progress
from models import ImageDecoder


class SubjectConditioner(Protocol):
    """Interleaved prompts, the k-th "<i>" of prompt b being images[b][k] -> (B, 77, C)."""

    def __call__(self, prompts: list[str], images: list[list[Image.Image]]) -> torch.Tensor: ...

    def null(self, batch_size: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class GeneratedImage:
    prompt: BenchmarkPrompt
    k: int  # which of the prompt's images_per_prompt images
    path: Path


def planned_images(
    prompts: Sequence[BenchmarkPrompt], images_per_prompt: int, folder: Path
) -> list[GeneratedImage]:
    return [
        GeneratedImage(p, k, Path(folder) / p.subject / f"{p.template_index:02d}_{k}.png")
        for p in prompts
        for k in range(images_per_prompt)
    ]


def image_seed(seed: int, image: GeneratedImage) -> int:
    """A 63-bit seed that depends on the image's identity only, not on its position in a run."""
    key = f"{seed}/{image.prompt.subject}/{image.prompt.template_index}/{image.k}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


@torch.no_grad()
def generate_dreambench_images(
    conditioner: SubjectConditioner,
    decoder: ImageDecoder,
    cfg: DreamBenchConfig,
    subjects: Sequence[Subject],
    prompts: Sequence[BenchmarkPrompt],
    *,
    seed: int,
    folder: Path,
    progress: bool,
    shard: tuple[int, int] = (0, 1),
) -> list[GeneratedImage]:
    """Makes the missing images of this shard's prompts (every n-th prompt, from the i-th, for
    shard = (i, n)) and returns every planned image of all shards."""
    shard_index, shard_count = shard
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard {shard_index} of {shard_count} does not exist")
    everything = planned_images(prompts, cfg.images_per_prompt, folder)
    mine = planned_images(prompts[shard_index::shard_count], cfg.images_per_prompt, folder)
    pending = [image for image in mine if not intact(image.path)]
    input_photos = {s.name: s.input_photo for s in subjects}
    per_batch = cfg.batch_size * cfg.images_per_prompt
    done = len(mine) - len(pending)
    with Progress("dreambench", len(mine), initial=done, unit="image", bar=progress) as bar:
        for start in range(0, len(pending), per_batch):
            batch = pending[start:start + per_batch]
            for image, pixels in zip(batch, _sample(conditioner, decoder, cfg, batch, input_photos, seed)):
                image.path.parent.mkdir(parents=True, exist_ok=True)
                save_png(pixels, image.path)
            bar.update(len(batch))
    return everything


def _sample(
    conditioner: SubjectConditioner,
    decoder: ImageDecoder,
    cfg: DreamBenchConfig,
    batch: list[GeneratedImage],
    input_photos: dict[str, Path],
    seed: int,
) -> list[Image.Image]:
    # The MLLM encodes each distinct prompt once; its images_per_prompt copies share the condition.
    row_of = {prompt: row for row, prompt in enumerate(dict.fromkeys(image.prompt for image in batch))}
    distinct = list(row_of)
    photos = {name: open_photo(input_photos[name]) for name in {p.subject for p in distinct}}
    generators = [torch.Generator().manual_seed(image_seed(seed, image)) for image in batch]
    with sampling_autocast(cfg.precision):
        conditions = conditioner([p.input_prompt for p in distinct], [[photos[p.subject]] for p in distinct])
        rows = torch.tensor([row_of[image.prompt] for image in batch], device=conditions.device)
        images = decoder.sample(
            conditions.index_select(0, rows), conditioner.null(len(batch)), guidance=cfg.guidance,
            steps=cfg.steps, sampler=cfg.sampler, height=cfg.generate_size, width=cfg.generate_size,
            generator=generators,
        )
    if len(images) != len(batch):
        raise ValueError(f"the decoder gave {len(images)} images for a batch of {len(batch)}")
    return images

