"""Data parallelism for the training loop: the process group a job opens, which rank this
process is, how a step's global batch is cut into per-rank micro-batches, and DDP around the
objective's loss (experiments.training.fsdp shards the trainable instead).

The global batch (`train.batch_size`, the paper's) is the same whatever the world size: each of
W ranks takes batch_size / W items per step, in A micro-batches of `train.micro_batch_size`,
accumulating gradients over them, so W and A change the speed and memory of a step, not what it
computes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ContextManager, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from experiments.data.batches import Part, accumulation_steps


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; a single process is rank 0 of 1."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives run

    @staticmethod
    def current() -> World:
        if not (dist.is_available() and dist.is_initialized()):
            return World()
        # NCCL reduces tensors on the rank's own GPU only.
        on_gpu = dist.get_backend() == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
        return World(dist.get_rank(), dist.get_world_size(), device)

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Scalars averaged over the ranks (one collective for all of them)."""
        stacked = torch.stack([value.detach().float() for value in values.values()]).to(self.device)
        if self.size > 1:
            dist.all_reduce(stacked)
            stacked /= self.size
        return dict(zip(values, stacked.tolist()))

    def total(self, count: int) -> int:
        if self.size == 1:
            return count
        summed = torch.tensor([count], dtype=torch.float64, device=self.device)
        dist.all_reduce(summed)
        return int(summed.item())

    def first_rank_says(self, flag: bool) -> bool:
        """Rank 0's flag on every rank, so all of them take the same branch."""
        if self.size == 1:
            return flag
        shared = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(shared, src=0)
        return bool(shared.item())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def seed_step(self, base_seed: int, step: int) -> None:
        """Each rank draws its own random numbers (diffusion noise, null conditions) at each
        step: every rank was seeded alike, for identical initial weights, and would otherwise
        draw the same noise for different data. Seeded by step, a resumed run draws what it
        would have. A single process keeps its one stream, as before data parallelism."""
        if self.size > 1:
            torch.manual_seed(hash((base_seed, step, self.rank)) & (2**63 - 1))


def rank_parts(batch_size: int, micro_batch_size: int | None, world: World) -> list[Part]:
    """The parts of each step's global batch this rank computes, one per micro-batch: rank r's
    k-th of A micro-batches is part r * A + k of W * A, so the ranks' parts tile the batch."""
    accumulation = accumulation_steps(batch_size, micro_batch_size, world.size)
    return [Part(world.rank * accumulation + k, world.size * accumulation) for k in range(accumulation)]


Loss = Callable[[Any], dict[str, torch.Tensor]]


class DataParallelObjective(Protocol):
    """What data parallelism needs of an objective (experiments.training.loop.Objective)."""

    trainable: nn.Module

    def loss(self, batch: Any) -> dict[str, torch.Tensor]: ...

    def heldout(self) -> dict[str, float]: ...


class _ObjectiveLoss(nn.Module):
    """The objective's whole loss as one module's forward, so DDP's reducer sees every use of
    the trainable parameters: the aligner's N runs through `reconstruct`, not `forward`."""

    def __init__(self, trainable: nn.Module, loss: Loss) -> None:
        super().__init__()
        self.trainable = trainable
        self.loss = loss

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.loss(batch)


class Replicated:
    """A whole replica of the trainable on every rank (`train.parallelism = "ddp"`, and any
    single process); past one rank, DDP averages the gradients. experiments.training.fsdp.Sharded is the
    sharded alternative, with the same methods."""

    def __init__(self, objective: DataParallelObjective, world: World) -> None:
        self.trainable = objective.trainable
        self._heldout = objective.heldout
        module = _ObjectiveLoss(objective.trainable, objective.loss)
        # Some trainables hold parameters a recipe never uses (the e2e recipe trains AlignerNet's
        # M without N): DDP has to look for them, or it waits for their gradients forever.
        self.loss: nn.Module = (
            module if world.size == 1 else DistributedDataParallel(module, find_unused_parameters=True)
        )

    def syncing(self, sync: bool) -> ContextManager[Any]:
        """Gradients are all-reduced only on a step's last micro-batch; the earlier ones
        accumulate locally. Wraps the micro-batch's forward and backward."""
        if sync or not isinstance(self.loss, DistributedDataParallel):
            return nullcontext()
        return self.loss.no_sync()

    def heldout(self) -> dict[str, float]:
        return self._heldout()

    def state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The model (unwrapped, so that a single process can load it) and optimiser states."""
        return {"model": self.trainable.state_dict(), "optimizer": optimizer.state_dict()}

    def load(self, state: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
        if "model" not in state:
            raise ValueError("this checkpoint is sharded (an FSDP run's): it resumes with "
                             "train.parallelism = \"fsdp\" on two or more ranks; its weights alone are read "
                             "by one process")
        self.trainable.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    def unshard(self) -> None:
        """Nothing to gather: every rank holds the whole trainable already."""


@contextmanager
def process_group() -> Iterator[World]:
    """torch.distributed from the env:// variables (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE,
    LOCAL_RANK) when they name several ranks: NCCL with the GPU of LOCAL_RANK, gloo on CPU.
    A single rank needs no process group."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        yield World()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield World.current()
    finally:
        dist.destroy_process_group()
