"""Every table takes one path, summarise then write_table, whatever its shape: Table 2's one
panel with a failure rule as well as Table 1's two panels with cited rows. The runs are made by
hand, as collect_runs returns them, so each case needs no MLflow store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from repro.config.schema import FailureRule, Panel, TableRow, TableSpec
from repro.report.summary import summarise
from repro.report.table import write_table

FID, DINO, LPIPS = "eval/fid", "eval/dino", "eval/lpips"
TABLE2 = TableSpec(
    key="table2",
    title="Table 2",
    panels=(Panel("MS-COCO FID", (FID,), ("FID",), True),),
    rows=(
        TableRow("SD v1.5", "sd", "", ((FID, 9.34),)),
        TableRow("E2E w/o AlignerNet", "e2e", "", ((FID, None),)),
    ),
    failure_rule=FailureRule("SD v1.5", 3.0),
)
TABLE1 = TableSpec(
    key="table1",
    title="Table 1",
    panels=(Panel("DreamBench", (DINO,), ("DINO",), False), Panel("MS-COCO", (FID,), ("FID",), True)),
    rows=(
        TableRow("KOSMOS-G", "kosmos", "zero-shot", ((DINO, 0.694), (FID, 10.99))),
        TableRow("GLIDE", None, "T2I", ((FID, 12.24),)),
    ),
)


def _runs(*runs: tuple[str, int, str, str, dict[str, float]]) -> pd.DataFrame:
    """(experiment, seed, status, failure reason, metrics) per run, each of one config."""
    lines = [
        {"run_id": f"{experiment}-{seed}", "experiment": experiment, "seed": seed, "status": status,
         "failure_reason": reason or None, "git_commit": "abc1234", "params": {"seed": str(seed)}, **metrics}
        for experiment, seed, status, reason, metrics in runs
    ]
    columns = ["run_id", "experiment", "seed", "status", "failure_reason", "git_commit", "params", FID, DINO,
               LPIPS]
    return pd.DataFrame(lines).reindex(columns=columns)


def _write(runs: pd.DataFrame, spec: TableSpec, out: Path) -> str:
    written = write_table(summarise(runs, spec, "tiny"), spec, out, "caption")
    assert [path.name for path in written] == [f"{spec.key}.{ext}" for ext in ("md", "tex", "csv")]
    return (out / f"{spec.key}.md").read_text()


def test_table2_and_table1_are_written_by_the_same_writer(tmp_path: Path) -> None:
    table2 = _write(_runs(("sd", 0, "FINISHED", "", {FID: 9.0}),
                          ("e2e", 0, "FAILED", "diverged: NaN", {})), TABLE2, tmp_path)
    table1 = _write(_runs(("kosmos", 0, "FINISHED", "", {DINO: 0.6, FID: 12.0})), TABLE1, tmp_path)
    # One layout: a heading and a grid per panel, rows with their source, then the legend.
    assert table2.startswith("### MS-COCO FID (lower is better)\n\n| Method | Source | FID | Note |")
    assert "| SD v1.5 | reproduced (tier tiny, n=1) | 9.00 (paper 9.34, -0.34) |  |" in table2
    assert "| E2E w/o AlignerNet | reproduced (tier tiny, n=0) | Failed (paper Failed) | diverged |" in table2
    assert table1.startswith("### DreamBench (higher is better)\n\n| Method | Kind | Source | DINO |")
    assert "### MS-COCO (lower is better)\n\n| Method | Kind | Source | FID |" in table1
    assert "| KOSMOS-G | zero-shot | reproduced (tier tiny, n=1) | 12.00 (paper 10.99, +1.01) |" in table1
    assert "| GLIDE | T2I | paper (cited) | 12.24 (cited) |" in table1
    for markdown in (table1, table2):
        assert "Reproduced rows: mean ± std over seeds" in markdown and markdown.endswith("_caption_\n")
    assert "Failed: the row's runs diverged, or its mean exceeds 3 x SD v1.5's." in table2
    assert "Failed:" not in table1 and "Cited rows:" not in table2


def test_the_failure_rule_judges_each_metric_of_its_panel(tmp_path: Path) -> None:
    spec = TableSpec(
        key="ablation",
        title="Ablation",
        panels=(Panel("Quality", (FID, LPIPS), ("FID", "LPIPS"), True),),
        rows=(TableRow("base", "base", "", ()), TableRow("variant", "variant", "", ())),
        failure_rule=FailureRule("base", 2.0),
    )
    runs = _runs(("base", 0, "FINISHED", "", {FID: 10.0, LPIPS: 0.1}),
                 ("variant", 0, "FINISHED", "", {FID: 15.0, LPIPS: 0.3}))
    summary = summarise(runs, spec, "tiny").set_index(["row", "metric"])
    assert summary.loc[("variant", FID), "status"] == "ok"
    assert summary.loc[("variant", LPIPS), ["status", "reason"]].tolist() == ["Failed", "mean > 2 x base"]
    assert "| variant | reproduced (tier tiny, n=1) | 15.00 | Failed | mean > 2 x base |" in _write(
        runs, spec, tmp_path)


@pytest.mark.parametrize("spec, status, reason", [
    (TABLE2, "missing", "no finished run"),  # under a rule, Failed is the rule's verdict alone
    (TABLE1, "Failed", "run failed"),
])
def test_a_row_whose_runs_crashed(spec: TableSpec, status: str, reason: str) -> None:
    row = spec.reproduced[0]
    summary = summarise(_runs((row.experiment, 0, "FAILED", "crashed: OOM", {})), spec, "tiny")
    line = summary[(summary["row"] == row.name) & (summary["metric"] == FID)].iloc[0]
    assert (line["status"], line["reason"], line["n"]) == (status, reason, 0)
