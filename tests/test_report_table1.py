"""Table 1's report (two panels, cited beside reproduced rows) against a throwaway MLflow store
holding runs whose summary is known by hand."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric

from repro.config.schema import Panel, TableRow, TableSpec
from repro.report.collect import collect_runs, download_dreambench_sheets
from repro.report.run_report import write_report
from repro.tracking import tags
from tests.support.mlflow_store import FakeRunStore

EXPERIMENT = "report-table1-test"
DINO, CLIP_I, CLIP_T, FID = "eval/dino", "eval/clip_i", "eval/clip_t", tags.METRIC_FID
SPEC = TableSpec(
    key="table1",
    title="Table 1",
    panels=(
        Panel("DreamBench", (DINO, CLIP_I, CLIP_T), ("DINO", "CLIP-I", "CLIP-T"), False),
        Panel("MS-COCO", (FID,), ("FID",), True),
    ),
    rows=(
        TableRow("KOSMOS-G", "kosmos-g", "zero-shot",
                 ((DINO, 0.694), (CLIP_I, 0.847), (CLIP_T, 0.287), (FID, 10.99))),
        TableRow("Real images (oracle)", "real-images", "", ((DINO, 0.774), (CLIP_I, 0.885))),
        TableRow("SD v1.5", "sd-v1-5", "T2I", ((FID, 9.34),)),
        TableRow("Textual Inversion", None, "fine-tuning",
                 ((DINO, 0.569), (CLIP_I, 0.780), (CLIP_T, 0.255))),
        TableRow("GLIDE", None, "T2I", ((FID, 12.24),)),
    ),
)
KOSMOS_SEED_0 = {DINO: 0.60, CLIP_I: 0.80, CLIP_T: 0.25, FID: 12.0}
KOSMOS_SEED_1 = {DINO: 0.64, CLIP_I: 0.84, CLIP_T: 0.27, FID: 14.0}


class _Store(FakeRunStore):
    """Table 1's runs, each with its metrics and, optionally, DreamBench sheets."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, EXPERIMENT)
        self.sheets = tmp / "sheets"

    def log(
        self,
        experiment: str,
        table: str,
        seed: int,
        metrics: dict[str, float],
        *,
        status: str = "FINISHED",
        tier: str = "tiny",
        sheets: tuple[str, ...] = (),
    ) -> None:
        run_tags = {
            tags.KIND: "run",
            tags.TABLE: table,
            tags.ROW: experiment,
            tags.EXPERIMENT: experiment,
            tags.TIER: tier,
            tags.SEED: str(seed),
            tags.CONFIG_HASH: f"{experiment}-{tier}-{seed}",
            tags.GIT_COMMIT: "abc1234",
        }
        if status == "FAILED":
            run_tags[tags.FAILURE_REASON] = "crashed: OOM"
        run_id = self.create_run(run_tags)
        logged = [Metric(name, value, 0, 0) for name, value in metrics.items()]
        self.client.log_batch(run_id, metrics=logged)
        for subject in sheets:
            sheet = self.sheets / run_id / f"{subject}.png"
            sheet.parent.mkdir(parents=True, exist_ok=True)
            matplotlib.image.imsave(sheet, np.random.default_rng(seed).random((64, 256, 3)))
            self.client.log_artifact(run_id, str(sheet), tags.DREAMBENCH_SHEETS)
        self.client.set_terminated(run_id, status)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> _Store:
    store = _Store(tmp_path_factory.mktemp("store"))
    store.log("kosmos-g", "table1", 0, KOSMOS_SEED_0, sheets=("dog", "cat"))
    # Seed 1 ran three times under one config hash: the newer FINISHED run wins over the older
    # one and over the newest, which crashed.
    store.log("kosmos-g", "table1", 1, {DINO: 0.9, CLIP_I: 0.9, CLIP_T: 0.9, FID: 99.0})
    store.log("kosmos-g", "table1", 1, KOSMOS_SEED_1, sheets=("dog", "cat", "duck"))
    store.log("kosmos-g", "table1", 1, {}, status="FAILED")
    store.log("kosmos-g", "table1", 0, {DINO: 0.1, FID: 1.0}, tier="full")
    store.log("real-images", "table1", 0, {DINO: 0.77, CLIP_I: 0.88})
    # Table 2's SD v1.5 runs fill Table 1's SD v1.5 row although they are tagged table2.
    store.log("sd-v1-5", "table2", 0, {FID: 9.0})
    store.log("sd-v1-5", "table2", 1, {FID: 10.0})
    store.log("aligner-12", "table2", 0, {FID: 9.9})
    store.log("real-images", "table1", 0, {}, status="FAILED", tier="crashed")
    return store


