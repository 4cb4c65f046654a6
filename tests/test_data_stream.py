"""Streamed batches: the order is a pure function of (seed, step) over shard metadata, parts of a
step tile it, workers change nothing, a resumed run sees what an uninterrupted one would have,
and nothing is read before the steps asked for."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from experiments.config import DataConfig, TrainConfig
from experiments.data.batches import WHOLE, Part
from experiments.data.shards import Record, open_shards
from experiments.data.stream import ShuffledRows, Skip, StepRows, StepStream
from experiments.training.checkpoints import CheckpointStore
from experiments.training.loop import train
from experiments.training.objective import Objective
from experiments.training.tracker import RecordingTracker

BATCH = 8


@pytest.fixture
def shards_dir(tmp_path: Path) -> Path:
    """Three LAION-style parts of 13, 20 and 7 captions in row groups of 5."""
    folder = tmp_path / "laion"
    folder.mkdir()
    first = 0
    for part, n in enumerate((13, 20, 7)):
        texts = [f"caption {i}" for i in range(first, first + n)]
        pq.write_table(pa.table({"TEXT": texts}), folder / f"part-{part:05d}.snappy.parquet",
                       row_group_size=5)
        first += n
    return folder


def caption(record: Record) -> str | Skip:
    # Every caption whose number ends in 3 is "too long": skipped and replaced.
    return Skip("caption_too_long") if record.caption.endswith("3") else record.caption


def step_rows(folder: Path, seed: int = 0) -> StepRows:
    return StepRows(open_shards(str(folder)), caption, BATCH, seed)


def test_each_epoch_is_a_permutation_of_every_row_and_depends_on_the_seed(shards_dir):
    shards = open_shards(str(shards_dir))
    rows = ShuffledRows(shards, seed=0)
    assert rows.sizes == [[5, 5, 3], [5, 5, 5, 5], [5, 2]]
    for epoch in range(2):
        seen = {rows.locate(epoch * rows.total + p) for p in range(rows.total)}
        assert len(seen) == rows.total == 40
    first = [rows.locate(p) for p in range(40)]
    assert first != [rows.locate(40 + p) for p in range(40)]  # each epoch its own order
    assert first == [ShuffledRows(shards, seed=0).locate(p) for p in range(40)]
    assert first != [ShuffledRows(shards, seed=1).locate(p) for p in range(40)]


def test_parts_tile_the_step_and_skipped_rows_are_replaced_and_counted(shards_dir):
    rows = step_rows(shards_dir)
    whole = rows(3, WHOLE)
    assert len(whole.items) == BATCH and not any(c.endswith("3") for c in whole.items)
    halves = [rows(3, Part(k, 2)) for k in range(2)]
    assert halves[0].items + halves[1].items == whole.items
    skipped = sum((Counter(rows(step, WHOLE).skipped) for step in range(10)), Counter())
    assert skipped["caption_too_long"] > 0


def test_a_step_reads_only_the_groups_it_needs(shards_dir, monkeypatch):
    rows = step_rows(shards_dir)
    reads: list[tuple[str, int]] = []
    for shard in rows.rows.shards:
        original = shard.read_group
        monkeypatch.setattr(shard, "read_group",
                            lambda g, s=shard, o=original: reads.append((s.path.name, g)) or o(g))
    rows(1_000_000, WHOLE)  # deep into epoch 200000: no earlier row is read
    assert 0 < len(reads) <= 4  # 8 rows span at most a few row groups of 5


def test_workers_make_the_same_steps_in_the_same_order(shards_dir):
    rows = step_rows(shards_dir)
    parts = [Part(0, 2), Part(1, 2)]
    expected = [[rows(step, part).items for part in parts] for step in range(5, 12)]
    stream = StepStream(rows, DataConfig(train="", heldout="", num_workers=2), pin_memory=False)
    with stream.streaming(5, parts):
        assert [[stream.take(step, part) for part in parts] for step in range(5, 12)] == expected
        assert stream.take(2, parts[0]) == rows(2, parts[0]).items  # out of order: made here


class CaptionLog(Objective):
    """Trains one weight; records which captions each step drew."""

    def __init__(self, folder: Path, crash_at: int | None = None) -> None:
        self.device = torch.device("cpu")
        self.trainable = nn.Linear(1, 1)
        self.stream = StepStream(step_rows(folder), DataConfig(train="", heldout="", num_workers=1), False)
        self.drawn: dict[int, list[str]] = {}
        self.crash_at = crash_at

    def prefetching(self, start: int, parts: list[Part]) -> AbstractContextManager[None]:
        return self.stream.streaming(start, parts)

    def items(self, step: int, part: Part = WHOLE) -> torch.Tensor:
        if step == self.crash_at:
            raise KeyboardInterrupt  # a kill: nothing after the last checkpoint survives
        self.drawn[step] = self.stream.take(step, part)
        return torch.tensor([[float(len(c))] for c in self.drawn[step]])

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": ((self.trainable(x) - x) ** 2).mean()}

    def heldout(self) -> dict[str, float]:
        return {}


def test_a_run_killed_and_resumed_draws_what_an_uninterrupted_run_draws(shards_dir, tmp_path):
    config = TrainConfig(steps=12, batch_size=BATCH, log_every=4, eval_every=100, checkpoint_every=4)
    straight = CaptionLog(shards_dir)
    train(straight, config, tmp_path / "straight", RecordingTracker(), progress=False)

    killed = CaptionLog(shards_dir, crash_at=6)
    with pytest.raises(KeyboardInterrupt):
        train(killed, config, tmp_path / "killed", RecordingTracker(), progress=False)
    assert [p.name for p in CheckpointStore(tmp_path / "killed" / "checkpoints").paths()] == ["step-00000004"]
    resumed = CaptionLog(shards_dir)
    train(resumed, config, tmp_path / "killed", RecordingTracker(), progress=False)
    assert sorted(resumed.drawn) == list(range(4, 12))  # from the checkpoint's step on, no earlier one
    later = range(4, 12)
    assert {step: resumed.drawn[step] for step in later} == {step: straight.drawn[step] for step in later}
