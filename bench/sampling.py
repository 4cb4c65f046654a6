"""(e) Sampling throughput for FID: images/s of the frozen SD decoder with classifier-free
guidance (two U-Net passes per step), at the tier's FID settings (sampler, steps, size, batch).

Tiny tier by default; --full uses SD v1.5's real U-Net and VAE with random weights (saved once
under .cache/full-fixtures) at 512 px and the protocol's 250 DDIM steps, in fp16 on a GPU.

    python -m bench.sampling [--batches 2]
    python -m bench.sampling --full [--steps 250] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import torch

from bench._common import (
    clock,
    full_random_checkpoints,
    parse_args,
    report,
    tiny_config,
)
from experiments.config import FidConfig
from experiments.recipes.baseline import ClipConditioner
from experiments.recipes.modules import frozen, pick_device
from models import ClipTextTarget, ImageDecoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="SD v1.5 sizes, random weights")
    parser.add_argument("--batches", type=int, default=2, help="measured batches (after one warm-up)")
    parser.add_argument("--steps", type=int, default=None, help="default: the tier's fid.steps")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the tier's fid.batch_size")
    args = parse_args(parser)
    load = os.getloadavg()

    device = pick_device()
    tiny = tiny_config()
    fid, sd, dtype = tiny.fid, tiny.models.stable_diffusion, None
    if args.full:
        fid = FidConfig(captions=fid.captions, images=fid.images)  # the paper's protocol
        sd, dtype = full_random_checkpoints()[1], torch.float16 if device.type == "cuda" else None
    fid = replace(fid, steps=args.steps or fid.steps, batch_size=args.batch_size or fid.batch_size)
    decoder = frozen(ImageDecoder.from_pretrained(sd, dtype=dtype), device)
    conditioner = ClipConditioner(frozen(ClipTextTarget.from_pretrained(sd), device))
    prompts = ["a photo of a dog riding a bicycle"] * fid.batch_size

    def batch(index: int) -> None:
        decoder.sample(conditioner(prompts), conditioner.null(len(prompts)), guidance=fid.guidance,
                       steps=fid.steps, sampler=fid.sampler, height=fid.generate_size,
                       width=fid.generate_size, generator=torch.Generator().manual_seed(index))

    batch(0)  # warm-up: pipeline construction, allocator, kernels
    started = clock()
    for index in range(1, args.batches + 1):
        batch(index)
    seconds = clock() - started
    images = args.batches * fid.batch_size
    figures = {
        "size": "full" if args.full else "tiny", "sampler": fid.sampler, "steps": fid.steps,
        "guidance": fid.guidance, "resolution": fid.generate_size, "batch_size": fid.batch_size,
        "dtype": str(decoder.unet.dtype), "images": images,
        "images_per_s": round(images / seconds, 3), "seconds_per_image": round(seconds / images, 4),
        "hours_for_30k_fid_images": round(30_000 * seconds / images / 3600, 2),
    }
    if device.type == "cuda":
        figures["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report("sampling_throughput", figures, load)


if __name__ == "__main__":
    main()
