"""The training loop every stage shares, readable top to bottom.

A recipe supplies an `Objective` (what to train, where batches come from, what the loss is);
this loop owns the optimiser, the schedule, mixed precision, divergence detection, periodic
logging (losses, throughput, peak memory, MFU), held-out evaluation and resumable checkpoints.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from experiments import preemption
from experiments.checkpoint import CheckpointStore
from experiments.config import OptimConfig, TrainConfig
from experiments.flops import peak_flops
from experiments.tracking import Tracker


class Objective(Protocol):
    """May also define `tokens(batch) -> int` (tokens/s is logged then) and
    `flops(batch) -> int`, the model FLOPs of a step (MFU is logged then, on a known GPU)."""

    trainable: nn.Module
    device: torch.device
    conditioner: nn.Module  # what generation uses once trained (models.KosmosGConditioner)

    def batch(self, step: int) -> Any:
        """The batch for a given step: a pure function of the step, so resuming replays nothing."""

    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """Named losses; "loss" is the one optimised."""

    def heldout(self) -> dict[str, float]:
        """Metrics on held-out data, computed without gradients."""


@dataclass(frozen=True)
class TrainOutcome:
    steps: int
    train_seconds: float  # wall time spent in training steps, summed over resumes
    failure: str | None = None  # set when the loss diverged


def build_optimizer(
    params: list[nn.Parameter], optim: OptimConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with linear warm-up then linear decay to 0 (paper, Training)."""
    fused = all(p.is_cuda for p in params)
    optimizer = torch.optim.AdamW(
        params, lr=optim.lr, betas=optim.betas, eps=optim.eps,
        weight_decay=optim.weight_decay, fused=fused or None,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, optim.warmup_steps, total_steps)
    return optimizer, schedule


def train(
    objective: Objective, cfg: TrainConfig, run_dir: Path, tracker: Tracker, *, progress: bool
) -> TrainOutcome:
    params = [p for p in objective.trainable.parameters() if p.requires_grad]
    optimizer, schedule = build_optimizer(params, cfg.optim, cfg.steps)
    use_fp16 = cfg.precision == "fp16"
    scaler = torch.amp.GradScaler(objective.device.type, enabled=use_fp16)
    autocast_dtype = torch.float16 if use_fp16 else torch.bfloat16
    # The whole loss, not only trainable.forward: the aligner's N runs through another method.
    loss_of = torch.compile(objective.loss) if cfg.compile else objective.loss
    count_tokens = getattr(objective, "tokens", None)
    count_flops = getattr(objective, "flops", None)
    peak = None
    if objective.device.type == "cuda":
        peak = peak_flops(torch.cuda.get_device_name(objective.device), cfg.precision)
    checkpoints = CheckpointStore(run_dir / "checkpoints")

    start, train_seconds = 0, 0.0
    resumed = checkpoints.load_latest()
    if resumed is not None:
        objective.trainable.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        schedule.load_state_dict(resumed["schedule"])
        scaler.load_state_dict(resumed["scaler"])
        start, train_seconds = resumed["step"], resumed["train_seconds"]

    def save(step: int) -> None:
        checkpoints.save(step, {
            "model": objective.trainable.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
            "train_seconds": train_seconds,
        })

    objective.trainable.train()
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc="train", unit="step")
    with preemption.training():
        for step in range(start, cfg.steps):
            tick = time.perf_counter()
            batch = objective.batch(step)
            with torch.autocast(objective.device.type, dtype=autocast_dtype, enabled=cfg.precision != "no"):
                losses = loss_of(batch)
            loss = losses["loss"]
            value = loss.item()
            if not math.isfinite(value) or value > cfg.divergence_threshold:
                bar.close()
                reason = f"diverged at step {step + 1}: loss {value:.4g}"
                return TrainOutcome(steps=step, train_seconds=train_seconds, failure=reason)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step_seconds = time.perf_counter() - tick
            train_seconds += step_seconds
            done = step + 1
            bar.update(1)

            if done % cfg.log_every == 0 or done == cfg.steps:
                metrics = {f"train/{name}": t.item() for name, t in losses.items() if t.dim() == 0}
                metrics.update({
                    "train/lr": schedule.get_last_lr()[0],
                    "train/grad_norm": grad_norm.item(),
                    "train/step_seconds": step_seconds,
                    "train/samples_per_s": cfg.batch_size / step_seconds,
                    **_peak_memory(objective.device),
                })
                if count_tokens is not None:
                    metrics["train/tokens_per_s"] = count_tokens(batch) / step_seconds
                if count_flops is not None and peak is not None:
                    metrics["train/mfu"] = count_flops(batch) / step_seconds / peak
                tracker.log_metrics(metrics, step=done)
                bar.set_postfix(loss=f"{value:.4f}")
            if done % cfg.eval_every == 0 or done == cfg.steps:
                objective.trainable.eval()
                tracker.log_metrics({f"heldout/{k}": v for k, v in objective.heldout().items()}, step=done)
                objective.trainable.train()
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save(done)
            # A preemption warning received during the step is acted on here, with a fresh checkpoint.
            preemption.proceed(lambda: save(done))
    bar.close()
    objective.trainable.eval()
    return TrainOutcome(steps=cfg.steps, train_seconds=train_seconds)


def _peak_memory(device: torch.device) -> dict[str, float]:
    """High-water marks since the process started: the process's resident set (Linux reports
    ru_maxrss in KiB) and, on a GPU, what the caching allocator handed out."""
    peaks = {"train/peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peaks["train/peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peaks
