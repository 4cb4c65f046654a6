"""Parse experiments.toml (and the user's overrides) into checked layers, tables and experiments.

Every problem found is collected, so one run of `repro plan` lists all of them at once. Values
are coerced to their field's type here, so later layers merge plain, already valid data.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, get_args

from experiments.config import RecipeName
from repro.config.fields import (
    LAYERED,
    BadValue,
    check_sections,
    coerce,
    leaf_type,
    suggest,
    unknown_key,
)
from repro.config.schema import AnyTable, Panel, PanelRow, PanelTableSpec, TableRow, TableSpec
from repro.config.sweep import SweepSpec, read_sweeps

RECIPES: tuple[str, ...] = get_args(RecipeName)
FAILED = "Failed"  # how the paper prints a row that produced no meaningful images

_TOP_KEYS = {*LAYERED, "stage", "tier", "table", "experiment", "sweep"}
_TIER_KEYS = {*LAYERED, "seeds", "stage"}
_EXPERIMENT_KEYS = {
    *LAYERED, "name", "table", "row", "recipe", "seeds", "paper", "matrix", "note", "after", "kind",
}
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
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")


class ConfigError(ValueError):
    """experiments.toml or an override is invalid; the message lists every problem found."""

    def __init__(self, source: str, problems: Sequence[str] = ()):
        self.problems = list(problems)
        if not problems:
            super().__init__(source)
        elif len(problems) == 1:
            super().__init__(f"{source}: {problems[0]}")
        else:
            listed = "\n".join(f"  - {problem}" for problem in problems)
            super().__init__(f"{source}: {len(problems)} problems:\n{listed}")


@dataclass(frozen=True)
class Tier:
    name: str
    seeds: tuple[int, ...]
    config: dict[str, Any]  # sections that apply to every recipe
    stages: dict[str, dict[str, Any]]  # recipe -> sections for that recipe only


@dataclass(frozen=True)
class Experiment:
    name: str
    table: str
    row: str
    recipe: str
    seeds: tuple[int, ...] | None  # None: the tier's seeds
    # The paper's number (None: "Failed"), or for a panel table its number per metric.
    paper: float | dict[str, float] | None
    overrides: dict[str, Any]
    matrix: tuple[tuple[str, tuple[Any, ...]], ...]  # (dotted key, values) to cross
    after: str | None = None  # the experiment whose run (same seed) this one starts from
    kind: str = ""  # shown in panel tables, e.g. "zero-shot"


@dataclass(frozen=True)
class Document:
    """experiments.toml, checked key by key but not yet merged or expanded."""

    path: Path
    protocol: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    tiers: dict[str, Tier]
    tables: tuple[AnyTable, ...]
    experiments: tuple[Experiment, ...]
    sweeps: tuple[SweepSpec, ...]


def read_document(path: Path) -> tuple[Document | None, list[str]]:
    """The checked document, or None and every problem found in it."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as bad:
        return None, [f"cannot read: {bad}"]
    problems = _unknown(raw, _TOP_KEYS, "")
    protocol, found = check_sections(raw, "")
    problems += found
    stages, found = _read_stages(raw.get("stage", {}), "stage")
    problems += found
    tiers: dict[str, Tier] = {}
    for name, table in _tables(raw.get("tier", {}), "tier", problems):
        tier, found = _read_tier(name, table)
        tiers[name] = tier
        problems += found
    experiments, found = _read_experiments(raw.get("experiment", []))
    problems += found
    tables, found = _read_tables(raw.get("table", {}), experiments)
    problems += found
    sweeps, found = read_sweeps(raw.get("sweep", []), experiments)
    problems += found
    if problems:
        return None, problems
    return Document(path, protocol, stages, tiers, tables, experiments, sweeps), []


def check_seeds(value: Any, where: str) -> tuple[tuple[int, ...], list[str]]:
    if not isinstance(value, list) or not value:
        return (), [f"{where}: expected a non-empty list of seeds, got {value!r}"]
    bad = [seed for seed in value if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0]
    if bad:
        return (), [f"{where}: seeds must be integers >= 0, got {bad!r}"]
    if len(set(value)) != len(value):
        return (), [f"{where}: repeated seed in {value!r}"]
    return tuple(value), []


