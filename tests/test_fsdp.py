"""FSDP in the training loop (`train.parallelism = "fsdp"`): two gloo ranks on CPU train the tiny
AlignerNet as one process does (with and without gradient accumulation), write sharded checkpoints
(each rank its own safetensors file, synchronously or not) that a single process puts together,
resume from them (from an older one when the newest is damaged), and leave a trainable that one
rank runs alone, as evaluation does; stage 3, which unfreezes the MLLM (its vision tower run only
by ranks whose micro-batch has images), trains under FSDP as under DDP from such a checkpoint.

The AlignerNet runs use rec_weight = 0, as tests/test_distributed.py explains. Stage 3 draws its
noise and null conditions per rank, so its FSDP run is compared with a 2-rank DDP run, not with
one process.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.tensor import DTensor

from experiments.config import RunConfig
from experiments.recipes.instruct import InstructObjective
from experiments.recipes.run import seed_everything
from experiments.training.checkpoint_shards import LAYOUT, OPTIMIZER, SHARDED, gathered
from experiments.training.checkpoints import (
    CheckpointStore,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    load_state,
    trained_weights,
)
from experiments.training.distributed import World, rank_parts
from experiments.training.loop import train
from experiments.training.objective import Objective
from experiments.training.tracker import RecordingTracker
from repro.config import load_matrix
from tests.support.distributed import STEPS, align_config, fresh_objective, join_gloo
from tests.support.full_tier import EXPERIMENTS, fake_full_env
from tests.support.tiny import stage3_config

pytestmark = pytest.mark.slow

STOPPED_AT = 5  # the interrupted run's step that never finishes, one after its checkpoint at 3
RESUMED_FROM = 3
PROMPT = ["a photo of a dog"]
# Batches made in each rank's process: a DataLoader worker per rank would cost more than these
# few steps on a 2-core box (tests/test_data_stream.py tests the workers).
IN_PROCESS = {"data.num_workers": 0}


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
    return stage3_config(assets, stage2_dir, {"train.optim.warmup_steps": 1, **IN_PROCESS}, steps=3,
                         batch_size=4, micro_batch_size=1, eval_every=3, checkpoint_every=3,
                         parallelism=parallelism)


def _train_and_record(
    config: RunConfig, folder: Path, name: str, rank: int, earlier: dict | None = None
) -> None:
    objective = objective_for(config)
    tracker = RecordingTracker()
    train(objective, config.train, folder / name, tracker, progress=False)
    alone = None
    if rank == 0:  # rank 1 is at the barrier meanwhile: a collective here would fail or time out
        with torch.no_grad():
            alone = objective.conditioner(PROMPT)
    dist.barrier()
    torch.save({"metrics": tracker.metrics, "earlier": earlier, "model": objective.trainable.state_dict(),
                "alone": alone}, folder / f"{name}-{rank}.pt")


def _interrupted_then_resumed(config: RunConfig, folder: Path, name: str, rank: int) -> None:
    objective = objective_for(config)
    batch = objective.batch

    def batch_or_stop(step, part):
        if step == STOPPED_AT - 1:
            raise Interrupted
        return batch(step, part)

    objective.batch = batch_or_stop
    interrupted = RecordingTracker()
    with pytest.raises(Interrupted):
        train(objective, config.train, folder / name, interrupted, progress=False)
    _train_and_record(config, folder, name, rank, earlier=interrupted.metrics)


def _rank(rank: int, world: int, folder: Path, assets: Path) -> None:
    join_gloo(rank, world, folder)
    torch.set_num_threads(1)
    try:
        _interrupted_then_resumed(align_config(assets, IN_PROCESS, parallelism="fsdp"), folder, "fsdp", rank)
        # That run's newest checkpoint damaged: resumed from the older one, accumulating and
        # writing a checkpoint asynchronously after every step (the next step runs while it is
        # written), it ends the same.
        if rank == 0:
            shutil.copytree(folder / "fsdp", folder / "fsdp-fallback")
            last = folder / "fsdp-fallback" / "checkpoints" / f"step-{STEPS:08d}"
            with open(_shard_files(last)[1], "r+b") as shard:
                shard.truncate(100)
        dist.barrier()
        fallback = align_config(assets, IN_PROCESS, parallelism="fsdp", micro_batch_size=2,
                                async_checkpoint=True, checkpoint_every=1)
        _train_and_record(fallback, folder, "fsdp-fallback", rank)
        for parallelism in ("ddp", "fsdp"):  # stage 3 from the FSDP run's checkpoint
            config = instruct_config(assets, folder / "fsdp", parallelism)
            _train_and_record(config, folder, f"instruct-{parallelism}", rank)
    finally:
        dist.destroy_process_group()


def _shard_files(checkpoint: Path) -> list[Path]:
    return sorted((checkpoint / SHARDED).glob("*.safetensors"))


def _groups(optimizer_state: dict) -> list[dict]:
    # torch.distributed.checkpoint hands AdamW's betas back as a list; AdamW takes either.
    return [{**group, "betas": tuple(group["betas"])} for group in optimizer_state["param_groups"]]


def _series(record: dict, key: str) -> list[float]:
    return [value for _, value in record["metrics"][key]]


def test_two_fsdp_ranks_train_checkpoint_resume_and_evaluate_like_one_process(tiny_assets, tmp_path):
    config = align_config(tiny_assets, IN_PROCESS)
    single = objective_for(config)
    single_tracker = RecordingTracker()
    train(single, config.train, tmp_path / "single", single_tracker, progress=False)
    with torch.no_grad():
        single_alone = single.conditioner(PROMPT)
    single_model = single.trainable.state_dict()
    single_state = load_state(tmp_path / "single" / "checkpoints" / "step-00000006" / "state.pt")
    single_optimizer = single_state["optimizer"]
    trainable_names = [name for name, param in single.trainable.named_parameters() if param.requires_grad]
    mp.spawn(_rank, args=(2, tmp_path, tiny_assets), nprocs=2, join=True)

    for name in ("fsdp", "fsdp-fallback"):
        rank0, rank1 = torch.load(tmp_path / f"{name}-0.pt"), torch.load(tmp_path / f"{name}-1.pt")
        # grad_norm: clipping saw the global norm, not a shard's.
        for key in ("train/loss", "train/mse_loss", "train/grad_norm", "heldout/mse_loss"):
            expected = single_tracker.series(key)
            resumed = _series(rank0, key)  # logged from the step after the checkpoint it resumed from
            torch.testing.assert_close(resumed, expected[-len(resumed):], rtol=1e-4, atol=0,
                                       msg=f"{name}: {key}")
            if rank0["earlier"] and key in rank0["earlier"]:  # the interrupted run's, up to its end
                before = [value for _, value in rank0["earlier"][key]]
                torch.testing.assert_close(before, expected[:len(before)], rtol=1e-4, atol=0,
                                           msg=f"{name}: {key}")
        logged_steps = [step for step, _ in rank0["metrics"]["train/loss"]]
        assert logged_steps == list(range(RESUMED_FROM + 1, STEPS + 1))
        assert not any(isinstance(value, DTensor) for value in rank0["model"].values())
        torch.testing.assert_close(rank0["model"], single_model, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(rank1["model"], rank0["model"], rtol=0, atol=0)  # both whole again
        torch.testing.assert_close(rank0["alone"], single_alone, rtol=1e-4, atol=1e-6)

        # Sharded: a safetensors file per rank, each smaller than the whole, and no pickle. One
        # process puts the weights together under the plain trainable's keys, and AdamW's moments
        # are the single process's, parameter for parameter.
        written = tmp_path / name / "checkpoints" / "step-00000006"
        files = _shard_files(written)
        assert len(files) == 2 and not (written / "model.safetensors").exists()
        assert sorted(p.name for p in (written / SHARDED).iterdir()) == sorted(
            [LAYOUT, *(p.name for p in files)])
        sizes = [p.stat().st_size for p in files]
        assert all(size < 0.75 * sum(sizes) for size in sizes), sizes
        fresh_objective(config).trainable.load_state_dict(trained_weights(written))
        torch.testing.assert_close(trained_weights(written), rank0["model"], rtol=0, atol=0)
        moments = gathered(written / SHARDED, OPTIMIZER)
        for position, name_of in enumerate(trainable_names):
            for field, value in single_optimizer["state"][position].items():
                torch.testing.assert_close(moments[f"{name_of}.{field}"], value, rtol=1e-4, atol=1e-6)
        groups = load_state(written / "state.pt")["optimizer_groups"]
        assert [group["params"] for group in groups] == [trainable_names]
        assert _groups({"param_groups": groups}) == [{**group, "params": trainable_names}
                                                     for group in _groups(single_optimizer)]
    # keep = 2 of the asynchronous checkpoints at 4, 5 and 6, beside the damaged one set aside.
    older, newest, aside = sorted(p.name for p in (tmp_path / "fsdp-fallback" / "checkpoints").iterdir())
    assert (older, newest) == ("step-00000005", "step-00000006")
    assert aside.startswith("step-00000006.corrupt-")
    assert [step for step, _ in torch.load(tmp_path / "fsdp-0.pt")["earlier"]["train/loss"]] == list(
        range(1, STOPPED_AT))
    _refuses_damaged_and_planted_shards(tmp_path / "fsdp" / "checkpoints", tmp_path)

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


class Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _refuses_damaged_and_planted_shards(checkpoints: Path, scratch: Path) -> None:
    damaged = scratch / "damaged"
    shutil.copytree(checkpoints / "step-00000006", damaged)
    _shard_files(damaged)[0].unlink()  # a rank's file lost
    with pytest.raises(CorruptCheckpointError, match="lost or damaged"):
        trained_weights(damaged)

    # DCP's default format pickles its .metadata; one planted beside the shards is refused, unread.
    planted = scratch / "planted" / "checkpoints"
    shutil.copytree(checkpoints, planted)
    payload = Payload()
    payload.marker = str(scratch / "ran")
    target = planted / "step-00000006" / SHARDED / ".metadata"
    target.write_bytes(pickle.dumps(payload))
    for read in (lambda: trained_weights(planted.parent), CheckpointStore(planted).load_latest):
        with pytest.raises(UnsafeCheckpointError, match=str(target)):
            read()
    assert not (scratch / "ran").exists()


def test_the_full_tier_shards_stage_3_alone(tmp_path):
    """Its replica does not fit the paper's 32 GB GPUs (experiments.toml, [stage.instruct])."""
    matrix = load_matrix(EXPERIMENTS, "full", env=fake_full_env(tmp_path / "world"))
    trained = {run.config.recipe: run.config.train.parallelism for run in matrix.runs
               if run.config.recipe in ("align", "e2e", "instruct")}
    assert trained == {"align": "ddp", "e2e": "ddp", "instruct": "fsdp"}
