"""repro.report against a throwaway MLflow store holding runs whose summary is known by hand."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric

from repro.config.schema import FailureRule, Panel, TableRow, TableSpec
from repro.report.collect import collect_runs
from repro.report.plots import compute_axis
from repro.report.run_report import write_report
from repro.tracking import tags
from tests.support.mlflow_store import FakeRunStore

EXPERIMENT = "report-test"
FID = tags.METRIC_FID
EXPERIMENTS = {
    "SD v1.5": "sd",
    "E2E w/o AlignerNet": "e2e_linear",
    "E2E w/ AlignerNet": "e2e_aligner",
    "12-Layers AlignerNet": "aligner12",
    "24-Layers AlignerNet": "aligner24",
}
PAPER = {"SD v1.5": 9.34, "E2E w/o AlignerNet": None, "E2E w/ AlignerNet": 11.30,
         "12-Layers AlignerNet": 9.89, "24-Layers AlignerNet": 9.55}
SPEC = TableSpec(
    key="table2",
    title="Table 2",
    panels=(Panel("MS-COCO FID", (FID,), ("FID",), True),),
    rows=tuple(TableRow(row, EXPERIMENTS[row], "", ((FID, paper),)) for row, paper in PAPER.items()),
    failure_rule=FailureRule(baseline_row="SD v1.5", failed_above_baseline_ratio=2.0),
)


class _Store(FakeRunStore):
    """Table 2's runs under one campaign, with FIDs, loss curves and sample grids."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, EXPERIMENT)
        self.grid = tmp / "grid.png"
        matplotlib.image.imsave(self.grid, np.random.default_rng(0).random((64, 128, 3)))
        self.parent = self.create_run({tags.KIND: "campaign"})

    def log(
        self,
        row: str,
        seed: int,
        fid: float | None,
        *,
        status: str = "FINISHED",
        failure: str | None = None,
        config_hash: str | None = None,
        tier: str = "tiny",
        table: str = "table2",
        experiment: str | None = None,
        trains: bool = True,
        scored_with: tuple[str, str] | None = None,  # (FID implementation, preprocessing) tags
        train_flops: float | None = None,
    ) -> None:
        run_tags = {
            tags.KIND: "run",
            "mlflow.parentRunId": self.parent,
            tags.TABLE: table,
            tags.ROW: row,
            tags.EXPERIMENT: experiment or EXPERIMENTS[row],
            tags.TIER: tier,
            tags.SEED: str(seed),
            tags.CONFIG_HASH: config_hash or f"{table}-{tier}-{row}-{seed}",
            tags.GIT_COMMIT: "abc1234",
        }
        if failure is not None:
            run_tags[tags.FAILURE_REASON] = failure
        if scored_with is not None:
            run_tags[tags.FID_IMPLEMENTATION], run_tags[tags.FID_PREPROCESSING] = scored_with
        run_id = self.create_run(run_tags)
        metrics = [Metric(tags.METRIC_DEVICE_HOURS, 0.5 + seed, 0, 0)]
        if train_flops is not None:
            metrics.append(Metric(tags.METRIC_TRAIN_FLOPS, train_flops, 0, 0))
        if fid is not None:
            metrics.append(Metric(tags.METRIC_FID, fid, 0, 0))
        if trains:
            losses = [1.0 / (step + 1) + seed for step in range(5)]
            metrics += [Metric(tags.METRIC_TRAIN_LOSS, v, 0, step) for step, v in enumerate(losses)]
        self.client.log_batch(run_id, metrics=metrics)
        if status == "FINISHED":
            folder = tags.SAMPLE_GRID_ARTIFACT.rsplit("/", 1)[0]
            self.client.log_artifact(run_id, str(self.grid), folder)
        self.client.set_terminated(run_id, status)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> _Store:
    store = _Store(tmp_path_factory.mktemp("store"))
    store.log("SD v1.5", 0, 9.0, trains=False)
    store.log("SD v1.5", 1, 10.0, trains=False)
    diverged = "diverged: loss is NaN at step 3"
    store.log("E2E w/o AlignerNet", 0, None, status="FAILED", failure=diverged)
    store.log("E2E w/o AlignerNet", 1, 12.0)
    store.log("E2E w/ AlignerNet", 0, 40.0)  # way above 2 x the baseline's 9.5
    store.log("E2E w/ AlignerNet", 1, 42.0)
    store.log("12-Layers AlignerNet", 0, 10.0)
    # Seed 1 ran three times: the newer FINISHED one wins over the older one and the newest crash.
    store.log("12-Layers AlignerNet", 1, 30.0, config_hash="a12-s1")
    store.log("12-Layers AlignerNet", 1, 11.0, config_hash="a12-s1")
    store.log("12-Layers AlignerNet", 1, None, config_hash="a12-s1", status="FAILED",
              failure="crashed: OOM")
    # Runs of another tier, or of an experiment outside the table (here one of Table 1's under
    # the same row label), must not leak in; "24-Layers AlignerNet" has none at tiny.
    store.log("24-Layers AlignerNet", 0, 9.5, tier="full")
    store.log("12-Layers AlignerNet", 0, 99.0, table="table1", experiment="kosmos-g")
    return store