def _read_stages(raw: Any, where: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    stages: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for recipe, table in _tables(raw, where, problems):
        path = f"{where}.{recipe}"
        if recipe not in RECIPES:
            problems.append(f"{path}: unknown recipe{_choices(recipe, RECIPES)}")
            continue
        problems += _unknown(table, LAYERED, path)
        stages[recipe], found = check_sections(table, path)
        problems += found
    return stages, problems


def _read_tier(name: str, table: dict[str, Any]) -> tuple[Tier, list[str]]:
    where = f"tier.{name}"
    problems = _unknown(table, _TIER_KEYS, where)
    config, found = check_sections(table, where)
    problems += found
    stages, found = _read_stages(table.get("stage", {}), f"{where}.stage")
    problems += found
    seeds: tuple[int, ...] = ()
    if "seeds" not in table:
        problems.append(f"{where}.seeds: required (the seeds every experiment runs)")
    else:
        seeds, found = check_seeds(table["seeds"], f"{where}.seeds")
        problems += found
    return Tier(name, seeds, config, stages), problems


def _read_experiments(raw: Any) -> tuple[tuple[Experiment, ...], list[str]]:
    if not isinstance(raw, list):
        return (), ["experiment: expected [[experiment]] entries"]
    experiments: list[Experiment] = []
    problems: list[str] = []
    names: set[str] = set()
    rows: set[tuple[str, str]] = set()
    for index, table in enumerate(raw):
        name = table.get("name") if isinstance(table, dict) else None
        label = f"experiment {name!r}" if isinstance(name, str) else f"experiment #{index + 1}"
        experiment, found = _read_experiment(table)
        problems += [f"{label}: {problem}" for problem in found]
        if experiment is None:
            continue
        if experiment.name in names:
            problems.append(f"{label}: name: duplicate experiment name {experiment.name!r}")
        if (experiment.table, experiment.row) in rows:
            problems.append(
                f"{label}: row: {experiment.table} already has a row {experiment.row!r}"
            )
        names.add(experiment.name)
        rows.add((experiment.table, experiment.row))
        experiments.append(experiment)
    problems += _check_after(experiments)
    return tuple(experiments), problems


def _check_after(experiments: list[Experiment]) -> list[str]:
    """`after` names another experiment without a matrix, and chains never loop."""
    by_name = {e.name: e for e in experiments}
    problems = []
    for experiment in experiments:
        if experiment.after is None:
            continue
        label = f"experiment {experiment.name!r}: after"
        before = by_name.get(experiment.after)
        if before is None:
            problems.append(f"{label}: no experiment {experiment.after!r}{_choices(experiment.after, by_name)}")
            continue
        if before.matrix:
            problems.append(f"{label}: {before.name!r} has a matrix, so which of its runs to start "
                            "from is ambiguous")
        seen = {experiment.name}
        while before is not None and before.after is not None:
            if before.name in seen:
                problems.append(f"{label}: the chain of `after` loops back to {before.name!r}")
                break
            seen.add(before.name)
            before = by_name.get(before.after)
    return problems


def _read_experiment(table: Any) -> tuple[Experiment | None, list[str]]:
    if not isinstance(table, dict):
        return None, ["expected a table"]
    problems = _unknown(table, _EXPERIMENT_KEYS, "")
    missing = [
        f"{key}: required, a non-empty string"
        for key in ("name", "table", "row", "recipe")
        if not isinstance(table.get(key), str) or not table[key]
    ]
    if missing:
        return None, problems + missing
    if not _SLUG.fullmatch(table["name"]):
        problems.append("name: use lower-case letters, digits and '-' (it names run folders)")
    if not isinstance(table.get("note", ""), str):
        problems.append("note: expected a string")
    recipe = table["recipe"]
    if recipe not in RECIPES:
        problems.append(f"recipe: unknown recipe{_choices(recipe, RECIPES)}")
    seeds = None
    if "seeds" in table:
        seeds, found = check_seeds(table["seeds"], "seeds")
        problems += found
    # Required, so a row never reads as "Failed" just because its number was left out.
    paper = table.get("paper")
    if paper is None:
        problems.append(f"paper: required, the paper's number for this row or {FAILED!r}")
    elif isinstance(paper, dict):
        paper, found = _metric_values(paper, "paper")
        problems += found
    elif paper != FAILED:
        try:
            paper = coerce(paper, float)
        except BadValue:
            problems.append(f"paper: expected the paper's number or {FAILED!r}, got {paper!r}")
    for key in ("after", "kind"):
        if not isinstance(table.get(key, ""), str):
            problems.append(f"{key}: expected a string, got {table[key]!r}")
    overrides, found = check_sections(table, "")
    problems += found
    matrix, found = _read_matrix(table.get("matrix", {}))
    problems += found
    sweeps_aligner = any(key.startswith("aligner.") for key, _ in matrix)
    if recipe == "baseline" and ("aligner" in overrides or sweeps_aligner):
        problems.append(
            "aligner: the baseline recipe has no aligner (it runs SD v1.5's own text encoder)"
        )
    experiment = Experiment(
        name=table["name"],
        table=table["table"],
        row=table["row"],
        recipe=recipe,
        seeds=seeds,
        paper=None if paper == FAILED else paper,
        overrides=overrides,
        matrix=matrix,
        after=table.get("after") if isinstance(table.get("after"), str) else None,
        kind=table.get("kind") if isinstance(table.get("kind"), str) else "",
    )
    if recipe == "instruct" and experiment.after is None and "init_from" not in overrides.get("train", {}):
        problems.append("after: the instruct recipe starts from an aligned run; name its experiment "
                        "(after = \"aligner-12\") or set train.init_from")
    return experiment, problems


def _metric_values(raw: dict[str, Any], where: str) -> tuple[dict[str, float], list[str]]:
    values, problems = {}, []
    for metric, value in raw.items():
        try:
            values[metric] = coerce(value, float)
        except BadValue as bad:
            problems.append(f"{where}.{metric}: {bad}")
    return values, problems


def _read_matrix(raw: Any) -> tuple[tuple[tuple[str, tuple[Any, ...]], ...], list[str]]:
    """Sweep axes; `"train.optim.lr" = [...]` and nested `train.optim.lr = [...]` both work."""
    if not isinstance(raw, dict):
        return (), [f"matrix: expected a table of dotted.key = [values], got {raw!r}"]
    axes: list[tuple[str, tuple[Any, ...]]] = []
    problems: list[str] = []
    for key, values in _flatten(raw):
        where = f"matrix.{key}"
        if not isinstance(values, list) or not values:
            problems.append(f"{where}: expected a non-empty list of values, got {values!r}")
            continue
        if key.startswith("launch."):
            problems.append(f"{where}: launch settings do not change a run, so they cannot be an axis")
            continue
        try:
            hint = leaf_type(key)
            axes.append((key, tuple(coerce(value, hint) for value in values)))
        except BadValue as bad:
            problems.append(f"{where}: {bad}")
            continue
        if len(set(map(repr, axes[-1][1]))) != len(values):
            problems.append(f"{where}: repeated value in {values!r}")
    return tuple(axes), problems


def _read_tables(
    raw: Any, experiments: tuple[Experiment, ...]
) -> tuple[tuple[AnyTable, ...], list[str]]:
    tables: list[AnyTable] = []
    problems: list[str] = []
    for key, table in _tables(raw, "table", problems):
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
                f"[table.{experiment.table}] section{_choices(experiment.table, declared)}"
            )
    return tuple(tables), problems


