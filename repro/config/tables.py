"""The [table.<key>] sections of experiments.toml: a one-metric table with a failure rule
(Table 2), or a table of panels with cited rows and rows reused from other tables (Table 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from repro.config.checks import choices, metric_values, sub_tables, unknown_keys
from repro.config.fields import BadValue, coerce
from repro.config.schema import (
    FAILED,
    AnyTable,
    Panel,
    PanelRow,
    PanelTableSpec,
    TableRow,
    TableSpec,
)

if TYPE_CHECKING:
    from repro.config.load import Experiment

_TABLE_TYPES: dict[str, type] = {
    "title": str,
    "metric": str,
    "lower_is_better": bool,
    "baseline_row": str,
    "failed_above_baseline_ratio": float,
}
# A panel table (Table 1) instead: several metrics in panels, plus the paper's rows for other
# methods, cited as printed, and rows reused from experiments of other tables.
_PANEL_TABLE_KEYS = {"title", "panels", "cited", "reuse"}
_PANEL_KEYS = {"name", "metrics", "labels", "lower_is_better"}
_CITED_KEYS = {"row", "kind", "values"}
_REUSE_KEYS = {"experiment", "row", "kind", "paper"}


def read_tables(
    raw: Any, experiments: tuple[Experiment, ...]
) -> tuple[tuple[AnyTable, ...], list[str]]:
    tables: list[AnyTable] = []
    problems: list[str] = []
    for key, table in sub_tables(raw, "table", problems):
        members = [experiment for experiment in experiments if experiment.table == key]
        read = _read_panel_table if "panels" in table else _read_metric_table
        spec, found = read(key, table, members, experiments)
        problems += found
        if spec is not None:
            tables.append(spec)
    declared = set(raw) if isinstance(raw, dict) else set()
    for experiment in experiments:
        if experiment.table not in declared:
            problems.append(
                f"experiment {experiment.name!r}: table: {experiment.table!r} is not declared as a "
                f"[table.{experiment.table}] section{choices(experiment.table, declared)}"
            )
    return tuple(tables), problems


def _read_metric_table(
    key: str, table: dict[str, Any], members: list[Experiment], _: tuple[Experiment, ...]
) -> tuple[TableSpec | None, list[str]]:
    where = f"table.{key}"
    problems = unknown_keys(table, _TABLE_TYPES, where)
    values: dict[str, Any] = {}
    for name, hint in _TABLE_TYPES.items():
        if name not in table:
            problems.append(f"{where}.{name}: required")
            continue
        try:
            values[name] = coerce(table[name], hint)
        except BadValue as bad:
            problems.append(f"{where}.{name}: {bad}")
    problems += [f"experiment {e.name!r}: paper: {where} has one metric; give one number or {FAILED!r}"
                 for e in members if isinstance(e.paper, dict)]
    rows = tuple(TableRow(e.row, e.name, e.paper) for e in members if not isinstance(e.paper, dict))
    if not rows:
        problems.append(f"{where}: no [[experiment]] has table = {key!r}")
    if "baseline_row" in values and values["baseline_row"] not in {row.name for row in rows}:
        problems.append(
            f"{where}.baseline_row: no row {values['baseline_row']!r}"
            f"{choices(values['baseline_row'], [row.name for row in rows])}"
        )
    if problems:
        return None, problems
    return TableSpec(key=key, rows=rows, **values), []


def _read_panel_table(
    key: str, table: dict[str, Any], members: list[Experiment], experiments: tuple[Experiment, ...]
) -> tuple[PanelTableSpec | None, list[str]]:
    where = f"table.{key}"
    problems = unknown_keys(table, _PANEL_TABLE_KEYS, where)
    if not isinstance(table.get("title"), str):
        problems.append(f"{where}.title: required, a string")
    panels: list[Panel] = []
    for index, raw in enumerate(_entries(table.get("panels"), f"{where}.panels", problems)):
        at = f"{where}.panels[{index}]"
        problems += unknown_keys(raw, _PANEL_KEYS, at)
        try:
            metrics = coerce(raw.get("metrics"), tuple[str, ...])
            labels = coerce(raw.get("labels", list(metrics)), tuple[str, ...])
            lower = coerce(raw.get("lower_is_better"), bool)
            name = coerce(raw.get("name"), str)
        except BadValue as bad:
            problems.append(f"{at}: name, metrics, labels, lower_is_better: {bad}")
            continue
        if len(labels) != len(metrics) or not metrics:
            problems.append(f"{at}.labels: one label per metric ({len(metrics)}), got {len(labels)}")
        panels.append(Panel(name, metrics, labels, lower))
    known = [metric for panel in panels for metric in panel.metrics]

    def paper_of(values: dict[str, float], at: str) -> tuple[tuple[str, float], ...]:
        problems.extend(f"{at}.{metric}: not a metric of any panel{choices(metric, known)}"
                        for metric in values if metric not in known)
        return tuple(values.items())

    rows: list[PanelRow] = []
    for e in members:
        if not isinstance(e.paper, dict):
            problems.append(f"experiment {e.name!r}: paper: {where} has panels; give a table of "
                            f"metric = the paper's value (an empty table if the paper has none)")
            continue
        rows.append(PanelRow(e.row, e.name, e.kind, paper_of(e.paper, f"experiment {e.name!r}: paper")))
    by_name = {e.name: e for e in experiments}
    for index, raw in enumerate(_entries(table.get("reuse", []), f"{where}.reuse", problems)):
        at = f"{where}.reuse[{index}]"
        problems += unknown_keys(raw, _REUSE_KEYS, at)
        source = by_name.get(raw.get("experiment"))
        if source is None:
            problems.append(f"{at}.experiment: no experiment {raw.get('experiment')!r}")
            continue
        paper, found = metric_values(raw.get("paper", {}), f"{at}.paper")
        problems += found
        rows.append(PanelRow(str(raw.get("row", source.row)), source.name, str(raw.get("kind", source.kind)),
                             paper_of(paper, f"{at}.paper")))
    for index, raw in enumerate(_entries(table.get("cited", []), f"{where}.cited", problems)):
        at = f"{where}.cited[{index}]"
        problems += unknown_keys(raw, _CITED_KEYS, at)
        if not isinstance(raw.get("row"), str) or not isinstance(raw.get("values"), dict):
            problems.append(f"{at}: row (a string) and values (metric = number) are required")
            continue
        values, found = metric_values(raw["values"], f"{at}.values")
        problems += found
        rows.append(PanelRow(raw["row"], None, str(raw.get("kind", "")), paper_of(values, f"{at}.values")))
    if not any(row.experiment for row in rows):
        problems.append(f"{where}: no [[experiment]] has table = {key!r} and nothing is reused")
    if problems:
        return None, problems
    return PanelTableSpec(key=key, title=table["title"], panels=tuple(panels), rows=tuple(rows)), []


def _entries(raw: Any, where: str, problems: list[str]) -> list[dict[str, Any]]:
    """A list of tables (TOML array of tables or inline tables)."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        problems.append(f"{where}: expected a list of tables, got {raw!r}")
        return []
    return raw
