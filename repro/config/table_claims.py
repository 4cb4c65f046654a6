"""What a [table.<key>] section says its rows must show: `findings` (the paper's claims, checked
against the measured rows) and `gates` (bounds a tier's models must meet). Both name experiments
rather than rows: the row names come from the table, in one place. A name that is no
[[experiment]] at all is an error; an experiment that is no row of the table at a tier is not:
the report says the claim or gate could not be checked, and names it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, get_args

from repro.config.checks import choices, unknown_keys
from repro.config.fields import BadValue, coerce, leaf_type
from repro.config.schema import Finding, FindingKind, Gate

_FINDING_KEYS = {"claim", "experiment", "holds", "other", "at_equal_compute", "same_params"}
_GATE_KEYS = {"gate", "experiment", "metric", "at_least", "at_most", "times"}


def read_findings(raw: Any, where: str, names: Collection[str], problems: list[str]) -> tuple[Finding, ...]:
    """`names`: every declared experiment, which the claims may name."""
    findings = []
    for index, entry in enumerate(_entries(raw, where, problems)):
        at = f"{where}[{index}]"
        found = unknown_keys(entry, _FINDING_KEYS, at)
        try:
            claim, experiment = coerce(entry.get("claim"), str), coerce(entry.get("experiment"), str)
            holds = coerce(entry.get("holds"), FindingKind)
            other = coerce(entry["other"], str) if "other" in entry else None
            at_equal_compute = coerce(entry.get("at_equal_compute", False), bool)
            same_params = coerce(entry.get("same_params", []), tuple[str, ...])
        except BadValue as bad:
            found.append(f"{at}: claim, experiment (strings), holds (one of "
                         f"{', '.join(get_args(FindingKind))}), other, at_equal_compute (a boolean), "
                         f"same_params (config keys): {bad}")
        else:
            if (holds == "fails") != (other is None):
                found.append(f"{at}.other: {holds!r} " + (
                    "compares one row with the failure rule; give no other" if holds == "fails"
                    else "compares two rows; name the other experiment"))
            for key, given in (("at_equal_compute", at_equal_compute), ("same_params", same_params)):
                if given and holds == "fails":
                    found.append(f"{at}.{key}: 'fails' checks one row; only a comparison of two rows "
                                 "can be held to it")
            found += _unknown_params(f"{at}.same_params", same_params)
            found += _unknown_experiments(at, {"experiment": experiment, "other": other}, names)
        problems += found
        if not found:
            findings.append(Finding(claim, experiment, holds, other, at_equal_compute, same_params))
    return tuple(findings)


def read_gates(
    raw: Any, where: str, metrics: list[str], names: Collection[str], problems: list[str]
) -> tuple[Gate, ...]:
    """`metrics`: what a gate may read (the table's columns, or a finer metric the runs log);
    `names`: every declared experiment."""
    gates = []
    for index, entry in enumerate(_entries(raw, where, problems)):
        at = f"{where}[{index}]"
        found = unknown_keys(entry, _GATE_KEYS, at)
        bounds = [key for key in ("at_least", "at_most") if key in entry]
        try:
            name, experiment = coerce(entry.get("gate"), str), coerce(entry.get("experiment"), str)
            metric = coerce(entry.get("metric"), str)
            times = coerce(entry["times"], str) if "times" in entry else None
            bound = coerce(entry.get(bounds[0]) if len(bounds) == 1 else None, float)
        except BadValue as bad:
            found.append(f"{at}: gate, experiment, metric (strings), exactly one of at_least or at_most "
                         f"(a number), times (an experiment): {bad}")
        else:
            if not any(metric == known or metric.startswith(f"{known}/") for known in metrics):
                found.append(f"{at}.metric: {metric!r} is no metric of the table's panels, nor a finer one"
                             f" (metric/part){choices(metric, metrics)}")
            found += _unknown_experiments(at, {"experiment": experiment, "times": times}, names)
        problems += found
        if not found:
            gates.append(Gate(name, experiment, metric, bound, bounds[0] == "at_least", times))
    return tuple(gates)


def _unknown_params(at: str, keys: tuple[str, ...]) -> list[str]:
    problems = []
    for index, key in enumerate(keys):
        try:
            leaf_type(key)
        except BadValue as bad:
            problems.append(f"{at}[{index}]: {key!r}: {bad}")
    return problems


def _unknown_experiments(at: str, named: dict[str, str | None], names: Collection[str]) -> list[str]:
    return [f"{at}.{key}: {name!r} is no [[experiment]]{choices(name, names)}"
            for key, name in named.items() if name is not None and name not in names]


def _entries(raw: Any, where: str, problems: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        problems.append(f"{where}: expected a list of tables, got {raw!r}")
        return []
    return raw
