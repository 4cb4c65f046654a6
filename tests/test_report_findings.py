"""Table 2's report on a tier that measures attribute accuracy: the Accuracy column (no paper value),
its plot, the "Findings on this tier" and "Gates" sections, read from a real MLflow store whose runs
carry the numbers. The claims and gates are the ones experiments.toml declares; the same report
over numbers that contradict them turns every verdict over."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param

from repro.config import load_matrix
from repro.config.schema import TableRow, TableSpec
from repro.report.run_report import write_report
from repro.report.summary import summarise
from repro.report.table import write_table
from repro.tracking import tags
from tests.support.mlflow_store import FakeRunStore

ROOT = Path(__file__).parents[1]
FID, ACCURACY, ONE_OBJECT = "eval/fid", "eval/attribute_accuracy", "eval/attribute_accuracy/one_object"
FLOOR = "aligner-untrained"
# Per experiment, (FID, accuracy, one-object accuracy) around which three seeds scatter.
AS_THE_PAPER_SAYS = {
    "sd-v1-5": (3.0, 0.92, 0.95),
    "e2e-linear": (30.0, 0.05, 0.08),
    "e2e-aligner": (6.0, 0.70, 0.80),
    "decoder-12": (25.0, 0.04, 0.06),
    "aligner-12": (4.0, 0.85, 0.90),
    "aligner-24": (3.9, 0.86, 0.90),
    FLOOR: (40.0, 0.01, 0.02),
}
OTHERWISE = {
    "sd-v1-5": (3.0, 0.50, 0.60),
    "e2e-linear": (5.0, 0.40, 0.50),
    "e2e-aligner": (6.0, 0.45, 0.50),
    "decoder-12": (5.5, 0.40, 0.50),
    "aligner-12": (7.0, 0.30, 0.40),
    "aligner-24": (9.0, 0.30, 0.40),
    FLOOR: (10.0, 0.30, 0.35),
}
# Counted training FLOPs and one step's, as every row that trains logs them; E2E rows' steps are
# matched to the 12-layer AlignerNet's compute, so they agree within a step.
EQUAL_COMPUTE = (1.2e12, 1.0e10)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TableSpec]:
    matrix = load_matrix(ROOT / "experiments.toml", "tiny", tiny_assets=tmp_path_factory.mktemp("assets"),
                         env={})
    return {table.key: table for table in matrix.tables}


@pytest.fixture(scope="module")
def spec(tables: dict[str, TableSpec]) -> TableSpec:
    """experiments.toml's Table 2, with the floor row the mini tier adds."""
    floor = TableRow("Untrained aligner (floor)", FLOOR, "", ())
    return replace(tables["table2"], rows=(*tables["table2"].rows, floor))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow database for the module (creating one takes seconds); an experiment per report."""
    return tmp_path_factory.mktemp("store")


def _report(numbers: dict[str, tuple[float, ...]], spec: TableSpec, tmp: Path, accuracy: bool = True,
            compute: dict[str, tuple[float, float] | None] | None = None,
            params: dict[str, tuple[dict[str, str], ...]] | None = None) -> str:
    """`compute`: per experiment, (train_flops, step_flops) instead of EQUAL_COMPUTE, or None for
    runs that logged none; `params`: per experiment, each seed's params over the ones every run
    logs (train.steps = 120, its own seed and stage-2 run, as a stage-3 run does)."""
    store = FakeRunStore(tmp.parent, tmp.name)
    parent = store.create_run({tags.KIND: "campaign"})
    for experiment, (fid, overall, one_object) in numbers.items():
        for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
            run_id = store.create_run({
                tags.KIND: "run", "mlflow.parentRunId": parent, tags.TABLE: "table2",
                tags.ROW: experiment, tags.EXPERIMENT: experiment,  # the report reads rows by experiment
                tags.TIER: "mini", tags.SEED: str(seed), tags.CONFIG_HASH: f"{experiment}-{seed}",
            })
            metrics = [Metric(FID, fid + 10 * jitter, 0, 0)]
            flops = (compute or {}).get(experiment, EQUAL_COMPUTE)
            if flops is not None:
                metrics += [Metric(tags.METRIC_TRAIN_FLOPS, flops[0], 0, 0),
                            Metric(tags.METRIC_STEP_FLOPS, flops[1], 0, 0)]
            if accuracy:
                metrics += [Metric(ACCURACY, overall + jitter, 0, 0),
                            Metric(ONE_OBJECT, one_object + jitter, 0, 0)]
            logged = {"seed": str(seed), "train.init_from": f"@run/{experiment}-{seed}", "train.steps": "120",
                      **(params or {}).get(experiment, ({},) * 3)[seed]}
            store.client.log_batch(run_id, metrics=metrics,
                                   params=[Param(key, value) for key, value in logged.items()])
            store.client.set_terminated(run_id, "FINISHED")
    out = tmp / "out"
    written = write_report(store.uri, tmp.name, spec, "mini", out)
    assert (out / "table2_attribute_accuracy_per_row.png" in written) == accuracy
    return (out / "table2.md").read_text()


def _verdicts(markdown: str, heading: str) -> list[str]:
    section = markdown.split(heading, 1)[1].split("\n\n", 2)[1]
    return [line for line in section.splitlines() if line.startswith("- ")]


def test_the_accuracy_column_findings_and_gates_as_the_paper_says(spec, store_dir) -> None:
    markdown = _report(AS_THE_PAPER_SAYS, spec, store_dir / "as-the-paper-says")
    assert "| Method | Source | FID | Accuracy |" in markdown
    # Mean ± std over three seeds, and no paper value beside the accuracy.
    sd = "| SD v1.5 | reproduced (tier mini, n=3) | 3.00 ± 0.10 (paper 9.34, -6.34) | 0.92 ± 0.01 |"
    assert sd in markdown
    legend = "Accuracy: eval/attribute_accuracy, measured here only (the paper has none; higher is better)."
    assert legend in markdown
    findings = _verdicts(markdown, "### Findings on this tier")
    assert [line.split("**: ")[1].split(".")[0] for line in findings] == ["reproduces"] * 4
    # Each row's accuracy stands beside its FID, which alone decides.
    assert findings[0].endswith("E2E w/o AlignerNet: FID 30.00 ± 0.10 (n=3), Failed (mean > 3 x SD v1.5), "
                                "Accuracy 0.05 ± 0.01.")
    assert "12-Layers AlignerNet: FID 4.00 ± 0.10 (n=3), Accuracy 0.85 ± 0.01; E2E w/" in findings[2]
    assert "Accuracy beside a row's FID is shown, not read: the claims are on the paper's metric." in markdown
    gates = _verdicts(markdown, "### Gates")
    assert [line.split("**")[1] for line in gates] == ["PASS"] * 4
    assert "### Rows whose seeds ran different configs" not in markdown  # seeds differ by seed alone
    assert "Untrained aligner (floor): eval/attribute_accuracy = 0.01 (n=3); needs <= 0.1." in gates[1]
    assert "SD v1.5: eval/fid = 3 (n=3); needs <= 0.2 x Untrained aligner (floor)'s 40 (n=3) = 8." in gates[2]


def test_numbers_against_the_paper_turn_every_verdict(spec, store_dir) -> None:
    markdown = _report(OTHERWISE, spec, store_dir / "otherwise")
    findings = _verdicts(markdown, "### Findings on this tier")
    assert [line.split("**: ")[1].split(".")[0] for line in findings] == ["does not reproduce"] * 4
    # The baseline's bound is on FID alone.
    assert findings[0].endswith("E2E w/o AlignerNet: FID 5.00 ± 0.10 (n=3), Accuracy 0.40 ± 0.01, not "
                                "Failed: at most 3 x SD v1.5: FID 3.00 ± 0.10 (n=3) = 9.00.")
    assert [line.split("**")[1] for line in _verdicts(markdown, "### Gates")] == ["FAIL"] * 4


def test_two_failed_rows_compare_nothing_and_a_failed_row_loses_to_a_working_one(spec, store_dir) -> None:
    # What the mini tier's 120 aligning steps give: both AlignerNet rows far above 3 x SD v1.5.
    too_few_steps = {**AS_THE_PAPER_SAYS, "aligner-12": (20.0, 0.0, 0.0), "aligner-24": (25.0, 0.0, 0.0)}
    markdown = _report(too_few_steps, spec, store_dir / "both-failed")
    findings = [line.split("**: ")[1] for line in _verdicts(markdown, "### Findings on this tier")]
    assert findings[2].startswith("does not reproduce. 12-Layers AlignerNet: FID 20.00 ± 0.10 (n=3), Failed")
    assert findings[3].startswith("cannot be checked. 24-Layers AlignerNet: FID 25.00 ± 0.10 (n=3), Failed")
    assert findings[3].endswith("Both Failed: two rows that made no meaningful images compare nothing.")


def test_a_claim_at_equal_compute_is_not_checked_on_rows_that_trained_unequally(spec, store_dir) -> None:
    # What `--set train.steps=5000` on the 12-layer AlignerNet alone gives: 40 times the compute.
    more_steps = {"aligner-12": (40 * EQUAL_COMPUTE[0], EQUAL_COMPUTE[1])}
    markdown = _report(AS_THE_PAPER_SAYS, spec, store_dir / "unequal-compute", compute=more_steps)
    findings = _verdicts(markdown, "### Findings on this tier")
    assert findings[2].startswith("- **aligning with AlignerNet beats E2E w/ AlignerNet at equal compute**: "
                                  "cannot be checked. 12-Layers AlignerNet: FID 4.00 ± 0.10 (n=3)")
    assert findings[2].endswith("Not at equal compute: 12-Layers AlignerNet trained 4.8e+13 FLOPs and E2E w/ "
                                "AlignerNet 1.2e+12, more than a step apart; run both at the steps the tier "
                                "declares.")
    # The other claims read FID alone; the 24-layer one compares it with the 12-layer row as before.
    assert [line.split("**: ")[1].split(".")[0] for line in findings] == ["reproduces"] * 2 + [
        "cannot be checked", "reproduces"]
    # Rounded to whole steps, the E2E row (three times the cost of a step) can land half of its
    # own step away: still equal compute.
    e2e_step = 3 * EQUAL_COMPUTE[1]
    rounded = {"e2e-aligner": (EQUAL_COMPUTE[0] + e2e_step / 2, e2e_step)}
    close = _verdicts(_report(AS_THE_PAPER_SAYS, spec, store_dir / "rounded-steps", compute=rounded),
                      "### Findings on this tier")
    assert close[2].split("**: ")[1].startswith("reproduces.")
    no_compute = _report(AS_THE_PAPER_SAYS, spec, store_dir / "no-compute", compute={"e2e-aligner": None})
    untracked = _verdicts(no_compute, "### Findings on this tier")
    assert untracked[2].endswith("E2E w/ AlignerNet logged no training compute (compute/train_flops, "
                                 "compute/step_flops) to compare.")


def test_a_row_whose_seeds_ran_different_configs_is_read_by_no_finding_or_gate(spec, store_dir) -> None:
    # What `repro run --only aligner-12 --seeds 0 --set train.steps=10000` leaves in the store.
    # And the SD row's seed 0 re-run after the harness began logging a new key: not a difference.
    later = {"aligner-12": ({"train.steps": "10000"}, {}, {}), "sd-v1-5": ({"train.new_key": "0.0"}, {}, {})}
    markdown = _report(AS_THE_PAPER_SAYS, spec, store_dir / "mixed", params=later)
    differs = "train.steps: 10000 (seed 0), 120 (seeds 1, 2)"
    row = next(line for line in markdown.splitlines() if line.startswith("| 12-Layers AlignerNet |"))
    assert row.endswith("| its seeds ran different configs (see below) |")
    assert _verdicts(markdown, "### Rows whose seeds ran different configs") == [
        f"- **12-Layers AlignerNet** (aligner-12): {differs}"]
    unread = (f"cannot be checked. 12-Layers AlignerNet's seeds ran different configs ({differs}); run every "
              "seed of it with the same settings.")
    findings = [line.split("**: ")[1] for line in _verdicts(markdown, "### Findings on this tier")]
    assert findings[2:] == [unread, unread]  # the two claims on the 12-layer row
    assert [line.split(".")[0] for line in findings[:2]] == ["reproduces"] * 2
    gates = _verdicts(markdown, "### Gates")
    assert [line.split("**")[1] for line in gates] == ["PASS"] * 3 + ["not measured"]
    assert gates[3].endswith(unread.removeprefix("cannot be checked. "))


def test_24_layers_against_12_are_compared_only_at_the_same_steps(spec, store_dir) -> None:
    # Every seed of the 12-layer row run again at 10,000 steps: one config, but not the 24-layer row's.
    longer = {"aligner-12": ({"train.steps": "10000"},) * 3}
    markdown = _report(AS_THE_PAPER_SAYS, spec, store_dir / "other-steps", params=longer)
    assert "### Rows whose seeds ran different configs" not in markdown
    findings = [line.split("**: ")[1] for line in _verdicts(markdown, "### Findings on this tier")]
    assert findings[3].startswith("cannot be checked. 24-Layers AlignerNet: FID 3.90 ± 0.10 (n=3)")
    assert findings[3].endswith("Not at the same train.steps: 24-Layers AlignerNet 120 and 12-Layers "
                                "AlignerNet 10000; run both with the same.")
    assert [line.split(".")[0] for line in findings[:3]] == ["reproduces"] * 3
    # A key the rows' runs never logged (no test run logs train.rec_weight) cannot be compared.
    unlogged = replace(spec.findings[3], same_params=("train.rec_weight",))
    other_key = replace(spec, findings=(*spec.findings[:3], unlogged))
    markdown = _report(AS_THE_PAPER_SAYS, other_key, store_dir / "unlogged-key")
    finding = _verdicts(markdown, "### Findings on this tier")[3]
    assert finding.split("**: ")[1].startswith("cannot be checked.")
    assert finding.endswith("24-Layers AlignerNet logged no train.rec_weight to compare.")


def test_missing_rows_are_named_and_a_tier_without_accuracy_has_no_gates(spec, store_dir) -> None:
    numbers = {name: values for name, values in AS_THE_PAPER_SAYS.items() if name != "aligner-24"}
    no_floor = replace(spec, rows=tuple(row for row in spec.rows if row.experiment != FLOOR))
    markdown = _report(numbers, no_floor, store_dir / "missing-rows")
    findings = _verdicts(markdown, "### Findings on this tier")
    assert findings[3].endswith("cannot be checked. 24-Layers AlignerNet has no finished run.")
    gates = _verdicts(markdown, "### Gates")
    assert gates[1] == ("- **not measured** the untrained aligner is near chance: experiment "
                        "'aligner-untrained' is no row of table2 at this tier.")
    plain = _report(numbers, no_floor, store_dir / "no-accuracy", accuracy=False)
    assert "### Gates" not in plain and "Accuracy" not in plain and "### Findings on this tier" in plain


def test_table1_shows_accuracy_in_its_fid_panel_alone(tables, tmp_path) -> None:
    table1 = tables["table1"]
    scores = {"eval/dino": 0.6, "eval/clip_i": 0.8, "eval/clip_t": 0.3, FID: 5.0, ACCURACY: 0.8}
    runs = pd.DataFrame([{"run_id": "k", "experiment": "kosmos-g", "seed": 0, "status": "FINISHED",
                          "failure_reason": None, "params": {}, **scores}])
    write_table(summarise(runs, table1, "mini"), table1, tmp_path, "caption")
    dreambench, coco = (tmp_path / "table1.md").read_text().split("### MS-COCO", 1)
    assert "Accuracy" not in dreambench
    assert "| Method | Kind | Source | FID | Accuracy |" in coco
    assert "| KOSMOS-G | zero-shot | reproduced (tier mini, n=1) | 5.00 (paper 10.99, -5.99) | 0.80 |" in coco
    assert "| GLIDE | T2I | paper (cited) | 12.24 (cited) | - |" in coco
