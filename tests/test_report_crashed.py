"""A run that crashed after logging its metric is not averaged into its row: the row says how
many of its runs crashed."""

from __future__ import annotations

from pathlib import Path

from repro.report.collect import collect_runs
from repro.report.summary import summarise
from tests.test_report import EXPERIMENT, EXPERIMENTS, FID, SPEC, _Store


def test_a_crashed_run_is_left_out_of_the_mean_and_noted(tmp_path: Path):
    store = _Store(tmp_path)
    store.log("SD v1.5", 0, 9.0, trains=False)
    store.log("SD v1.5", 1, 11.0, trains=False)
    store.log("SD v1.5", 2, 50.0, trains=False, status="FAILED", failure="crashed: RuntimeError: exporting")
    runs = collect_runs(store.uri, EXPERIMENT, set(EXPERIMENTS.values()), "tiny", SPEC.metrics)
    line = summarise(runs, SPEC, "tiny").set_index(["row", "metric"]).loc[("SD v1.5", FID)]
    assert line["status"] == "ok" and line["n"] == 2 and line["mean"] == 10.0
    assert line["reason"] == "1 of 3 runs crashed (left out)"
