"""(b) Stage-2 step throughput: captions/s and tokens/s of the real AlignObjective step (frozen
Kosmos-2 + CLIP forwards, AlignerNet forward and backward, AdamW), and MFU on a known GPU.

Tiny tier on whatever is here by default; --full builds the paper's 12-layer AlignerNet on
random full-size Kosmos-2 / CLIP checkpoints (saved once under .cache/full-fixtures, ~5.2 GB in fp16)
and is meant for a GPU. The encoder cache is off: every step pays for the frozen encoders, as
at paper scale.

    python -m bench.stage2 [--steps 20]
    python -m bench.stage2 --full --batch-size 128 --precision bf16 [--compile]
"""

from __future__ import annotations

import argparse
import os
from typing import get_args

import torch

from bench._common import clock, full_config, parse_args, report, tiny_config
from experiments.config import Precision
from experiments.recipes.align import AlignObjective
from experiments.training.flops import peak_flops
from experiments.training.loop import build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="paper-size models, random weights")
    parser.add_argument("--steps", type=int, default=20, help="measured steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the tier's")
    parser.add_argument("--precision", default=None, choices=get_args(Precision))
    parser.add_argument("--compile", action="store_true")
    args = parse_args(parser)
    load = os.getloadavg()

    total = args.warmup + args.steps
    overrides = {"steps": total, "compile": args.compile, "cache_encoder_outputs": False}
    if args.full:
        config = full_config(args.batch_size or 128, args.precision or "bf16", **overrides)
    else:
        changes = {"batch_size": args.batch_size, "precision": args.precision}
        config = tiny_config(**overrides, **{k: v for k, v in changes.items() if v is not None})
    cfg = config.train
    objective = AlignObjective(config)
    params = [p for p in objective.trainable.parameters() if p.requires_grad]
    optimizer, schedule = build_optimizer(params, cfg.optim, total)
    loss_of = torch.compile(objective.loss) if cfg.compile else objective.loss
    objective.trainable.train()

    captions = tokens = flop = 0
    for step in range(total):
        if step == args.warmup:
            started = clock()
            captions = tokens = flop = 0
        batch = objective.batch(step)
        with torch.autocast(objective.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss = loss_of(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        captions += batch[0].shape[0]
        tokens += objective.tokens(batch)
        flop += objective.flops(batch)
    seconds = clock() - started

    figures = {
        "size": "full" if args.full else "tiny", "aligner_layers": config.aligner.layers,
        "batch_size": cfg.batch_size, "precision": cfg.precision, "compile": cfg.compile,
        "steps": args.steps, "step_ms": round(1e3 * seconds / args.steps, 2),
        "captions_per_s": round(captions / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
        "model_tflops_per_s": round(flop / seconds / 1e12, 4),
    }
    if objective.device.type == "cuda":
        peak = peak_flops(torch.cuda.get_device_name(), cfg.precision)
        figures["mfu"] = None if peak is None else round(flop / seconds / peak, 4)
        figures["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report("stage2_throughput", figures, load)


if __name__ == "__main__":
    main()
