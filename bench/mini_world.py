"""(g) The mini world: the time to build it (every format), and the attribute classifier's training
time and held-out attribute accuracy at a given width and step count. Times are wall clock and
process CPU time, the latter barely moved by other processes on a shared box.

    python -m bench.mini_world --steps 3000 --width 16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench._common import parse_args, report
from experiments.mini.attribute_classifier import ClassifierConfig
from experiments.mini.heldout import heldout_accuracy
from experiments.mini.train_classifier import ClassifierTraining, train_classifier
from experiments.mini.world import WorldSizes, build_world


def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=WorldSizes.train_images)
    parser.add_argument("--steps", type=int, default=ClassifierTraining.steps)
    parser.add_argument("--batch-size", type=int, default=ClassifierTraining.batch_size)
    parser.add_argument("--width", type=int, default=ClassifierConfig.width)
    parser.add_argument("--features", type=int, default=ClassifierConfig.features)
    args = parse_args(parser)
    load = os.getloadavg()
    training = ClassifierTraining(
        steps=args.steps, batch_size=args.batch_size, config=ClassifierConfig(args.width, args.features)
    )
    with tempfile.TemporaryDirectory() as tmp:
        world, build = timed(
            lambda: build_world(Path(tmp) / "world", sizes=WorldSizes(train_images=args.train_images))
        )
        (weights, losses), train = timed(
            lambda: train_classifier(
                world.train_captions,
                world.train_images,
                Path(tmp) / "classifier",
                training,
                "bench.mini_world",
                log=lambda line: None,
            )
        )
        accuracy = heldout_accuracy(weights, world.val_captions, world.val_images)
        size_mb = round(weights.stat().st_size / 1e6, 2)
    report(
        "mini_world",
        {
            "world": {
                "train_images": args.train_images,
                "heldout_images": WorldSizes.heldout_images,
                "build": build,
            },
            "classifier": {
                **asdict(training.config),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "weights_mb": size_mb,
                "train": train,
                "first_loss": round(losses[0], 4),
                "last_loss": round(losses[-1], 4),
                "heldout_attribute_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
            },
        },
        load,
    )


if __name__ == "__main__":
    main()
