"""FSDP for the training loop (`train.parallelism = "fsdp"`): each rank keeps 1/W of the
trainable's parameters, gradients and AdamW state instead of a whole replica, for a trainable
that does not fit one GPU beside its optimiser (the ~1.55B weights stage 3 trains, most of the
MLLM: fp32 weights, gradients and AdamW's two moments take ~25 GB before activations).

FSDP2 (`fully_shard`) gathers a unit's parameters for each of its forwards (and again for the
backward) and scatters its gradients after, one collective per unit and use, so every rank has to
run the same units in the same order (experiments.recipes.diffusion makes the null condition on every
micro-batch for this):
- The units are the blocks of the stacks every input goes through: the MLLM's text decoder layers
  and AlignerNet's encoder and decoder layers that train. Not the vision tower's layers: it runs
  only for prompts with images, and the ranks' micro-batches differ in that. Each block is
  wrapped in a `_Unit` that FSDP attaches to, so that the block itself stays a plain module.
- Everything else that trains (embeddings, norms, projections, queries, the trainable vision
  layer) is the root unit: the objective's whole loss is its forward, gathered on every rank.
  A parameter that one rank used and another did not (the vision layer) gets a zero gradient on
  the other, so the scatters match, as DDP's find_unused_parameters does. Held-out evaluation
  is a second forward of the root, run by every rank on the same data, rather than a gather of
  the whole model, which would cost its full size on every rank.
- Frozen parameters stay out (FSDP's ignored_params): with no gradient or optimiser state, they
  are kept whole on every rank, as under DDP.
A model that skips layers at random (LayerDrop; Kosmos-2's is 0) would break the first rule.

Gradients are scattered after every micro-batch (not accumulated whole until the last one, as
DDP does): that costs a collective per micro-batch but keeps them sharded, which is what FSDP is
for. clip_grad_norm_ on the sharded (DTensor) gradients computes the global norm.

Checkpoints are sharded (experiments.training.checkpoint_shards): each rank writes and reads back its own
shards of the weights and of AdamW's moments, under the plain trainable's keys, so that one
process puts the weights together (`trained_weights`, `repro generate`) and DCP reshards them
for a run resumed on another number of ranks. A full checkpoint (a single process's or a DDP
run's) still resumes here, each rank taking its shards of it.
After training, `unshard` puts the whole trained weights back into the plain modules, so that
evaluation (FID, DreamBench: uneven numbers of batches per rank) runs without collectives.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor
from transformers.models.kosmos2.modeling_kosmos2 import Kosmos2TextBlock

from experiments.training.checkpoint_shards import MODEL, OPTIMIZER
from experiments.training.checkpoints import SHARDED, read_shards
from experiments.training.distributed import DataParallelObjective, World
from experiments.training.precision import fsdp_policy
from models.aligner import DecoderLayer, EncoderLayer

# The blocks that every input runs through (see the module docstring for the vision tower's):
# the MLLM's text decoder layers and AlignerNet's torchscale-style encoder and decoder layers.
UNIT_BLOCKS = (Kosmos2TextBlock, EncoderLayer, DecoderLayer)

_ROOT = "trainable."  # the root unit's prefix on the trainable's state keys
_BLOCK = "block"  # a unit's name for the block it wraps


class _Unit(nn.Module):
    """FSDP attaches its hooks and class to this wrapper, not to the block it runs, so that the
    block is a plain module again once the wrapper is taken out. Attributes it lacks are the
    block's."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.block(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Whoever holds the block may read its attributes (a stack reading layers[0].self_attn, say).
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__(_BLOCK), name)


class _Root(nn.Module):
    """The objective's loss as the root unit's forward and its held-out evaluation as a second
    forward method: FSDP gathers the root's parameters for either, on every rank."""

    def __init__(self, objective: DataParallelObjective) -> None:
        super().__init__()
        self.trainable = objective.trainable
        self._loss = objective.loss
        self._heldout = objective.heldout

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self._loss(batch)

    def heldout(self) -> dict[str, float]:
        return self._heldout()