def _read_metric_table(
    key: str, table: dict[str, Any], members: list[Experiment], _: tuple[Experiment, ...]
) -> tuple[TableSpec | None, list[str]]:
    where = f"table.{key}"
    problems = _unknown(table, _TABLE_TYPES, where)
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
            f"{_choices(values['baseline_row'], [row.name for row in rows])}"
        )
    if problems:
        return None, problems
    return TableSpec(key=key, rows=rows, **values), []


def _read_panel_table(
    key: str, table: dict[str, Any], members: list[Experiment], experiments: tuple[Experiment, ...]
) -> tuple[PanelTableSpec | None, list[str]]:
    where = f"table.{key}"
    problems = _unknown(table, _PANEL_TABLE_KEYS, where)
    if not isinstance(table.get("title"), str):
        problems.append(f"{where}.title: required, a string")
    panels: list[Panel] = []
    for index, raw in enumerate(_entries(table.get("panels"), f"{where}.panels", problems)):
        at = f"{where}.panels[{index}]"
        problems += _unknown(raw, _PANEL_KEYS, at)
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
        problems.extend(f"{at}.{metric}: not a metric of any panel{_choices(metric, known)}"
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
        problems += _unknown(raw, _REUSE_KEYS, at)
        source = by_name.get(raw.get("experiment"))
        if source is None:
            problems.append(f"{at}.experiment: no experiment {raw.get('experiment')!r}")
            continue
        paper, found = _metric_values(raw.get("paper", {}), f"{at}.paper")
        problems += found
        rows.append(PanelRow(str(raw.get("row", source.row)), source.name, str(raw.get("kind", source.kind)),
                             paper_of(paper, f"{at}.paper")))
    for index, raw in enumerate(_entries(table.get("cited", []), f"{where}.cited", problems)):
        at = f"{where}.cited[{index}]"
        problems += _unknown(raw, _CITED_KEYS, at)
        if not isinstance(raw.get("row"), str) or not isinstance(raw.get("values"), dict):
            problems.append(f"{at}: row (a string) and values (metric = number) are required")
            continue
        values, found = _metric_values(raw["values"], f"{at}.values")
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


def _tables(raw: Any, where: str, problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The sub-tables of `raw`, reporting anything that is not a table."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {raw!r}")
        return []
    found = [(key, value) for key, value in raw.items() if isinstance(value, dict)]
    problems += [
        f"{where}.{key}: expected a table" for key, value in raw.items() if not isinstance(value, dict)
    ]
    return found


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, f"{path}.")
        else:
            out.append((path, value))
    return out


def _unknown(table: dict[str, Any], allowed: Iterable[str], where: str) -> list[str]:
    allowed = set(allowed)
    prefix = f"{where}." if where else ""
    return [f"{prefix}{key}: {unknown_key(key, allowed)}" for key in table if key not in allowed]


def _choices(word: str, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    return f" {word!r}{suggest(word, choices)}; choose from {', '.join(choices)}"
