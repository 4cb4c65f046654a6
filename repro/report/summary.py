"""A table from its runs: per panel, row and metric, a reproduced row's mean ± std over seeds
beside the paper's value, or a cited row's value as the paper prints it; the table's failure
rule, where it has one, applied."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from repro.config.schema import FailureRule, Panel, TableRow, TableSpec
from repro.report.mixed_configs import MIXED_NOTE, mixed_configs
from repro.tracking import tags

SUMMARY_COLUMNS = [
    "panel", "row", "kind", "source", "status", "reason", "metric", "n", "mean", "std", "paper",
    "delta",
]
OK, FAILED, MISSING, CITED = "ok", "Failed", "missing", "cited"
_CITED_SOURCE = "paper (cited)"


def summarise(runs: pd.DataFrame, spec: TableSpec, tier: str) -> pd.DataFrame:
    """One line per (panel, row, metric) that the row has, panels and rows in the spec's order.
    `runs` has a column per metric of the spec, as collect_runs gives it. `paper` is NaN where
    the paper prints Failed or gives no value; `delta` (reproduced - paper) only on ok lines."""
    verdict = _verdict(runs, spec)
    logged = beyond_paper_logged(runs, spec)
    mixed = mixed_configs(runs)
    lines = []
    for panel in spec.panels:
        columns = [*panel.metrics, *(c.metric for c in panel.beyond_paper if c.metric in logged)]
        for row in spec.rows:
            row_runs = runs[runs["experiment"] == row.experiment]
            had = _metrics_had(row, row_runs, spec)
            lines += [_line(panel, row, metric, row_runs, tier, verdict, row.experiment in mixed)
                      for metric in columns if metric in had]
    return pd.DataFrame(lines, columns=SUMMARY_COLUMNS)


def beyond_paper_logged(runs: pd.DataFrame, spec: TableSpec) -> set[str]:
    """The table's beyond-paper metrics some run logged: the columns the table shows besides the
    paper's (none at a tier that does not measure them)."""
    return {column.metric for column in spec.beyond_paper
            if column.metric in runs and runs[column.metric].notna().any()}


def failed_in_paper(spec: TableSpec) -> set[tuple[str, str]]:
    """The (row, metric) pairs the paper prints as "Failed"; their `paper` is NaN in a summary."""
    return {(row.name, metric) for row in spec.rows for metric, value in row.paper if value is None}


def _metrics_had(row: TableRow, row_runs: pd.DataFrame, spec: TableSpec) -> set[str]:
    columns = [*spec.metrics, *(column.metric for column in spec.beyond_paper)]
    logged = {metric for metric in columns if metric in row_runs and row_runs[metric].notna().any()}
    had = {metric for metric, _ in row.paper} | logged
    # A reproduced row the paper gives no value and that never ran would otherwise vanish from
    # the table; shown everywhere, it reads "missing".
    return set(columns) if not had and row.experiment is not None else had


def _line(
    panel: Panel, row: TableRow, metric: str, row_runs: pd.DataFrame, tier: str, verdict: _Verdict,
    mixed: bool,
) -> tuple[object, ...]:
    paper = dict(row.paper).get(metric)
    paper = math.nan if paper is None else paper
    if row.experiment is None:
        return (panel.name, row.name, row.kind, _CITED_SOURCE, CITED, "", metric, 0, math.nan,
                math.nan, paper, math.nan)
    # A run that crashed after logging the metric has no result: it is left out of the mean,
    # and the row says so.
    crashed = (row_runs["status"] == "FAILED") & ~row_runs["failure_reason"].fillna("").str.startswith(
        tags.STATUS_DIVERGED)
    values = row_runs.loc[~crashed, metric].dropna()
    status, reason = verdict.of(row, metric, values, row_runs)
    if status == OK and crashed.any():
        reason = f"{int(crashed.sum())} of {len(row_runs)} runs crashed (left out)"
    if mixed:
        reason = "; ".join(filter(None, [reason, MIXED_NOTE]))
    finished = int((row_runs["status"] == "FINISHED").sum())
    source = f"{row.source} (tier {tier}, n={finished})"
    mean = values.mean()
    delta = mean - paper if status == OK else math.nan
    return (panel.name, row.name, row.kind, source, status, reason, metric, len(values), mean,
            values.std(), paper, delta)


@dataclass(frozen=True)
class _Verdict:
    """Whether a reproduced row's metric is ok, Failed or missing, and why."""

    rule: FailureRule | None
    diverged: frozenset[str]  # experiments with a run that diverged
    limits: dict[str, float]  # per metric, the mean above which the rule calls a row Failed

    def of(
        self, row: TableRow, metric: str, values: pd.Series, row_runs: pd.DataFrame
    ) -> tuple[str, str]:
        if self.rule is not None and row.experiment in self.diverged:
            return FAILED, "diverged"
        if len(values) == 0:
            # Under a failure rule "Failed" is a verdict on the method, set beside the paper's
            # own "Failed"; a crash is no such verdict, so there the row is only missing.
            if self.rule is None and (row_runs["status"] == "FAILED").any():
                return FAILED, "run failed"
            return MISSING, "no finished run"
        # The rule bounds the paper's lower-is-better metrics; a beyond-paper column has no limit.
        if self.rule is not None and values.mean() > self.limits.get(metric, math.inf):
            return FAILED, f"mean > {self.rule.failed_above_baseline_ratio:g} x {self.rule.baseline_row}"
        return OK, ""


def _verdict(runs: pd.DataFrame, spec: TableSpec) -> _Verdict:
    rule = spec.failure_rule
    diverged = frozenset(runs.loc[runs["failure_reason"].fillna("").str.startswith(tags.STATUS_DIVERGED),
                                  "experiment"])
    if rule is None:
        return _Verdict(rule, diverged, {})
    baseline = next(row for row in spec.rows if row.name == rule.baseline_row)
    baseline_runs = runs[runs["experiment"] == baseline.experiment]
    limits = {}
    for metric in spec.metrics:
        values = baseline_runs[metric].dropna()
        # A baseline that diverged or never ran gives the ratio nothing to compare with.
        usable = len(values) > 0 and baseline.experiment not in diverged
        limits[metric] = rule.failed_above_baseline_ratio * values.mean() if usable else math.inf
    return _Verdict(rule, diverged, limits)
