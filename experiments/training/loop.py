"""The training loop every stage shares, readable top to bottom.

A recipe supplies an `Objective` (what to train, where batches come from, what the loss is);
this loop owns the optimiser, the schedule, mixed precision, divergence detection, periodic
logging (losses, throughput, peak memory, MFU), held-out evaluation, resumable checkpoints and
data parallelism: under torch.distributed each rank computes its parts of every step's global
batch (distributed.py) and DDP averages the gradients (or FSDP, which also shards the trainable:
fsdp.py), so the run computes the same steps whatever the world size.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from experiments.config import OptimConfig, TrainConfig
from experiments.training import preemption
from experiments.training.checkpoints import CheckpointStore
from experiments.training.distributed import Replicated, World, rank_parts
from experiments.training.flops import peak_flops
from experiments.training.objective import Objective
from experiments.training.precision import autocast, enable_tf32
from experiments.training.progress import Progress
from experiments.training.tracker import Tracker

if TYPE_CHECKING:
    from experiments.training.fsdp import Sharded


@dataclass(frozen=True)
class TrainOutcome:
    steps: int
    train_seconds: float  # wall time spent in training steps, summed over resumes
    failure: str | None = None  # set when the loss diverged


def build_optimizer(
    params: list[nn.Parameter], optim: OptimConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with linear warm-up then linear decay to 0 (paper, Training). Fused: one kernel per
    step on a CPU as on a GPU, where the per-tensor loop costs several ops per parameter."""
    optimizer = torch.optim.AdamW(
        params, lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay, fused=True,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, optim.warmup_steps, total_steps)
    return optimizer, schedule


