"""The report's "Gates": each bound a table declares (TableSpec.gates) on a row's mean over its
finished runs, PASS or FAIL with the numbers, or not measured and why. A pure function of the
runs (as collect_runs gives them, a column per metric the gates read); bench/mini_gates.py
prints the same results."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from repro.config.schema import Gate, TableSpec
from repro.report.mixed_configs import mixed_configs, why_unread

PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "not measured"
HEADING = "### Gates"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    outcome: str  # PASS, FAIL or NOT_MEASURED
    evidence: str


def check_gates(runs: pd.DataFrame, spec: TableSpec) -> list[GateResult]:
    mixed = mixed_configs(runs)
    return [_check(gate, runs, spec, mixed) for gate in spec.gates]


def gates_section(results: list[GateResult]) -> str:
    lines = [f"{HEADING}\n", "What the tier's models must show for the table to mean something: a row's"
             " mean over its finished runs against the bound."]
    lines += [f"- **{result.outcome}** {result.gate.name}: {result.evidence}" for result in results]
    return "\n".join(lines)


def _check(gate: Gate, runs: pd.DataFrame, spec: TableSpec, mixed: dict[str, str]) -> GateResult:
    measured, missing = _mean(gate.experiment, gate.metric, runs, spec)
    if measured is None:
        return GateResult(gate, NOT_MEASURED, missing)
    unread = why_unread([gate.experiment, *([gate.times] if gate.times else [])], mixed, spec)
    if unread:
        return GateResult(gate, NOT_MEASURED, unread)
    row, mean, n = measured
    bound, of = gate.bound, ""
    if gate.times is not None:
        other, missing = _mean(gate.times, gate.metric, runs, spec)
        if other is None:
            return GateResult(gate, NOT_MEASURED, missing)
        bound = gate.bound * other[1]
        of = f"{gate.bound:g} x {other[0]}'s {other[1]:.4g} (n={other[2]}) = "
    passed = mean >= bound if gate.at_least else mean <= bound
    sign = ">=" if gate.at_least else "<="
    evidence = f"{row}: {gate.metric} = {mean:.4g} (n={n}); needs {sign} {of}{bound:.4g}."
    return GateResult(gate, PASS if passed else FAIL, evidence)


def _mean(
    experiment: str, metric: str, runs: pd.DataFrame, spec: TableSpec
) -> tuple[tuple[str, float, int] | None, str]:
    """(row name, mean, n) of `metric` over the experiment's finished runs, or None and why."""
    row = spec.row_of(experiment)
    if row is None:
        return None, f"experiment {experiment!r} is no row of {spec.key} at this tier."
    finished = runs[(runs["experiment"] == experiment) & (runs["status"] == "FINISHED")]
    values = finished[metric].dropna() if metric in finished else pd.Series(dtype=float)
    if values.empty:
        return None, f"no finished run of {row.name} logged {metric}."
    return (row.name, float(values.mean()), len(values)), ""
