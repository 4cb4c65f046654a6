"""MS-COCO zero-shot FID of a conditioner (aligned MLLM or SD's own CLIP text encoder) driving
the frozen SD decoder, plus a sample grid for people to look at."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid, save_image

from experiments.coco import load_captions, sample_captions
from experiments.config import FidConfig
from experiments.fid import compute_fid, generate_images, prepare_reference
from models import ImageDecoder

GRID_IMAGES = 16


class Conditioner(Protocol):
    def __call__(self, prompts: list[str]) -> torch.Tensor: ...

    def null(self, batch_size: int) -> torch.Tensor: ...


@torch.no_grad()
def evaluate_fid(
    conditioner: Conditioner, decoder: ImageDecoder, fid: FidConfig, *,
    seed: int, run_dir: Path, cache_dir: Path, progress: bool,
) -> dict[str, float]:
    started = time.perf_counter()
    captions = sample_captions(load_captions(fid.captions), fid.num_captions, fid.caption_seed)

    def generate(prompts: list[str], batch_index: int) -> list[Image.Image]:
        # One generator per batch: a resumed evaluation regenerates exactly the missing batches.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + batch_index)
        return decoder.sample(
            conditioner(prompts), conditioner.null(len(prompts)), guidance=fid.guidance,
            steps=fid.steps, sampler=fid.sampler, height=fid.generate_size,
            width=fid.generate_size, generator=generator,
        )

    # Under torch.distributed every rank makes its share of the images into the same folder;
    # rank 0 alone scores them once all are written.
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    generated = generate_images(
        generate, [c.caption for c in captions], run_dir / "fid" / "generated", fid.batch_size,
        fid.resolution, progress, shard=(rank, world),
    )
    if world > 1:
        dist.barrier()
    if rank != 0:
        return {}
    reference = prepare_reference(fid, cache_dir)
    score = compute_fid(generated, reference, fid, cache_dir)
    save_grid(generated, run_dir / "samples" / "grid.png")
    return {
        "eval/fid": score,
        "eval/num_images": float(len(captions)),
        "eval/seconds": time.perf_counter() - started,
    }


def save_grid(image_dir: Path, path: Path) -> Path:
    files = sorted(image_dir.glob("*.png"))[:GRID_IMAGES]
    images = []
    for file in files:
        with Image.open(file) as image:
            images.append(pil_to_tensor(image.convert("RGB")))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.stack(images).float() / 255.0, nrow=4, padding=2), path)
    return path
