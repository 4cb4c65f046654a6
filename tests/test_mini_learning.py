"""CI that notices when learning breaks: on the mini world, through `repro run` and the same
recipes, sampler and evaluation the full tier runs, the shipped mini SD must draw what held-out
captions say far better than an untrained aligner does, and a short AlignerNet run must close most
of the gap between them. A conditioner wired to the wrong hidden states, a guidance sign error, a
swapped scheduler or a broken aligning loss each pull a row toward the floor."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.tracking import tags
from tests.support.workdirs import ONE_THREAD, child_runs, new_workdir, repro

pytestmark = pytest.mark.slow

# Attribute accuracy averaged over the attributes a caption names (shape, colour, size,
# position, count, background), so that every one of them counts toward the gap.
ATTRIBUTES = ("count", "background", "shape", "colour", "size", "position")
ROWS = ("sd-v1-5", "aligner-untrained", "aligner-12")
SHORT = [
    "--set", "fid.num_captions=64", "--set", "fid.steps=10", "--set", "data.heldout_size=32",
    "--set", f"train.steps={200}", "--set", "train.eval_every=100", "--set", "train.checkpoint_every=100",
]  # fmt: skip


def mean_accuracy(metrics: dict[str, float]) -> float:
    return sum(metrics[f"eval/attribute_accuracy/{name}"] for name in ATTRIBUTES) / len(ATTRIBUTES)


def test_the_mini_sd_beats_the_floor_and_a_short_aligner_run_closes_most_of_the_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = new_workdir(tmp_path / "work")
    only = [arg for row in ROWS for arg in ("--only", row)]
    assert repro(workdir, "run", "--tier", "mini", *only, "--seeds", "0", *ONE_THREAD, *SHORT,
                 "--executor", "debug", "--no-report") == 0  # fmt: skip
    _, runs = child_runs(workdir)
    accuracy = {run.data.tags[tags.EXPERIMENT]: mean_accuracy(run.data.metrics) for run in runs}
    ceiling, floor, aligned = (accuracy[row] for row in ROWS)
    assert ceiling > floor + 0.3, accuracy
    assert aligned - floor > 0.5 * (ceiling - floor), accuracy
