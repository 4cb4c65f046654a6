"""Where and how a run is launched: the `[launch]` section of experiments.toml.

It layers like the config sections ([launch], [stage.<recipe>.launch], [tier.<t>.launch],
[tier.<t>.stage.<recipe>.launch], an experiment's `launch`, `--set launch.x=...`) but belongs to
the harness, not to the recipe: it is not part of a run's config hash, so the same run launched
locally or on SLURM is the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

# local: a subprocess per run; debug: in the launching process; slurm: job arrays on a cluster.
ExecutorKind = Literal["local", "debug", "slurm"]
EXECUTORS: tuple[str, ...] = get_args(ExecutorKind)


@dataclass(frozen=True)
class LaunchConfig:
    executor: ExecutorKind = "local"
    timeout_min: int = 24 * 60  # wall-clock limit of one attempt (sbatch --time)
    max_retries: int = 2  # a run that fails is resubmitted this many times, then marked failed
    # SLURM only: one task per GPU, so a node runs gpus_per_node ranks of torch.distributed.
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    # Ranks per node when there are no GPUs (a CPU DDP job); with GPUs it is gpus_per_node.
    cpu_tasks_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    array_parallelism: int = 256  # array tasks running at once
    signal_delay_s: int = 120  # SLURM's warning signal comes this long before the kill
    sbatch: dict[str, str] = field(default_factory=dict)  # any other #SBATCH --key=value
    setup: tuple[str, ...] = ()  # shell lines run before the job starts (module load, ...)
    # What `repro preflight` plans against: the memory of one GPU of the cluster (its suggested
    # train.micro_batch_size fits in it) and the dense FLOP/s one GPU sustains in the training
    # precision (its wall-clock estimate where no step was timed on such a GPU). Unset: not judged.
    gpu_memory_gb: float | None = None
    gpu_tflops: float | None = None

    @property
    def tasks_per_node(self) -> int:
        return self.gpus_per_node or self.cpu_tasks_per_node

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node


def check_launch(launch: LaunchConfig) -> list[str]:
    """Values each of the right type can still be impossible together."""
    problems = [f"launch.{name}: must be >= 1, got {getattr(launch, name)}"
                for name in ("timeout_min", "nodes", "cpu_tasks_per_node", "array_parallelism")
                if getattr(launch, name) < 1]
    problems += [f"launch.{name}: must be >= 0, got {getattr(launch, name)}"
                 for name in ("max_retries", "gpus_per_node", "signal_delay_s") if getattr(launch, name) < 0]
    problems += [f"launch.{name}: must be >= 1, got {getattr(launch, name)}"
                 for name in ("cpus_per_task", "mem_gb") if (getattr(launch, name) or 1) < 1]
    problems += [f"launch.{name}: must be > 0, got {getattr(launch, name)}"
                 for name in ("gpu_memory_gb", "gpu_tflops") if getattr(launch, name) is not None
                 and getattr(launch, name) <= 0]
    if launch.executor != "slurm" and launch.nodes > 1:
        problems.append(f"launch.nodes: {launch.nodes} nodes need executor = \"slurm\"")
    if launch.executor == "debug" and launch.world_size > 1:
        problems.append("launch: the debug executor runs one rank in this process; use local or slurm")
    if launch.signal_delay_s >= launch.timeout_min * 60:
        problems.append("launch.signal_delay_s: the warning signal must come after the job starts")
    return problems
