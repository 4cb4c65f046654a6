"""Parse experiments.toml (and the user's overrides) into checked layers, tables and experiments.

Every problem found is collected, so one run of `repro plan` lists all of them at once. Values
are coerced to their field's type here, so later layers merge plain, already valid data.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from experiments.recipes.registry import RECIPES
from repro.config.checks import choices, metric_values, sub_tables, unknown_keys
from repro.config.fields import (
    LAYERED,
    BadValue,
    check_sections,
    coerce,
    leaf_type,
)
from repro.config.schema import FAILED, TableSpec
from repro.config.sweep import SweepSpec, read_sweeps
from repro.config.tables import read_tables

_TOP_KEYS = {*LAYERED, "stage", "tier", "table", "experiment", "sweep"}
_TIER_KEYS = {*LAYERED, "seeds", "stage"}
_EXPERIMENT_KEYS = {
    *LAYERED, "name", "table", "row", "recipe", "seeds", "paper", "matrix", "note", "after", "kind", "tier",
    "tiers",
}
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
    # The paper's number (None: "Failed"), or for a table of several metrics its number per metric.
    paper: float | dict[str, float] | None
    overrides: dict[str, Any]
    matrix: tuple[tuple[str, tuple[Any, ...]], ...]  # (dotted key, values) to cross
    after: str | None = None  # the experiment whose run (same seed) this one starts from
    kind: str = ""  # shown in the table, e.g. "zero-shot"
    # tier -> sections this experiment sets in that tier only (after its own overrides), for a
    # value derived per tier, like the E2E rows' steps at matched compute.
    tier_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The tiers it runs in (None: every tier); a released checkpoint has no mini-world counterpart.
    tiers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Document:
    """experiments.toml, checked key by key but not yet merged or expanded."""

    path: Path
    protocol: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    tiers: dict[str, Tier]
    tables: tuple[TableSpec, ...]
    experiments: tuple[Experiment, ...]
    sweeps: tuple[SweepSpec, ...]


def read_document(path: Path) -> tuple[Document | None, list[str]]:
    """The checked document, or None and every problem found in it."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as bad:
        return None, [f"cannot read: {bad}"]
    problems = unknown_keys(raw, _TOP_KEYS, "")
    protocol, found = check_sections(raw, "")
    problems += found
    stages, found = _read_stages(raw.get("stage", {}), "stage")
    problems += found
    tiers: dict[str, Tier] = {}
    for name, table in sub_tables(raw.get("tier", {}), "tier", problems):
        tier, found = _read_tier(name, table)
        tiers[name] = tier
        problems += found
    experiments, found = _read_experiments(raw.get("experiment", []))
    problems += found
    problems += [
        f"experiment {experiment.name!r}: tier.{name}: unknown tier{choices(name, tiers)}"
        for experiment in experiments for name in experiment.tier_overrides if name not in tiers
    ]
    problems += [
        f"experiment {experiment.name!r}: tiers: unknown tier{choices(name, tiers)}"
        for experiment in experiments for name in experiment.tiers or () if name not in tiers
    ]
    tables, found = read_tables(raw.get("table", {}), experiments)
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
    for recipe, table in sub_tables(raw, where, problems):
        path = f"{where}.{recipe}"
        if recipe not in RECIPES:
            problems.append(f"{path}: unknown recipe{choices(recipe, RECIPES)}")
            continue
        problems += unknown_keys(table, LAYERED, path)
        stages[recipe], found = check_sections(table, path)
        problems += found
    return stages, problems


def _read_tier(name: str, table: dict[str, Any]) -> tuple[Tier, list[str]]:
    where = f"tier.{name}"
    problems = unknown_keys(table, _TIER_KEYS, where)
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
            problems.append(
                f"{label}: no experiment {experiment.after!r}{choices(experiment.after, by_name)}"
            )
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
    problems = unknown_keys(table, _EXPERIMENT_KEYS, "")
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
        problems.append(f"recipe: unknown recipe{choices(recipe, RECIPES)}")
    seeds = None
    if "seeds" in table:
        seeds, found = check_seeds(table["seeds"], "seeds")
        problems += found
    # Required, so a row never reads as "Failed" just because its number was left out.
    paper = table.get("paper")
    if paper is None:
        problems.append(f"paper: required, the paper's number for this row or {FAILED!r}")
    elif isinstance(paper, dict):
        paper, found = metric_values(paper, "paper")
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
    tier_overrides: dict[str, dict[str, Any]] = {}
    for tier, sections in sub_tables(table.get("tier", {}), "tier", problems):
        problems += unknown_keys(sections, LAYERED, f"tier.{tier}")
        tier_overrides[tier], found = check_sections(sections, f"tier.{tier}")
        problems += found
    matrix, found = _read_matrix(table.get("matrix", {}))
    problems += found
    tiers, found = _read_tiers(table.get("tiers"))
    problems += found
    sweeps_aligner = any(key.startswith("aligner.") for key, _ in matrix)
    if recipe in RECIPES and not RECIPES[recipe].trains and ("aligner" in overrides or sweeps_aligner):
        problems.append(f"aligner: the {recipe} recipe has no aligner ({RECIPES[recipe].summary})")
    experiment = Experiment(
        name=table["name"],
        table=table["table"],
        row=table["row"],
        recipe=recipe,
        seeds=seeds,
        paper=None if paper == FAILED else paper,
        overrides=overrides,
        matrix=matrix,
        after=after if isinstance(after := table.get("after"), str) else None,
        kind=kind if isinstance(kind := table.get("kind"), str) else "",
        tier_overrides=tier_overrides,
        tiers=tiers,
    )
    starts_from_run = recipe in RECIPES and RECIPES[recipe].starts_from_run
    if starts_from_run and experiment.after is None and "init_from" not in overrides.get("train", {}):
        problems.append(f"after: the {recipe} recipe starts from an aligned run; name its experiment "
                        "(after = \"aligner-12\") or set train.init_from")
    return experiment, problems


def _read_tiers(raw: Any) -> tuple[tuple[str, ...] | None, list[str]]:
    if raw is None:
        return None, []
    if not isinstance(raw, list) or not raw or not all(isinstance(name, str) and name for name in raw):
        return None, [f"tiers: expected a non-empty list of tier names, got {raw!r}"]
    if len(set(raw)) != len(raw):
        return None, [f"tiers: a tier is listed twice in {raw!r}"]
    return tuple(raw), []


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


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, f"{path}.")
        else:
            out.append((path, value))
    return out
