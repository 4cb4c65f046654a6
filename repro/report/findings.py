"""The report's "Findings on this tier": each claim a table declares (TableSpec.findings) checked
against the table's summary, on its first metric (Table 2: FID), from the measured means, spreads
and seed counts; a claim at equal compute also against the runs' counted training FLOPs, and one
held to `same_params` against the params the runs logged. The panel's beyond-paper columns (the
mini world's accuracy) stand beside each row's figure and decide nothing: the paper's claims are
on its own metric. A pure function of the summary and the runs: the same numbers, the same
verdicts."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from repro.config.schema import Finding, TableSpec
from repro.report.mixed_configs import mixed_configs, why_unread
from repro.report.summary import FAILED, OK

REPRODUCES, DOES_NOT_REPRODUCE, NOT_CHECKED = "reproduces", "does not reproduce", "cannot be checked"
HEADING = "### Findings on this tier"


@dataclass(frozen=True)
class FindingResult:
    finding: Finding
    verdict: str  # REPRODUCES, DOES_NOT_REPRODUCE or NOT_CHECKED
    evidence: str  # the numbers it rests on, or what is missing


@dataclass(frozen=True)
class _Measured:
    row: str
    status: str
    reason: str
    n: int
    mean: float
    std: float
    beside: str = ""  # the row's beyond-paper columns, e.g. "Accuracy 0.00 ± 0.00"

    def text(self, label: str) -> str:
        failed = f", Failed ({self.reason})" if self.status == FAILED else ""
        beside = f", {self.beside}" if self.beside else ""
        return f"{self.row}: {label} {_value(self.mean, self.std, self.n)} (n={self.n}){failed}{beside}"

    @property
    def spread(self) -> float:
        return 0.0 if math.isnan(self.std) else self.std


def check_findings(summary: pd.DataFrame, spec: TableSpec, runs: pd.DataFrame) -> list[FindingResult]:
    """`runs` as collect_runs gives them: their `train_flops` and `step_flops` say whether two rows
    trained at equal compute, their `params` whether a row's seeds ran one config."""
    mixed = mixed_configs(runs)
    return [_check(finding, summary, spec, runs, mixed) for finding in spec.findings]


def findings_section(results: list[FindingResult], spec: TableSpec, logged: set[str]) -> str:
    """`logged`: the beyond-paper metrics some run logged (summary.beyond_paper_logged)."""
    metric = spec.metrics[0]
    lines = [f"{HEADING}\n",
             f"The paper's claims, checked on {_label(spec)} ({metric}) as measured at this tier: mean ± std"
             f" over n seeds."]
    shown = [column.label for column in spec.panels[0].beyond_paper if column.metric in logged]
    if shown:
        lines[-1] += (f" {' and '.join(shown)} beside a row's {_label(spec)} is shown, not read: the claims"
                      f" are on the paper's metric.")
    lines += [f"- **{result.finding.claim}**: {result.verdict}. {result.evidence}" for result in results]
    return "\n".join(lines)


def _label(spec: TableSpec) -> str:
    return spec.panels[0].labels[0]


def _check(
    finding: Finding, summary: pd.DataFrame, spec: TableSpec, runs: pd.DataFrame, mixed: dict[str, str]
) -> FindingResult:
    first, missing = _measured(finding.experiment, summary, spec)
    if first is None:
        return FindingResult(finding, NOT_CHECKED, missing)
    unread = why_unread(_rows_read(finding, spec), mixed, spec)
    if unread:
        return FindingResult(finding, NOT_CHECKED, unread)
    if finding.holds == "fails":
        return _fails(finding, first, summary, spec)
    assert finding.other is not None  # the config reader requires it for a comparison
    second, missing = _measured(finding.other, summary, spec)
    if second is None:
        return FindingResult(finding, NOT_CHECKED, missing)
    label = _label(spec)
    evidence = f"{first.text(label)}; {second.text(label)}."
    rows = {first.row: finding.experiment, second.row: finding.other}
    unequal = _unequal_compute(runs, rows) if finding.at_equal_compute else ""
    unequal = unequal or _unshared_params(runs, rows, finding.same_params)
    if unequal:
        return FindingResult(finding, NOT_CHECKED, f"{evidence} {unequal}")
    if first.status == second.status == FAILED:
        return FindingResult(finding, NOT_CHECKED, f"{evidence} Both Failed: two rows that made no meaningful"
                                                   f" images compare nothing.")
    if FAILED in (first.status, second.status):
        # A Failed row made no meaningful images: it loses to a working one.
        holds = first.status == OK
        return FindingResult(finding, REPRODUCES if holds else DOES_NOT_REPRODUCE, evidence)
    sign = 1.0 if spec.panels[0].lower_is_better else -1.0
    gain = sign * (second.mean - first.mean)  # > 0: the first row is better
    spread = max(first.spread, second.spread)
    if finding.holds == "better_than":
        holds = gain > 0
        noise = "larger than" if abs(gain) > spread else "within"
        evidence += f" Difference {abs(gain):.2f}, {noise} the seeds' spread ({spread:.2f})."
    else:
        holds = gain >= -spread
        evidence += f" Allowed: no worse than the other by more than the seeds' spread ({spread:.2f})."
    return FindingResult(finding, REPRODUCES if holds else DOES_NOT_REPRODUCE, evidence)


