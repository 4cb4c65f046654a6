"""Data parallelism in the training loop: two gloo ranks on CPU train the tiny AlignerNet exactly
as one process does on the same global batch (with and without gradient accumulation), only rank
0 writes checkpoints, which a single process loads, and a preemption stops every rank at the same
step boundary and resumes from there.

The runs use rec_weight = 0: L_rec is scaled by 77 / (the batch's padded length) and averaged over
the batch's real tokens (as the official code does per GPU), so its value depends on how the
global batch is cut. L_mse, a mean over items, does not; it is what these runs train.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from experiments.data.batches import WHOLE
from experiments.data.shards import open_shards
from experiments.data.stream import StepRows
from experiments.training import checkpoints, preemption
from experiments.training.checkpoints import CheckpointStore, trained_weights
from experiments.training.distributed import World, rank_parts
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from tests.support.distributed import PREEMPTED_AT, STEPS, align_config, fresh_objective, join_gloo

pytestmark = pytest.mark.slow


def test_the_ranks_micro_batches_tile_each_global_batch_once(tmp_path):
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text("".join(json.dumps({"caption": f"c{i}"}) + "\n" for i in range(20)))
    rows = StepRows(open_shards(str(manifest)), lambda record: record.caption, batch_size=8, seed=1)
    for step in range(4):  # the third step crosses into the second epoch
        parts = [part for rank in range(2) for part in rank_parts(8, 2, World(rank, 2))]
        assert len(parts) == 4  # 2 ranks x 2 micro-batches of 2
        assert [item for part in parts for item in rows(step, part).items] == rows(step, WHOLE).items


@pytest.mark.parametrize("batch_size, micro_batch_size, ranks, key", [
    (9, None, 2, "train.batch_size"),
    (8, 3, 2, "train.micro_batch_size"),
    (8, 16, 1, "train.micro_batch_size"),
])
def test_a_batch_that_does_not_split_names_its_key(batch_size, micro_batch_size, ranks, key):
    with pytest.raises(ValueError, match=key):
        rank_parts(batch_size, micro_batch_size, World(0, ranks))


def test_each_rank_draws_its_own_random_numbers_at_each_step():
    def draw(world: World, step: int) -> torch.Tensor:
        world.seed_step(base_seed=7, step=step)
        return torch.rand(4)

    assert not torch.equal(draw(World(0, 2), 3), draw(World(1, 2), 3))  # ranks: their own noise
    assert not torch.equal(draw(World(0, 2), 3), draw(World(0, 2), 4))
    assert torch.equal(draw(World(1, 2), 3), draw(World(1, 2), 3))  # a resumed step draws the same
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    assert torch.equal(draw(World(), 3), expected)  # a single process keeps its one stream


def _rank(rank: int, world: int, folder: Path, assets: Path, runs: dict[str, dict]) -> None:
    join_gloo(rank, world, folder)
    torch.set_num_threads(1)
    saves: list[str] = []  # the checkpoints whose weights this rank wrote
    save_file = checkpoints.save_file
    checkpoints.save_file = (
        lambda tensors, path: saves.append(Path(path).parent.name) or save_file(tensors, path)
    )
    try:
        for name, train_values in runs.items():
            saves.clear()
            config = align_config(assets, **train_values)
            objective = fresh_objective(config)
            tracker = RecordingTracker()
            train(objective, config.train, folder / name, tracker, progress=False)
            torch.save({"metrics": tracker.metrics, "params": tracker.params, "saves": list(saves),
                        "model": objective.trainable.state_dict()}, folder / f"{name}-{rank}.pt")
    finally:
        dist.destroy_process_group()


def _single_process(assets: Path, run_dir: Path) -> tuple[RecordingTracker, dict[str, torch.Tensor]]:
    config = align_config(assets)
    objective = fresh_objective(config)
    tracker = RecordingTracker()
    train(objective, config.train, run_dir, tracker, progress=False)
    return tracker, objective.trainable.state_dict()


def test_two_ranks_train_like_one_process_on_the_same_global_batch(tiny_assets, tmp_path):
    single, single_model = _single_process(tiny_assets, tmp_path / "single")
    runs = {"ddp": {}, "ddp-accumulating": {"micro_batch_size": 2}}
    mp.spawn(_rank, args=(2, tmp_path, tiny_assets, runs), nprocs=2, join=True)

    for name, accumulation in (("ddp", 1), ("ddp-accumulating", 2)):
        rank0, rank1 = torch.load(tmp_path / f"{name}-0.pt"), torch.load(tmp_path / f"{name}-1.pt")
        logged = {key: [value for _, value in series] for key, series in rank0["metrics"].items()}
        assert rank0["params"] == {"train/world_size": 2, "train/grad_accumulation": accumulation,
                                   "train/micro_batch_size": 4 // accumulation}
        assert "train/world_size" not in logged  # a constant of the run, not a metric
        for key in ("train/loss", "train/mse_loss", "heldout/mse_loss"):
            assert len(logged[key]) == len(single.series(key)), key
            torch.testing.assert_close(logged[key], single.series(key), rtol=1e-4, atol=0,
                                       msg=f"{name}: {key}")
        torch.testing.assert_close(rank0["model"], single_model, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(rank1["model"], rank0["model"], rtol=0, atol=0)  # DDP keeps replicas equal

        assert rank0["saves"] == [".step-00000003.partial", ".step-00000006.partial"] and rank1["saves"] == []
        # The checkpoint is the unwrapped model: a single process loads it as it is.
        written = trained_weights(tmp_path / name / "checkpoints" / "step-00000006")
        fresh_objective(align_config(tiny_assets)).trainable.load_state_dict(written)
        torch.testing.assert_close(written, rank0["model"], rtol=0, atol=0)


def _preempted_rank(rank: int, world: int, folder: Path, assets: Path) -> None:
    """Rank 0's handler stands in for submitit's (requeue, then exit); the others' do nothing,
    as submitit's do. Rank 1 gets its signal first, which must not stop anything on its own."""
    join_gloo(rank, world, folder)
    torch.set_num_threads(1)

    def requeue(signum, frame):
        raise SystemExit(-1)

    signal.signal(signal.SIGUSR2, requeue if rank == 0 else lambda signum, frame: None)
    preemption.defer(signal.SIGUSR2)
    config = align_config(assets)
    objective = fresh_objective(config)
    signalled_at = PREEMPTED_AT - 1 if rank == 0 else 1
    batch = objective.batch

    def batch_then_signal(step, part):
        if step == signalled_at:
            os.kill(os.getpid(), signal.SIGUSR2)
        return batch(step, part)

    objective.batch = batch_then_signal
    try:
        train(objective, config.train, folder / "run", RecordingTracker(), progress=False)
        exit_code = None
    except SystemExit as stop:
        exit_code = stop.code
    steps_written = [path.name for path in CheckpointStore(folder / "run" / "checkpoints").paths()]
    dist.barrier()  # both have looked before either resumes

    resumed = fresh_objective(config)
    tracker = RecordingTracker()
    train(resumed, config.train, folder / "run", tracker, progress=False)
    torch.save({"exit_code": exit_code, "checkpoints": steps_written, "metrics": tracker.metrics,
                "model": resumed.trainable.state_dict()}, folder / f"preempted-{rank}.pt")
    dist.destroy_process_group()


def test_a_preemption_stops_every_rank_at_rank_0s_step_and_resumes_there(tiny_assets, tmp_path):
    _, straight_model = _single_process(tiny_assets, tmp_path / "straight")
    mp.spawn(_preempted_rank, args=(2, tmp_path, tiny_assets), nprocs=2, join=True)

    rank0, rank1 = torch.load(tmp_path / "preempted-0.pt"), torch.load(tmp_path / "preempted-1.pt")
    assert (rank0["exit_code"], rank1["exit_code"]) == (-1, 0)
    # The periodic checkpoint at 3, and the one written for the signal, at the end of step 4.
    assert rank0["checkpoints"] == rank1["checkpoints"] == ["step-00000003", "step-00000004"]
    steps = [step for step, _ in rank0["metrics"]["train/loss"]]
    assert steps == list(range(PREEMPTED_AT + 1, STEPS + 1))  # nothing trained twice
    torch.testing.assert_close(rank0["model"], straight_model, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(rank1["model"], rank0["model"], rtol=0, atol=0)