@pytest.fixture(scope="module")
def report(store: _Store, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("out")
    return out, write_report(store.uri, EXPERIMENT, SPEC, "tiny", out)


def _csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "table1.csv")


def _panels(out: Path) -> tuple[str, str]:
    dreambench, _, coco = (out / "table1.md").read_text().partition("### MS-COCO")
    return dreambench, coco


def test_runs_collected_by_experiment_whatever_their_table(store: _Store) -> None:
    runs = collect_runs(
        store.uri, EXPERIMENT, {"kosmos-g", "real-images", "sd-v1-5"}, "tiny", [DINO, FID]
    )
    assert sorted(zip(runs["experiment"], runs["seed"])) == [
        ("kosmos-g", 0), ("kosmos-g", 1), ("real-images", 0), ("sd-v1-5", 0), ("sd-v1-5", 1),
    ]
    kosmos = runs[runs["experiment"] == "kosmos-g"].set_index("seed")
    assert list(kosmos[DINO]) == [0.60, 0.64] and list(kosmos[FID]) == [12.0, 14.0]
    assert math.isnan(runs.loc[runs["experiment"] == "real-images", FID].item())


def test_csv_reproduced_means_std_and_deltas(report: tuple[Path, list[Path]]) -> None:
    lines = _csv(report[0]).set_index(["panel", "row", "metric"])
    for metric, paper in ((DINO, 0.694), (CLIP_I, 0.847), (CLIP_T, 0.287)):
        kosmos = lines.loc[("DreamBench", "KOSMOS-G", metric)]
        values = [KOSMOS_SEED_0[metric], KOSMOS_SEED_1[metric]]
        assert kosmos["n"] == 2 and kosmos["status"] == "ok"
        assert kosmos["mean"] == pytest.approx(np.mean(values))
        assert kosmos["std"] == pytest.approx(np.std(values, ddof=1))
        assert kosmos["delta"] == pytest.approx(np.mean(values) - paper)
        assert kosmos["source"] == "reproduced (tier tiny, n=2)"
    sd = lines.loc[("MS-COCO", "SD v1.5", FID)]
    assert (sd["n"], sd["mean"], sd["paper"]) == (2, 9.5, 9.34)
    assert sd["std"] == pytest.approx(math.sqrt(0.5))
    oracle = lines.loc[("DreamBench", "Real images (oracle)", DINO)]
    assert (oracle["n"], oracle["mean"]) == (1, 0.77) and math.isnan(oracle["std"])
    cited = lines.loc[("DreamBench", "Textual Inversion", CLIP_T)]
    assert (cited["source"], cited["status"], cited["paper"]) == ("paper (cited)", "cited", 0.255)
    assert math.isnan(cited["mean"]) and math.isnan(cited["delta"])


def test_csv_rows_are_the_metrics_each_row_has(report: tuple[Path, list[Path]]) -> None:
    lines = _csv(report[0])
    assert list(lines.columns) == [
        "panel", "row", "kind", "source", "status", "reason", "metric", "n", "mean", "std", "paper",
        "delta",
    ]
    rows_per_panel = {
        panel: sorted(set(group["row"])) for panel, group in lines.groupby("panel")
    }
    assert rows_per_panel == {
        "DreamBench": ["KOSMOS-G", "Real images (oracle)", "Textual Inversion"],
        "MS-COCO": ["GLIDE", "KOSMOS-G", "SD v1.5"],
    }
    oracle = lines[lines["row"] == "Real images (oracle)"]
    assert sorted(oracle["metric"]) == [CLIP_I, DINO]
    assert len(lines) == 3 + 2 + 3 + 1 + 1 + 1