def _rows_read(finding: Finding, spec: TableSpec) -> list[str]:
    """The experiments whose means the claim rests on: a failure also on the failure rule's baseline."""
    if finding.other is not None:
        return [finding.experiment, finding.other]
    rule = spec.failure_rule
    baseline = next((row.experiment for row in spec.rows if rule and row.name == rule.baseline_row), None)
    return [finding.experiment, *([baseline] if baseline else [])]


def _unequal_compute(runs: pd.DataFrame, experiments: dict[str, str]) -> str:
    """Why the rows (row name -> experiment) did not train at equal compute, or "" where they did:
    their mean counted training FLOPs lie no further apart than one step of either, which is as
    close as whole steps can bring them (Table 2's E2E steps are matched so)."""
    spent: dict[str, tuple[float, float]] = {}
    for row, experiment in experiments.items():
        ran = runs[runs["experiment"] == experiment]
        flops, step = ran["train_flops"].mean(), ran["step_flops"].max()
        if math.isnan(flops) or math.isnan(step):
            return f"{row} logged no training compute (compute/train_flops, compute/step_flops) to compare."
        spent[row] = (flops, step)
    (first, (first_flops, first_step)), (second, (second_flops, second_step)) = spent.items()
    if abs(first_flops - second_flops) <= max(first_step, second_step):
        return ""
    return (f"Not at equal compute: {first} trained {first_flops:.3g} FLOPs and {second} "
            f"{second_flops:.3g}, more than a step apart; run both at the steps the tier declares.")


def _unshared_params(runs: pd.DataFrame, experiments: dict[str, str], keys: tuple[str, ...]) -> str:
    """Which of `keys` the rows (row name -> experiment) ran with different values, or "" where
    they share them all. Each row's runs share theirs (mixed_configs), so a row's first is its."""
    for key in keys:
        values = {}
        for row, experiment in experiments.items():
            logged = [params[key] for params in runs.loc[runs["experiment"] == experiment, "params"]
                      if key in params]
            if not logged:
                return f"{row} logged no {key} to compare."
            values[row] = logged[0]
        if len(set(values.values())) > 1:
            ran = " and ".join(f"{row} {value}" for row, value in values.items())
            return f"Not at the same {key}: {ran}; run both with the same."
    return ""


def _fails(finding: Finding, row: _Measured, summary: pd.DataFrame, spec: TableSpec) -> FindingResult:
    rule = spec.failure_rule
    label = _label(spec)
    if row.status == FAILED:
        return FindingResult(finding, REPRODUCES, f"{row.text(label)}.")
    if rule is None:
        return FindingResult(finding, NOT_CHECKED, f"{spec.key} has no failure rule.")
    baseline = _line(summary, rule.baseline_row, spec.metrics[0])
    if baseline is None or baseline.status != OK:
        why = f"{row.text(label)}; the baseline {rule.baseline_row} has no result to compare with."
        return FindingResult(finding, NOT_CHECKED, why)
    limit = rule.failed_above_baseline_ratio * baseline.mean
    return FindingResult(finding, DOES_NOT_REPRODUCE,
                         f"{row.text(label)}, not Failed: at most {rule.failed_above_baseline_ratio:g} x "
                         f"{baseline.text(label)} = {limit:.2f}.")


def _measured(experiment: str, summary: pd.DataFrame, spec: TableSpec) -> tuple[_Measured | None, str]:
    row = spec.row_of(experiment)
    if row is None:
        return None, f"Experiment {experiment!r} is no row of {spec.key} at this tier."
    line = _line(summary, row.name, spec.metrics[0])
    if line is None or line.status not in (OK, FAILED):
        return None, f"{row.name} has no finished run."
    beside = [f"{column.label} {_value(other.mean, other.std, other.n)}"
              for column in spec.panels[0].beyond_paper
              if (other := _line(summary, row.name, column.metric)) is not None and other.n]
    return replace(line, beside=", ".join(beside)), ""


def _line(summary: pd.DataFrame, row: str, metric: str) -> _Measured | None:
    lines = summary[(summary["row"] == row) & (summary["metric"] == metric)]
    if lines.empty:
        return None
    line = lines.iloc[0]
    return _Measured(row, str(line["status"]), str(line["reason"]), int(line["n"]), float(line["mean"]),
                     float(line["std"]))


def _value(mean: float, std: float, n: int) -> str:
    spread = f" ± {std:.2f}" if n >= 2 else ""
    return f"{mean:.2f}{spread}" if n else "no value"
