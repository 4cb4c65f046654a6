"""Memory and time of a training step, measured on real tensors or predicted without allocating.

`run_steps` takes the steps the training loop takes (the objective's batch and loss under the
run's autocast, backward, gradient clipping, the loop's AdamW) on the objective's modules, for a
micro-batch of `micro` items, and reads the peak:
- measured: torch.cuda.max_memory_allocated on a GPU; on a CPU, which has no allocator
  statistics, `LiveBytes`: the bytes of every tensor storage alive (parameters, buffers,
  gradients, optimiser state, activations) at the step's worst moment;
- predicted: the same steps under FakeTensorMode (`faked`: the modules' tensors swapped for fake
  ones of the same shapes, dtypes and device, as torchtitan estimates memory), read by LiveBytes:
  nothing is allocated, so a micro-batch or model that would not fit is predicted all the same.
The FLOPs of the step are counted alongside, by torch's FLOP formulas (from the shapes).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv, optimization_hint
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from experiments.config import TrainConfig
from experiments.training.precision import autocast
from experiments.training.progress import Progress, on_terminal


class LiveBytes(TorchDispatchMode):
    """The peak of the bytes held by live tensor storages: those alive on entry (`alive`: the
    modules' weights, the optimiser's state) and every storage an op makes while inside, until
    it is freed. Views and in-place results share their storage and count once. torch's
    MemTracker reads the same quantity, but walks every tracked tensor on every op, which takes
    minutes for one step of a model with thousands of parameters; this costs O(1) per op.

    `flops` sums torch's FLOP formulas (FlopCounterMode's) over the ops seen: FlopCounterMode
    itself also attributes FLOPs to modules, through hooks on every module call, which cost a
    quarter of a fake step's time."""

    def __init__(self, alive: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = self.peak = self.flops = 0
        for tensor in alive:
            self._count(tensor)

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live:
            return
        # A data-dependent size (a boolean mask's indices, under fake tensors) has no value to
        # read; such index lists are negligible beside the activations, and count as empty.
        self._live[key] = size = optimization_hint(storage.nbytes(), fallback=0)
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._count(value)
        return out


def held_tensors(modules: Iterable[nn.Module], optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    """What outlives a step: the modules' parameters and buffers, the optimiser's state."""
    for module in modules:
        yield from module.parameters()
        yield from module.buffers()
    for state in optimizer.state.values():
        yield from (value for value in state.values() if isinstance(value, torch.Tensor))


@dataclass(frozen=True)
class StepCost:
    peak_bytes: int
    seconds_per_item: float | None  # None when predicted (fake tensors take no real time)
    flops_per_item: int  # counted in the tracked step (0 on a GPU, which needs no tracked step)
    basis: str  # how the peak was read


def module_tree(holder: Any) -> list[nn.Module]:
    """Every module an object holds as an attribute (an objective's trainable, frozen encoders
    and decoder; a conditioner's text encoder), or the object itself if it is one."""
    if isinstance(holder, nn.Module):
        return [holder]
    return [value for value in vars(holder).values() if isinstance(value, nn.Module)]


def parameter_counts(modules: Iterable[nn.Module]) -> tuple[int, int]:
    """(trainable, frozen) parameters, each shared tensor counted once."""
    unique = {id(p): p for module in modules for p in module.parameters()}.values()
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    return trainable, sum(p.numel() for p in unique) - trainable


@contextmanager
def faked(modules: Iterable[nn.Module], device: torch.device) -> Iterator[FakeTensorMode]:
    """Inside: every parameter and buffer of `modules` is a fake tensor on `device` (shared ones
    stay shared) and FakeTensorMode is on; after: the real tensors are back in place, also in
    the plain attributes of the modules' helpers (diffusers' scheduler keeps the tensor it moved
    to the device), so no fake tensor outlives the prediction."""
    places: list[tuple[dict, str, torch.Tensor]] = []
    # Each module once, though several roots hold it (the conditioner holds the trainable).
    unique = list({id(module): module for root in modules for module in root.modules()}.values())
    for module in unique:
        for helper in vars(module).values():
            if not isinstance(helper, (nn.Module, torch.Tensor, dict)) and hasattr(helper, "__dict__"):
                places += [(vars(helper), name, value) for name, value in vars(helper).items()
                           if isinstance(value, torch.Tensor)]
    # A shape environment lets data-dependent ops run on fake tensors: Kosmos-2 scatters the image
    # features into its text embeddings through a boolean mask, whose size no shape tells.
    mode = FakeTensorMode(allow_non_fake_inputs=True, shape_env=ShapeEnv())
    with mode:
        fakes: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(real) -> (real kept alive, fake)
        for module in unique:
            # A fake parameter stands in for a real one, a fake tensor for a buffer.
            tables: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
            for table in tables:
                for name, real in list(table.items()):
                    if real is None:
                        continue
                    if id(real) not in fakes:
                        fake = torch.empty_like(real, device=device)
                        if isinstance(real, nn.Parameter):
                            fake = nn.Parameter(fake, requires_grad=real.requires_grad)
                        fakes[id(real)] = (real, fake)
                    places.append((table, name, real))
                    table[name] = fakes[id(real)][1]
        try:
            yield mode
        finally:
            for table, name, real in places:
                table[name] = real


def run_steps(
    objective: Any, train: TrainConfig, micro: int, steps: int, *, fake: bool,
    build_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
) -> StepCost:
    """`steps` training steps on micro-batches of `micro` items of the run's shapes (rows of
    steps 0, 1, ... read for real), timed, then on a CPU or with fake tensors one more under
    LiveBytes, read as a step of a run past its first, with the optimiser's state alive
    throughout. Fake tensors take no real time, so with them only the tracked step is taken: a
    first step, whose update makes the state for the parameters that got a gradient (a module
    the loss does not use gets none); the peak before the update is read with that state added."""
    from experiments.data.batches import Part

    device = objective.device
    part = Part(0, train.batch_size // micro)  # `micro` items of each step's global batch
    modules = module_tree(objective)
    tracked = fake or device.type != "cuda"
    timed = 0 if fake else steps
    # Rows are read for real, before fake mode: decoding images and tokenising are not model work.
    items = [objective.items(step, part) for step in range(timed + tracked)]
    seconds, flops, peak = 0.0, 0, 0
    # A full-size step on a CPU takes minutes, with nothing else to say it is running; most take
    # seconds, and preflight takes several per run, so their bars wait.
    desc = "predicted step" if fake else "measured steps"
    with faked(modules, device) if fake else nullcontext(), \
            Progress(desc, len(items), unit="step", bar=on_terminal(), bar_after=10) as progress:
        params = [p for p in objective.trainable.parameters() if p.requires_grad]
        optimizer = build_optimizer(params)
        if not tracked:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        objective.trainable.train()
        for step, rows in enumerate(items):
            last = step == timed
            # Tracking every op in Python would swamp the timed steps' time.
            tracker = LiveBytes(held_tensors(modules, optimizer)) if last else None
            tick = time.perf_counter()
            with tracker if tracker is not None else nullcontext():
                with autocast(device, train.precision):
                    loss = objective.loss(objective.collate(rows))["loss"]
                loss.backward()
                if params:
                    torch.nn.utils.clip_grad_norm_(params, train.optim.grad_clip)
                before_update = tracker.peak if tracker is not None else 0
                first = not optimizer.state
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda" and not fake:
                torch.cuda.synchronize(device)
            if tracker is not None:
                peak, flops = tracker.peak, tracker.flops
                if first:
                    peak = max(peak, before_update + _state_bytes(optimizer))
            else:
                seconds += time.perf_counter() - tick
            progress.update()
        objective.trainable.eval()
        del optimizer, params
    if not tracked:
        return StepCost(torch.cuda.max_memory_allocated(device), seconds / (steps * micro), 0,
                        "measured: cuda max_memory_allocated")
    if fake:
        return StepCost(peak, None, flops // micro, "FakeTensorMode + live storages")
    return StepCost(peak, seconds / (steps * micro), flops // micro, "measured: live storages (CPU)")



def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    storages = {id(value.untyped_storage()): value.untyped_storage().nbytes()
                for state in optimizer.state.values() for value in state.values()
                if isinstance(value, torch.Tensor)}
    return sum(storages.values())
