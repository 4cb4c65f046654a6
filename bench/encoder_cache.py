"""(c) The stage-2 encoder cache: epoch 2 of the tiny aligner-12 run with the cache against
without it (full training steps, same batches), and a second run reading a warm disk cache (what
another Table 2 row on the same encoders sees). Times are wall clock and process CPU time (the
latter barely moved by other processes on a shared box), for whole steps and for the batch
fetch alone (encoders or cache). At tiny size the encoders are a small share of a step, so the
whole-step gain is small; the batch-fetch figure is what grows with the encoders' size.

    python -m bench.encoder_cache [--captions 256]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from bench._common import CACHE, TINY_ASSETS, clock, parse_args, report, tiny_config
from experiments.config import OptimConfig
from experiments.data.captions import load_captions
from experiments.data.items import CaptionItem
from experiments.data.shards import open_shards
from experiments.data.stream import StepRows
from experiments.recipes.align import AlignObjective
from experiments.training.loop import build_optimizer


def epoch_seconds(objective: AlignObjective, optim: OptimConfig, epochs: int) -> list[dict[str, float]]:
    """Per epoch: wall and CPU seconds of the training steps, and CPU seconds of the batch fetch."""
    steps = math.ceil(objective.rows_in_data["train"] / objective.config.train.batch_size)
    optimizer, _ = build_optimizer(list(objective.trainable.parameters()), optim, steps * epochs)
    times = []
    for epoch in range(epochs):
        wall, cpu, fetch = clock(), time.process_time(), 0.0
        for step in range(epoch * steps, (epoch + 1) * steps):
            fetch -= time.process_time()
            batch = objective.batch(step)
            fetch += time.process_time()
            objective.loss(batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        times.append({"wall_s": clock() - wall, "cpu_s": time.process_time() - cpu, "fetch_cpu_s": fetch})
    return times


def build(cached: bool, captions: int, cache_dir: Path | None) -> AlignObjective:
    config = tiny_config(cache_encoder_outputs=cached)
    objective = AlignObjective(config, cache_dir=cache_dir)
    # A slice of the caption set keeps epochs short; the batch size stays the tier's.
    texts = [c.caption for c in load_captions(TINY_ASSETS / "coco" / "captions_train.json")[:captions]]
    manifest = CACHE / "bench-encoder-cache" / f"captions-{captions}.jsonl"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(json.dumps({"caption": text}) + "\n" for text in texts))
    rows = StepRows(open_shards(str(manifest)), CaptionItem(objective.target.tokenizer, 75),
                    config.train.batch_size, seed=0)
    objective.stream_steps(rows)
    return objective


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=int, default=256, help="captions per epoch")
    args = parse_args(parser)
    load = os.getloadavg()
    optim = tiny_config().train.optim

    torch.manual_seed(0)
    uncached = epoch_seconds(build(False, args.captions, None), optim, 2)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        cached = epoch_seconds(build(True, args.captions, Path(tmp)), optim, 2)
        torch.manual_seed(0)
        warm_disk = epoch_seconds(build(True, args.captions, Path(tmp)), optim, 1)
    def rounded(epoch: dict[str, float]) -> dict[str, float]:
        return {key: round(value, 3) for key, value in epoch.items()}

    def speedup(key: str, base: dict[str, float], new: dict[str, float]) -> float:
        return round(base[key] / new[key], 2)

    report("encoder_cache", {
        "captions_per_epoch": args.captions,
        "epoch2_without_cache": rounded(uncached[1]),
        "epoch2_with_cache": rounded(cached[1]),
        "speedup_epoch2_cpu": speedup("cpu_s", uncached[1], cached[1]),
        "speedup_epoch2_wall": speedup("wall_s", uncached[1], cached[1]),
        "speedup_epoch2_batch_fetch_cpu": speedup("fetch_cpu_s", uncached[1], cached[1]),
        "epoch1_without_cache": rounded(uncached[0]),
        "epoch1_filling_cache": rounded(cached[0]),
        "epoch1_new_run_from_disk_cache": rounded(warm_disk[0]),
        "speedup_new_run_batch_fetch_cpu": speedup("fetch_cpu_s", uncached[0], warm_disk[0]),
    }, load)


if __name__ == "__main__":
    main()