def train(
    objective: Objective, cfg: TrainConfig, run_dir: Path, tracker: Tracker, *, progress: bool
) -> TrainOutcome:
    world = World.current()
    parts = rank_parts(cfg.batch_size, cfg.micro_batch_size, world)
    base_seed = torch.initial_seed()  # the recipe's seed, before a checkpoint's state replaces it
    # Sharding replaces the trainable's parameters by this rank's shards: the optimiser comes after.
    if world.size > 1 and cfg.parallelism == "fsdp":
        from experiments.training.fsdp import (
            Sharded,  # torch's FSDP takes seconds to import; few runs shard
        )

        parallel: Sharded | Replicated = Sharded(objective, world, cfg.precision)
    else:
        parallel = Replicated(objective, world)
    params = [p for p in objective.trainable.parameters() if p.requires_grad]
    optimizer, schedule = build_optimizer(params, cfg.optim, cfg.steps)
    scaler = torch.amp.GradScaler(objective.device.type, enabled=cfg.precision == "fp16")
    peak = None
    if objective.device.type == "cuda":
        enable_tf32()
        peak = peak_flops(torch.cuda.get_device_name(objective.device), cfg.precision)
    checkpoints = CheckpointStore(run_dir / "checkpoints", world=world, asynchronous=cfg.async_checkpoint)

    start, train_seconds = 0, 0.0
    resumed = checkpoints.load_latest(lambda state: parallel.load(state, optimizer))
    if resumed is not None:
        schedule.load_state_dict(resumed["schedule"])
        scaler.load_state_dict(resumed["scaler"])
        start, train_seconds = resumed["step"], resumed["train_seconds"]

    def save(step: int) -> None:
        # Every rank takes part: FSDP's write their shards, DDP's wait for rank 0's whole file.
        checkpoints.save(step, {
            **parallel.state(optimizer), "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
            "train_seconds": train_seconds,
        })

    def save_and_wait(step: int) -> None:
        save(step)
        checkpoints.wait()  # a preempted or finished run ends with its checkpoint in place

    loss_of = torch.compile(parallel.loss) if cfg.compile else parallel.loss
    # Fixed for the run (its launch), so params rather than one-point metric series.
    tracker.log_params({
        "train/world_size": world.size,
        "train/micro_batch_size": cfg.batch_size // (world.size * len(parts)),
        "train/grad_accumulation": len(parts),
    })
    objective.trainable.train()
    bar = Progress("train", cfg.steps, initial=start, unit="step", bar=progress, silent=world.rank != 0)
    # A crash keeps the checkpoint being written when it came (settling).
    with preemption.training(), objective.prefetching(start, parts), checkpoints.settling():
        for step in range(start, cfg.steps):
            tick = time.perf_counter()
            done = step + 1
            logged = done % cfg.log_every == 0 or done == cfg.steps
            world.seed_step(base_seed, step)
            sums: dict[str, torch.Tensor] = {}
            tokens: int | None = 0
            flops: int | None = 0
            for k, part in enumerate(parts):
                # The frozen encoders that make the batch (stage 2's MLLM and CLIP) run in the
                # training precision too: in fp32 they would cost several times the aligner's step.
                with autocast(objective.device, cfg.precision):
                    batch = objective.batch(step, part)
                with parallel.syncing(k == len(parts) - 1):
                    with autocast(objective.device, cfg.precision):
                        losses = loss_of(batch)
                    # Each micro-batch weighs 1/A and the ranks are averaged: the gradient is
                    # the global batch's, as a single process would compute it.
                    scaler.scale(losses["loss"] / len(parts)).backward()
                for name, value in losses.items():
                    if value.dim() == 0:
                        sums[name] = sums.get(name, 0) + value.detach() / len(parts)
                if logged:
                    tokens = _add(tokens, objective.tokens(batch))
                    flops = _add(flops, objective.flops(batch))
            # Averaged over the ranks, so every rank takes the same decision on divergence.
            step_losses = world.mean(sums)
            value = step_losses["loss"]
            if not math.isfinite(value) or value > cfg.divergence_threshold:
                bar.close()
                checkpoints.wait()
                parallel.unshard()
                reason = f"diverged at step {done}: loss {value:.4g}"
                return TrainOutcome(steps=step, train_seconds=train_seconds, failure=reason)
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step_seconds = time.perf_counter() - tick
            train_seconds += step_seconds
            bar.update(1)

            if logged:
                metrics = {f"train/{name}": loss for name, loss in step_losses.items()}
                metrics.update({
                    "train/lr": float(schedule.get_last_lr()[0]),
                    "train/grad_norm": grad_norm.item(),
                    "train/step_seconds": step_seconds,
                    "train/samples_per_s": cfg.batch_size / step_seconds,
                    **_peak_memory(objective.device),
                    **{f"data/{reason}": float(n) for reason, n in objective.data_counts().items()},
                })
                if tokens is not None:
                    metrics["train/tokens_per_s"] = world.total(tokens) / step_seconds
                if flops is not None and peak is not None:
                    metrics["train/mfu"] = world.total(flops) / step_seconds / (peak * world.size)
                tracker.log_metrics(metrics, step=done)
                bar.note(loss=f"{value:.4f}")
            if done % cfg.eval_every == 0 or done == cfg.steps:
                objective.trainable.eval()
                with autocast(objective.device, cfg.precision):
                    heldout = parallel.heldout()
                tracker.log_metrics({f"heldout/{k}": v for k, v in heldout.items()}, step=done)
                objective.trainable.train()
            if done == cfg.steps:
                save_and_wait(done)
            elif done % cfg.checkpoint_every == 0:
                save(done)
            checkpoints.publish_written()
            # A preemption warning received during the step is acted on here, with a fresh checkpoint.
            preemption.proceed(lambda: save_and_wait(done), world)
    bar.close()
    parallel.unshard()  # evaluation runs the trainable on one rank at a time, without collectives
    objective.trainable.eval()
    return TrainOutcome(steps=cfg.steps, train_seconds=train_seconds)


def _add(total: int | None, count: int | None) -> int | None:
    """Sums a per-micro-batch count; None (not counted by the objective) stays None."""
    return None if total is None or count is None else total + count


def _peak_memory(device: torch.device) -> dict[str, float]:
    """High-water marks since the process started: the process's resident set (Linux reports
    ru_maxrss in KiB) and, on a GPU, what the caching allocator handed out."""
    peaks = {"train/peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peaks["train/peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peaks