@pytest.fixture(scope="module")
def report(store: _Store, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("out")
    return out, write_report(store.uri, EXPERIMENT, SPEC, "tiny", out)


def _csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "table2.csv").set_index("row")


def test_means_std_n_and_delta(report: tuple[Path, list[Path]]) -> None:
    summary = _csv(report[0])
    assert list(summary.index) == [row.name for row in SPEC.rows]
    sd, aligner = summary.loc["SD v1.5"], summary.loc["12-Layers AlignerNet"]
    assert (sd["n"], sd["mean"], sd["std"]) == (2, 9.5, pytest.approx(math.sqrt(0.5)))
    assert sd["delta"] == pytest.approx(9.5 - 9.34)
    assert (aligner["n"], aligner["mean"], aligner["status"]) == (2, 10.5, "ok")
    assert aligner["std"] == pytest.approx(math.sqrt(0.5))
    assert aligner["delta"] == pytest.approx(10.5 - 9.89)


def test_failure_rule_and_missing_rows(report: tuple[Path, list[Path]]) -> None:
    summary = _csv(report[0])
    assert summary.loc["E2E w/o AlignerNet", "status"] == "Failed"
    assert summary.loc["E2E w/o AlignerNet", "reason"] == "diverged"
    assert summary.loc["E2E w/ AlignerNet", "status"] == "Failed"
    assert summary.loc["E2E w/ AlignerNet", "mean"] == 41.0
    assert summary.loc["24-Layers AlignerNet", "status"] == "missing"
    assert summary.loc["24-Layers AlignerNet", "n"] == 0
    for row in ("E2E w/o AlignerNet", "E2E w/ AlignerNet", "24-Layers AlignerNet"):
        assert math.isnan(summary.loc[row, "delta"])


def test_markdown_and_latex_show_paper_values(report: tuple[Path, list[Path]]) -> None:
    out = report[0]
    markdown = (out / "table2.md").read_text()
    assert "### MS-COCO FID (lower is better)" in markdown
    assert "| Method | Source | FID | Note |" in markdown  # no row has a kind
    for line in (
        "| 12-Layers AlignerNet | reproduced (tier tiny, n=2) | 10.50 ± 0.71 (paper 9.89, +0.61) |  |",
        "| E2E w/o AlignerNet | reproduced (tier tiny, n=1) | Failed (paper Failed) | diverged |",
        "| E2E w/ AlignerNet | reproduced (tier tiny, n=2) | Failed (paper 11.30) | mean > 2 x SD v1.5 |",
        "| 24-Layers AlignerNet | reproduced (tier tiny, n=0) | missing (paper 9.55) | no finished run |",
    ):
        assert line in markdown
    assert "Failed: the row's runs diverged, or its mean exceeds 2 x SD v1.5's." in markdown
    assert "Tier: tiny" in markdown and "abc1234" in markdown
    latex = (out / "table2.tex").read_text()
    for value in ("9.34", "11.30", "9.89", "9.55", r"10.50 $\pm$ 0.71"):
        assert value in latex


