"""From one process's step peaks to the configured launch: the per-rank peak under DDP or FSDP,
the largest micro-batch that fits a declared GPU, and the whole run's wall-clock and GPU-hours.
Plain arithmetic on byte and FLOP counts (experiments/training/memory.py measures them)."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
ADAMW_STATES = 2  # exp_avg and exp_avg_sq, each the parameter's size


@dataclass(frozen=True)
class Launch:
    world: int
    parallelism: str  # "ddp" or "fsdp"
    gpu_memory_gb: float | None


def per_rank_peak(single: int, trainable_bytes: int, launch: Launch) -> int:
    """One process's peak (everything whole) as one of `world` ranks: DDP adds its gradient
    buckets (a second copy of the trainable's gradients); FSDP keeps 1/world of the trainable's
    weights, gradients and AdamW state (the gathered unit in flight is left out: one block)."""
    if launch.world < 2:
        return single
    if launch.parallelism == "fsdp":
        sharded = (2 + ADAMW_STATES) * trainable_bytes
        return single - sharded + sharded // launch.world
    return single + trainable_bytes


def suggest_micro_batch(small: int, at_small: int, configured: int, at_configured: int, per_rank_batch: int,
                        budget_bytes: float) -> int | None:
    """The largest micro-batch dividing the per-rank batch whose peak, linear in the micro-batch
    through the two predicted points (`small` and `configured` items), fits the budget; None if
    not even 1 does."""
    per_item = (at_configured - at_small) / (configured - small) if configured > small else 0.0
    fitting = [m for m in range(1, per_rank_batch + 1)
               if per_rank_batch % m == 0 and at_small + per_item * (m - small) <= budget_bytes]
    return max(fitting) if fitting else None


def run_hours(steps: int, batch_size: int, world: int, *, seconds_per_item: float | None,
              flops_per_item: int | None, tflops: float | None) -> tuple[float | None, float | None, str]:
    """(wall-clock h, GPU-h, basis) of `steps` steps of `batch_size` items over `world` GPUs:
    from seconds per item timed on a GPU, else from the step's FLOPs at `tflops` per GPU."""
    items = steps * batch_size
    if seconds_per_item is not None:
        gpu_hours = items * seconds_per_item / 3600
        return gpu_hours / world, gpu_hours, "timed on this GPU"
    if flops_per_item and tflops:
        gpu_hours = items * flops_per_item / (tflops * 1e12) / 3600
        return gpu_hours / world, gpu_hours, f"FLOPs at {tflops:g} TFLOP/s per GPU"
    return None, None, "no launch.gpu_tflops declared" if flops_per_item else "no training"