class Sharded:
    """The objective's trainable sharded in place over the ranks. Build the optimiser after it,
    on the trainable's parameters, which are then each rank's shards."""

    def __init__(self, objective: DataParallelObjective, world: World, precision: str = "no") -> None:
        trainable = objective.trainable
        policy = fsdp_policy(precision)
        mesh = init_device_mesh(world.device.type, (world.size,))
        frozen = {p for p in trainable.parameters() if not p.requires_grad}
        self._units: list[tuple[nn.Module, str, _Unit]] = []  # (parent, name, unit)
        self._unit_prefixes: list[str] = []  # each unit's key prefix in the trainable's state
        for path, block in list(trainable.named_modules()):
            if isinstance(block, UNIT_BLOCKS) and any(p.requires_grad for p in block.parameters()):
                parent_path, _, name = path.rpartition(".")
                parent, unit = trainable.get_submodule(parent_path), _Unit(block)
                setattr(parent, name, unit)
                fully_shard(unit, mesh=mesh, ignored_params=frozen, mp_policy=policy)
                self._units.append((parent, name, unit))
                self._unit_prefixes.append(f"{path}.")
        self._root = _Root(objective)
        # The same module: fully_shard swaps its class for FSDP's subclass of it, which this types.
        self._sharded_root = fully_shard(self._root, mesh=mesh, ignored_params=frozen, mp_policy=policy)
        self._sharded_root.set_reduce_scatter_unused_params(True)
        register_fsdp_forward_method(self._root, "heldout")

    @property
    def loss(self) -> nn.Module:
        """objective.loss(batch) through the sharded units."""
        return self._root

    def syncing(self, sync: bool) -> ContextManager[Any]:
        """Every micro-batch scatters its gradients (module docstring)."""
        return nullcontext()

    def heldout(self) -> dict[str, float]:
        """Collective: every rank evaluates the same held-out data."""
        metrics = self._root.heldout()
        # The root keeps its parameters gathered after a forward, for the backward that follows
        # one in training; none follows this one.
        self._sharded_root.reshard()
        return metrics

    def state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Collective: this rank's shards of the model and optimiser states (DTensors; AdamW's
        step counts, alike on every rank, as plain tensors) under the plain trainable's keys, and
        the optimiser's param groups (its hyperparameters) by parameter name."""
        model = get_model_state_dict(self._root)
        # torch types it as a recursive union: read as its layout, {"state": ..., "param_groups": [...]}
        optimizer_state: dict[str, Any] = get_optimizer_state_dict(self._root, optimizer)
        groups = [{**group, "params": [self._plain_key(name) for name in group["params"]]}
                  for group in optimizer_state["param_groups"]]
        return {SHARDED: self._flat(model, optimizer_state), "optimizer_groups": groups}

    def load(self, state: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
        """Collective: each rank reads its shards of a sharded checkpoint, or takes them from a
        full one (which every rank has read)."""
        sharded_keys = {self._plain_key(key): key for key in self._root.state_dict()}
        if SHARDED not in state:
            options = StateDictOptions(full_state_dict=True)
            model = {sharded_keys[key]: value for key, value in state["model"].items()}
            set_model_state_dict(self._root, model, options=options)
            by_name = _by_name(state["optimizer"], self._parameter_names(optimizer))
            set_optimizer_state_dict(self._root, optimizer, by_name, options=options)
            return
        # The live states give the shapes and placements to read into (the optimiser's made by
        # torch with a zero step, as it has none before the first).
        model = get_model_state_dict(self._root)
        optimizer_state: dict[str, Any] = get_optimizer_state_dict(self._root, optimizer)  # as in state()
        flat = self._flat(model, optimizer_state)
        read_shards(flat, state[SHARDED])
        set_model_state_dict(self._root, {key: flat[MODEL + self._plain_key(key)] for key in model})
        set_optimizer_state_dict(self._root, optimizer, {
            "state": {name: {field: flat[f"{OPTIMIZER}{self._plain_key(name)}.{field}"] for field in fields}
                      for name, fields in optimizer_state["state"].items()},
            "param_groups": [{**group, "params": [sharded_keys[name] for name in group["params"]]}
                             for group in state["optimizer_groups"]],
        })

    def _flat(self, model: dict[str, Any], optimizer_state: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One level of keys, as the shard files hold them: model.<key>, optimizer.<key>.<field>."""
        flat = {MODEL + self._plain_key(key): value for key, value in model.items()}
        for name, fields in optimizer_state["state"].items():
            for field, value in fields.items():
                flat[f"{OPTIMIZER}{self._plain_key(name)}.{field}"] = value
        return flat

    def unshard(self) -> None:
        """Collective, once training is over: the blocks go back in place of their units and
        every sharded parameter becomes a plain one holding the whole trained tensor, so that one
        rank alone can run the trainable. The optimiser is done with then. (FSDP's bookkeeping,
        which hooks on the modules still reach, keeps this rank's shards alive.)"""
        for module in self._root.modules():
            if isinstance(module, FSDPModule):
                module.reshard()  # the sharded parameters registered, as the loop below expects
        for parent, name, unit in self._units:
            setattr(parent, name, unit.block)
        trainable = self._root.trainable
        with torch.no_grad():
            for name, param in list(trainable.named_parameters()):
                if isinstance(param, DTensor):
                    owner, _, leaf = name.rpartition(".")
                    whole = nn.Parameter(param.full_tensor(), requires_grad=param.requires_grad)
                    setattr(trainable.get_submodule(owner), leaf, whole)

    def _parameter_names(self, optimizer: torch.optim.Optimizer) -> list[str]:
        """The root's name for each of the optimiser's parameters, in the optimiser's order."""
        names = {param: name for name, param in self._root.named_parameters()}
        return [names[param] for group in optimizer.param_groups for param in group["params"]]

    def _plain_key(self, key: str) -> str:
        """A state key of the root without the root's prefix and the units' wrappers."""
        key = key.removeprefix(_ROOT)
        for prefix in self._unit_prefixes:
            if key.startswith(f"{prefix}{_BLOCK}."):
                return prefix + key[len(prefix) + len(_BLOCK) + 1:]
        return key


def _by_name(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """`Optimizer.state_dict()`'s state, keyed by parameter position, keyed instead by parameter
    name, as torch.distributed.checkpoint's state dict functions take it."""
    return {
        "state": {names[k]: value for k, value in state["state"].items()},
        "param_groups": [{**group, "params": [names[k] for k in group["params"]]}
                         for group in state["param_groups"]],
    }