def test_every_file_written_and_plots_non_trivial(report: tuple[Path, list[Path]]) -> None:
    out, written = report
    names = {path.name for path in written}
    assert names == {
        "table2.md", "table2.tex", "table2.csv", "table2_loss_curves.png",
        "table2_fid_per_row.png", "table2_fid_vs_compute.png", "table2_samples.png",
    }
    for path in written:
        assert path.parent == out
        if path.suffix == ".png":
            assert path.stat().st_size > 10_000, path.name
    # The rows' sample grids stand side by side (four to a line), not in one tall column.
    height, width, _ = matplotlib.image.imread(out / "table2_samples.png").shape
    assert width > height


def test_tier_without_runs_reports_every_row_missing(store: _Store, tmp_path: Path) -> None:
    written = write_report(store.uri, EXPERIMENT, SPEC, "no-such-tier", tmp_path)
    assert set(_csv(tmp_path)["status"]) == {"missing"}
    assert all(path.exists() for path in written)


def test_unknown_experiment_is_an_error(store: _Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no-such-experiment"):
        write_report(store.uri, "no-such-experiment", SPEC, "tiny", tmp_path)


OFFICIAL = ("torch-fidelity 0.4.0 inception-v3-compat", "float-bilinear-short256-centercrop256-uint8trunc")


def test_fids_of_one_rule_are_named_under_the_table(tmp_path: Path) -> None:
    store = _Store(tmp_path / "store")
    store.log("SD v1.5", 0, 9.0, trains=False, scored_with=OFFICIAL)
    store.log("12-Layers AlignerNet", 0, 10.0, scored_with=OFFICIAL)
    write_report(store.uri, EXPERIMENT, SPEC, "tiny", tmp_path / "out")
    assert f"FID: {OFFICIAL[0]}, {OFFICIAL[1]}." in (tmp_path / "out" / "table2.md").read_text()


def test_fids_of_different_resize_rules_never_share_a_table(tmp_path: Path) -> None:
    store = _Store(tmp_path / "store")
    store.log("SD v1.5", 0, 9.0, trains=False, scored_with=OFFICIAL)
    store.log("12-Layers AlignerNet", 0, 10.0, scored_with=(OFFICIAL[0], "bicubic-short256-centercrop256"))
    store.log("24-Layers AlignerNet", 0, 9.7)  # logged before runs were tagged
    with pytest.raises(ValueError, match="3 different ways") as error:
        write_report(store.uri, EXPERIMENT, SPEC, "tiny", tmp_path / "out")
    for named in (f"{OFFICIAL[1]}: sd", "bicubic-short256-centercrop256: aligner12", "untagged: aligner24"):
        assert named in str(error.value)
    assert not (tmp_path / "out" / "table2.md").exists()


def test_metrics_are_plotted_against_counted_flops_where_every_run_counted_them(tmp_path: Path) -> None:
    store = _Store(tmp_path / "store")
    store.log("SD v1.5", 0, 9.0, trains=False, train_flops=0.0)
    store.log("12-Layers AlignerNet", 0, 10.0, train_flops=4.6e20)
    store.log("E2E w/ AlignerNet", 0, 11.0, train_flops=4.6e20)  # matched compute: the same x
    runs = collect_runs(store.uri, EXPERIMENT, set(EXPERIMENTS.values()), "tiny", [FID])
    assert compute_axis(runs) == ("train_flops", "training FLOPs (counted)")
    store.log("24-Layers AlignerNet", 0, 9.7)  # a run that counted nothing: back to device-hours
    runs = collect_runs(store.uri, EXPERIMENT, set(EXPERIMENTS.values()), "tiny", [FID])
    assert compute_axis(runs) == ("device_hours", "device-hours (training)")
