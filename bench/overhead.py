"""(a) Harness overhead: the steady-state time per training step inside the harness loop
(experiments.training.loop.train logging to MLflow on SQLite, checkpointing at the tier's interval,
tqdm progress) against the same steps in a bare PyTorch loop, alternated in one process.

The objective is the tiny tier's aligner-12 run with its encoder cache warmed up front, so both
loops run identical, cheap steps and the harness's own costs show as plainly as they can. The
held-out evaluation is work the run asks for, not overhead: it runs once, after the last step,
outside the measured window. Start-up (MLflow run, optimiser, checkpoint probe) and the finish
(last log, eval, checkpoint) are reported on their own.

On a shared machine other processes' bursts move single runs by +-20%, so the pairs are
repeated and the median ratio reported, next to the same ratio in process CPU time, which other
processes barely touch (it misses only time spent waiting on disk).

    python -m bench.overhead [--steps 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from mlflow import MlflowClient

from bench._common import clock, parse_args, report, tiny_spec
from experiments.config import TrainConfig
from experiments.data.batches import WHOLE, Part
from experiments.recipes.align import AlignObjective
from experiments.training.loop import build_optimizer, train
from repro.tracking.mlflow_runs import MlflowTracker, ensure_experiment, open_run

Stamp = tuple[float, float]  # wall clock, process CPU time


def stamp() -> Stamp:
    return clock(), time.process_time()


def stamp_batches(objective: AlignObjective) -> tuple[list[Stamp], Callable[[], None]]:
    """Records when each step asks for its batch; returns the stamps and an undo."""
    stamps: list[Stamp] = []
    original = objective.batch

    def batch(step: int, part: Part = WHOLE):
        stamps.append(stamp())
        return original(step, part)

    setattr(objective, "batch", batch)  # mypy refuses a plain assignment over a method
    return stamps, lambda: setattr(objective, "batch", original)


def timings(started: Stamp, stamps: list[Stamp], finished: Stamp, warmup: int) -> dict[str, float]:
    def per_step(k: int) -> float:
        return (stamps[-1][k] - stamps[warmup][k]) / (len(stamps) - 1 - warmup)

    step = per_step(0)
    return {"step_s": step, "step_cpu_s": per_step(1), "startup_s": stamps[0][0] - started[0],
            "finish_s": finished[0] - stamps[-1][0] - step}


def harness(objective: AlignObjective, spec, store: Path, warmup: int) -> dict[str, float]:
    started = stamp()
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, "bench", store / "mlartifacts")
    parent = client.create_run(experiment_id).info.run_id
    run_id = open_run(client, experiment_id, parent, spec, store)
    run_dir = Path(tempfile.mkdtemp(dir=store))
    stamps, undo = stamp_batches(objective)
    train(objective, spec.config.train, run_dir, MlflowTracker(client, run_id), progress=True)
    finished = stamp()
    undo()
    client.set_terminated(run_id)
    return timings(started, stamps, finished, warmup)


def bare(objective: AlignObjective, cfg: TrainConfig, warmup: int) -> dict[str, float]:
    started = stamp()
    params = [p for p in objective.trainable.parameters() if p.requires_grad]
    optimizer, schedule = build_optimizer(params, cfg.optim, cfg.steps)
    objective.trainable.train()
    stamps, undo = stamp_batches(objective)
    for step in range(cfg.steps):
        batch = objective.batch(step)
        with torch.autocast(objective.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss = objective.loss(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    finished = stamp()
    undo()
    return timings(started, stamps, finished, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="the tiny tier's step count")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the steady state")
    parser.add_argument("--repeats", type=int, default=5, help="harness/bare pairs, alternated")
    args = parse_args(parser)
    load = os.getloadavg()

    started = time.perf_counter()
    spec = tiny_spec(steps=args.steps, eval_every=args.steps, cache_encoder_outputs=True)
    objective = AlignObjective(spec.config)
    for step in range(args.steps):
        objective.batch(step)  # every caption of the run encoded once, before either loop
    objective.heldout()
    initial = copy.deepcopy(objective.trainable.state_dict())
    build_s = time.perf_counter() - started

    runs: dict[str, list[dict[str, float]]] = {"harness": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            objective.trainable.load_state_dict(initial)
            runs["harness"].append(harness(objective, spec, Path(tmp), args.warmup))
            objective.trainable.load_state_dict(initial)
            runs["bare"].append(bare(objective, spec.config.train, args.warmup))

    def median(loop: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[loop])

    def ratios(key: str) -> list[float]:
        return [round(h[key] / b[key], 4) for h, b in zip(runs["harness"], runs["bare"])]

    cfg = spec.config.train
    report("harness_overhead", {
        "steps": args.steps, "log_every": cfg.log_every, "checkpoint_every": cfg.checkpoint_every,
        "harness_step_ms": round(1e3 * median("harness", "step_s"), 3),
        "bare_step_ms": round(1e3 * median("bare", "step_s"), 3),
        "ratio": statistics.median(ratios("step_s")),
        "ratio_per_repeat": ratios("step_s"),
        "harness_step_cpu_ms": round(1e3 * median("harness", "step_cpu_s"), 3),
        "bare_step_cpu_ms": round(1e3 * median("bare", "step_cpu_s"), 3),
        "ratio_cpu_time": statistics.median(ratios("step_cpu_s")),
        "ratio_cpu_time_per_repeat": ratios("step_cpu_s"),
        "harness_startup_s": round(median("harness", "startup_s"), 3),
        "bare_startup_s": round(median("bare", "startup_s"), 3),
        "harness_finish_s": round(median("harness", "finish_s"), 3),
        "objective_build_and_cache_warmup_s": round(build_s, 3),
    }, load)


if __name__ == "__main__":
    main()
