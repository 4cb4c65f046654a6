"""FSDP in the training loop (`train.parallelism = "fsdp"`): two gloo ranks on CPU train the tiny
AlignerNet as one process does (with and without gradient accumulation), write full checkpoints
that a single process loads, resume from them, and leave a trainable that one rank runs alone, as
evaluation does; stage 3, which unfreezes the MLLM (its vision tower run only by ranks whose
micro-batch has images), trains under FSDP as under DDP.

The AlignerNet runs use rec_weight = 0, as tests/test_distributed.py explains. Stage 3 draws its
noise and null conditions per rank, so its FSDP run is compared with a 2-rank DDP run, not with
one process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.tensor import DTensor

from experiments.config import RunConfig
from experiments.recipes.instruct import InstructObjective
from experiments.recipes.run import seed_everything
from experiments.training.checkpoints import load_state, trained_weights
from experiments.training.distributed import World, rank_parts
from experiments.training.loop import train
from experiments.training.objective import Objective
from experiments.training.tracking import RecordingTracker
from repro.config import load_matrix
from tests.support.distributed import STEPS, align_config, fresh_objective, join_gloo
from tests.support.full_tier import EXPERIMENTS, fake_full_env
from tests.support.tiny import stage3_config

STOPPED_AT = 4  # the interrupted run's last step, after its checkpoint at 3, never finishes
PROMPT = ["a photo of a dog"]


class Interrupted(Exception):
    """Stands in for a crash or kill in the middle of a run."""


def objective_for(config: RunConfig) -> Objective:
    if config.recipe == "instruct":
        seed_everything(config.seed)
        return InstructObjective(config)
    return fresh_objective(config)


def instruct_config(assets: Path, stage2_dir: Path, parallelism: str) -> RunConfig:
    # Micro-batches of one row: some put images on one rank and none on the other (asserted).
    # QUICK's 4 warm-up steps would exceed these 3 steps.
    return stage3_config(assets, stage2_dir, {"train.optim.warmup_steps": 1}, steps=3, batch_size=4,
                         micro_batch_size=1, eval_every=3, checkpoint_every=3, parallelism=parallelism)


def _train_and_record(config: RunConfig, folder: Path, name: str, rank: int) -> None:
    objective = objective_for(config)
    tracker = RecordingTracker()
    train(objective, config.train, folder / name, tracker, progress=False)
    alone = None
    if rank == 0:  # rank 1 is at the barrier meanwhile: a collective here would fail or time out
        with torch.no_grad():
            alone = objective.conditioner(PROMPT)
    dist.barrier()
    torch.save({"metrics": tracker.metrics, "model": objective.trainable.state_dict(), "alone": alone},
               folder / f"{name}-{rank}.pt")


def _interrupted_then_resumed(config: RunConfig, folder: Path, name: str, rank: int) -> None:
    objective = objective_for(config)
    batch = objective.batch

    def batch_or_stop(step, part):
        if step == STOPPED_AT - 1:
            raise Interrupted
        return batch(step, part)

    objective.batch = batch_or_stop
    with pytest.raises(Interrupted):
        train(objective, config.train, folder / name, RecordingTracker(), progress=False)
    _train_and_record(config, folder, name, rank)


def _rank(rank: int, world: int, folder: Path, assets: Path) -> None:
    join_gloo(rank, world, folder)
    torch.set_num_threads(1)
    try:
        for name, values in (("fsdp", {}), ("fsdp-accumulating", {"micro_batch_size": 2})):
            _train_and_record(align_config(assets, parallelism="fsdp", **values), folder, name, rank)
        _interrupted_then_resumed(align_config(assets, parallelism="fsdp"), folder, "fsdp-resumed", rank)
        for parallelism in ("ddp", "fsdp"):  # stage 3 from the FSDP run's checkpoint
            config = instruct_config(assets, folder / "fsdp", parallelism)
            _train_and_record(config, folder, f"instruct-{parallelism}", rank)
    finally:
        dist.destroy_process_group()


def _groups(optimizer_state: dict) -> list[dict]:
    # torch.distributed.checkpoint hands AdamW's betas back as a list; AdamW takes either.
    return [{**group, "betas": tuple(group["betas"])} for group in optimizer_state["param_groups"]]


def _series(record: dict, key: str) -> list[float]:
    return [value for _, value in record["metrics"][key]]


def test_two_fsdp_ranks_train_checkpoint_resume_and_evaluate_like_one_process(tiny_assets, tmp_path):
    config = align_config(tiny_assets)
    single = objective_for(config)
    single_tracker = RecordingTracker()
    train(single, config.train, tmp_path / "single", single_tracker, progress=False)
    with torch.no_grad():
        single_alone = single.conditioner(PROMPT)
    single_model = single.trainable.state_dict()
    single_optimizer = load_state(tmp_path / "single" / "checkpoints" / "step-00000006" / "state.pt")["optimizer"]
    mp.spawn(_rank, args=(2, tmp_path, tiny_assets), nprocs=2, join=True)

    for name in ("fsdp", "fsdp-accumulating", "fsdp-resumed"):
        rank0, rank1 = torch.load(tmp_path / f"{name}-0.pt"), torch.load(tmp_path / f"{name}-1.pt")
        # grad_norm: clipping saw the global norm, not a shard's.
        for key in ("train/loss", "train/mse_loss", "train/grad_norm", "heldout/mse_loss"):
            expected = single_tracker.series(key)
            if name == "fsdp-resumed":  # logged from the step after its checkpoint on
                expected = expected[-len(_series(rank0, key)):]
            torch.testing.assert_close(_series(rank0, key), expected, rtol=1e-4, atol=0, msg=f"{name}: {key}")
        if name == "fsdp-resumed":
            assert [step for step, _ in rank0["metrics"]["train/loss"]] == list(range(STOPPED_AT, STEPS + 1))
        assert not any(isinstance(value, DTensor) for value in rank0["model"].values())
        torch.testing.assert_close(rank0["model"], single_model, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(rank1["model"], rank0["model"], rtol=0, atol=0)  # both whole again
        torch.testing.assert_close(rank0["alone"], single_alone, rtol=1e-4, atol=1e-6)

        # The checkpoint is a single process's: the whole model under the plain trainable's keys,
        # and the optimiser's state by parameter position.
        written = tmp_path / name / "checkpoints" / "step-00000006"
        fresh_objective(config).trainable.load_state_dict(trained_weights(written))
        torch.testing.assert_close(trained_weights(written), rank0["model"], rtol=0, atol=0)
        optimizer = load_state(written / "state.pt")["optimizer"]
        torch.testing.assert_close(optimizer["state"], single_optimizer["state"], rtol=1e-4, atol=1e-6)
        assert _groups(optimizer) == _groups(single_optimizer)

    ddp, fsdp = torch.load(tmp_path / "instruct-ddp-0.pt"), torch.load(tmp_path / "instruct-fsdp-0.pt")
    for key in ("train/loss", "heldout/diffusion_loss"):
        torch.testing.assert_close(_series(fsdp, key), _series(ddp, key), rtol=1e-4, atol=0, msg=key)
    torch.testing.assert_close(fsdp["model"], ddp["model"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fsdp["alone"], ddp["alone"], rtol=1e-4, atol=1e-6)
    written = trained_weights(tmp_path / "instruct-fsdp" / "checkpoints" / "step-00000003")
    instruct = objective_for(instruct_config(tiny_assets, tmp_path / "fsdp", "fsdp"))
    instruct.trainable.load_state_dict(written)

    # What the vision tower's rule is for: a micro-step at which one rank ran it and the other did not.
    def images(step: int, rank: int) -> list[int]:
        return [sum(map(len, instruct.batch(step, part)[2])) for part in rank_parts(4, 1, World(rank, 2))]

    assert any(bool(a) != bool(b) for step in range(3) for a, b in zip(images(step, 0), images(step, 1)))


def test_the_full_tier_shards_stage_3_alone(tmp_path):
    """Its replica does not fit the paper's 32 GB GPUs (experiments.toml, [stage.instruct])."""
    matrix = load_matrix(EXPERIMENTS, "full", env=fake_full_env(tmp_path / "world"))
    trained = {run.config.recipe: run.config.train.parallelism for run in matrix.runs
               if run.config.recipe in ("align", "e2e", "instruct")}
    assert trained == {"align": "ddp", "e2e": "ddp", "instruct": "fsdp"}