def test_markdown_has_both_panels_cited_and_reproduced_apart(
    report: tuple[Path, list[Path]],
) -> None:
    dreambench, coco = _panels(report[0])
    assert "### DreamBench (higher is better)" in dreambench
    assert coco.startswith(" (lower is better)")
    assert (
        "| KOSMOS-G | zero-shot | reproduced (tier tiny, n=2) | 0.620 ± 0.028 (paper 0.694, -0.074)"
        " | 0.820 ± 0.028 (paper 0.847, -0.027) | 0.260 ± 0.014 (paper 0.287, -0.027) |"
    ) in dreambench
    assert (
        "| Real images (oracle) |  | reproduced (tier tiny, n=1) | 0.770 (paper 0.774, -0.004)"
        " | 0.880 (paper 0.885, -0.005) | - |"
    ) in dreambench
    assert (
        "| Textual Inversion | fine-tuning | paper (cited) | 0.569 (cited) | 0.780 (cited)"
        " | 0.255 (cited) |"
    ) in dreambench
    assert "SD v1.5" not in dreambench and "GLIDE" not in dreambench
    kosmos = "| KOSMOS-G | zero-shot | reproduced (tier tiny, n=2) | 13.00 ± 1.41 (paper 10.99, +2.01) |"
    assert kosmos in coco
    assert "| SD v1.5 | T2I | reproduced (tier tiny, n=2) | 9.50 ± 0.71 (paper 9.34, +0.16) |" in coco
    assert "| GLIDE | T2I | paper (cited) | 12.24 (cited) |" in coco
    assert "Real images" not in coco.partition("Reproduced rows:")[0]
    assert "Tier: tiny" in coco and "abc1234" in coco


def test_latex_holds_both_panels(report: tuple[Path, list[Path]]) -> None:
    latex = (report[0] / "table1.tex").read_text()
    assert latex.count(r"\begin{tabular}") == 2 and latex.count(r"\toprule") == 2
    assert r"\textbf{DreamBench (higher is better)}" in latex
    assert r"\textbf{MS-COCO (lower is better)}" in latex
    assert r"0.620 $\pm$ 0.028 (paper 0.694, -0.074)" in latex and "12.24 (cited)" in latex
    assert r"\label{tab:table1}" in latex


def test_figures_written_with_the_lowest_seeds_sheets(
    store: _Store, report: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    out, written = report
    assert {path.name for path in written} == {
        "table1.md", "table1.tex", "table1.csv", "table1_metrics.png",
        "table1_dreambench_samples.png",
    }
    for path in written:
        assert path.parent == out and path.exists()
        if path.suffix == ".png":
            assert path.stat().st_size > 10_000, path.name
    runs = collect_runs(store.uri, EXPERIMENT, {"kosmos-g"}, "tiny", [DINO])
    sheets = download_dreambench_sheets(store.uri, runs, tmp_path)
    assert sorted(sheets) == ["cat", "dog"]
    seed_0 = runs.loc[runs["seed"] == 0, "run_id"].item()
    assert all(seed_0 in str(path) for path in sheets.values())


def test_tier_without_runs_reads_missing_and_draws_no_samples(
    store: _Store, tmp_path: Path
) -> None:
    written = write_report(store.uri, EXPERIMENT, SPEC, "no-such-tier", tmp_path)
    assert {path.name for path in written} == {
        "table1.md", "table1.tex", "table1.csv", "table1_metrics.png",
    }
    lines = _csv(tmp_path)
    reproduced = lines[lines["source"] != "paper (cited)"]
    assert set(reproduced["status"]) == {"missing"} and set(reproduced["n"]) == {0}
    dreambench, coco = _panels(tmp_path)
    source = "reproduced (tier no-such-tier, n=0)"
    assert f"| KOSMOS-G | zero-shot | {source} | missing (paper 0.694) |" in dreambench
    assert f"| SD v1.5 | T2I | {source} | missing (paper 9.34) |" in coco
    assert "| GLIDE | T2I | paper (cited) | 12.24 (cited) |" in coco


def test_row_whose_runs_all_failed_reads_failed(store: _Store, tmp_path: Path) -> None:
    write_report(store.uri, EXPERIMENT, SPEC, "crashed", tmp_path)
    lines = _csv(tmp_path).set_index(["row", "metric"])
    oracle = lines.loc[("Real images (oracle)", DINO)]
    assert (oracle["status"], oracle["reason"]) == ("Failed", "run failed")
    assert lines.loc[("KOSMOS-G", DINO), "status"] == "missing"
    dreambench, _ = _panels(tmp_path)
    source = "reproduced (tier crashed, n=0)"
    assert f"| Real images (oracle) |  | {source} | Failed (paper 0.774) |" in dreambench
