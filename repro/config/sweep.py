"""`[[sweep]]` entries of experiments.toml: an Optuna study over one experiment's config.

A search-space entry is typed by the config field it names, so the schema stays in
experiments/config.py: `{ low, high }` on a float field is a float range (`log = true` samples it
log-uniformly, `step` quantises it), on an int field an int range; `{ choices = [...] }` is
categorical on any scalar field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

from experiments.recipes.registry import RECIPES
from repro.config.fields import (
    LAYERED,
    BadValue,
    build,
    check_sections,
    check_table,
    coerce,
    leaf_type,
    suggest,
    unknown_key,
)

if TYPE_CHECKING:
    from repro.config.load import Experiment

Direction = Literal["minimize", "maximize"]
SamplerKind = Literal["tpe", "random"]
PrunerKind = Literal["none", "median", "hyperband"]
ParamKind = Literal["float", "int", "categorical"]

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")
_SETTINGS = {"name", "experiment", "metric", "direction", "space", "n_trials", "parallel", "seed",
             "sampler", "pruner", "note"}
_RANGE_KEYS = {"low", "high", "log", "step"}
# Sampler and pruner counts below which Optuna refuses to start; any other count must be >= 0.
_AT_LEAST = {"min_resource": 1, "reduction_factor": 2}
# Optuna stores categorical choices as JSON scalars.
_CHOICE_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key, e.g. "train.optim.lr"
    kind: ParamKind
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SamplerSpec:
    kind: SamplerKind = "tpe"
    startup_trials: int = 10  # TPE: random trials before it models the space (Optuna's default)
    seed: int = 0


@dataclass(frozen=True)
class PrunerSpec:
    kind: PrunerKind = "median"
    startup_trials: int = 5  # median: trials that must finish before any is pruned
    warmup_steps: int = 0  # median: training steps before a trial can be pruned
    min_resource: int = 1  # hyperband: training steps every trial gets
    reduction_factor: int = 3  # hyperband: 1/reduction_factor of the trials survive each rung


@dataclass(frozen=True)
class SweepSpec:
    name: str
    experiment: str  # the base [[experiment]]; each trial is one run of it
    metric: str  # an MLflow metric of the trial run, e.g. "heldout/mse_loss" or "eval/fid"
    direction: Direction
    space: tuple[Param, ...]
    n_trials: int  # trials the study ends with, counting those of earlier, killed sweeps
    parallel: int = 1  # trials in flight at once
    seed: int = 0  # the training seed of every trial
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    overrides: dict[str, Any] = field(default_factory=dict)  # config sections over the experiment's


def read_sweeps(raw: Any, experiments: Sequence[Experiment]) -> tuple[tuple[SweepSpec, ...], list[str]]:
    """The checked [[sweep]] entries, and every problem, each prefixed by the sweep's name."""
    if not isinstance(raw, list):
        return (), ["sweep: expected [[sweep]] entries"]
    by_name = {experiment.name: experiment for experiment in experiments}
    sweeps: list[SweepSpec] = []
    problems: list[str] = []
    for index, table in enumerate(raw):
        name = table.get("name") if isinstance(table, dict) else None
        label = f"sweep {name!r}" if isinstance(name, str) else f"sweep #{index + 1}"
        sweep, found = _read_sweep(table, by_name)
        problems += [f"{label}: {problem}" for problem in found]
        if sweep is None:
            continue
        if any(other.name == sweep.name for other in sweeps):
            problems.append(f"{label}: name: duplicate sweep name {sweep.name!r}")
        sweeps.append(sweep)
    return tuple(sweeps), problems


def _read_sweep(table: Any, experiments: dict[str, Experiment]) -> tuple[SweepSpec | None, list[str]]:
    if not isinstance(table, dict):
        return None, ["expected a table"]
    allowed = _SETTINGS | set(LAYERED)
    problems = [f"{key}: {unknown_key(key, allowed)}" for key in table if key not in allowed]
    missing = [key for key in ("name", "experiment", "metric") if not isinstance(table.get(key), str)
               or not table[key]]
    problems += [f"{key}: required, a non-empty string" for key in missing]
    if missing:
        return None, problems
    if not _SLUG.fullmatch(table["name"]):
        problems.append("name: use lower-case letters, digits and '-' (it names report files)")
    experiment = experiments.get(table["experiment"])
    if experiment is None:
        problems.append(f"experiment: no [[experiment]] named {table['experiment']!r}"
                        f"{suggest(table['experiment'], experiments)}")
    elif experiment.matrix:
        problems.append(f"experiment: {experiment.name!r} has a matrix; a sweep needs one run per trial")
    elif not RECIPES[experiment.recipe].trains and table["metric"].startswith("heldout/"):
        problems.append(
            f"metric: the {experiment.recipe} recipe trains nothing, so it logs no heldout/ metrics"
        )
    values, found = _read_scalars(table)
    problems += found
    sampler, found = _read_settings(table.get("sampler", {}), SamplerSpec, "sampler")
    problems += found
    pruner, found = _read_settings(table.get("pruner", {}), PrunerSpec, "pruner")
    problems += found
    space, found = _read_space(table.get("space"))
    problems += found
    overrides, found = check_sections(table, "")
    problems += found
    if problems:
        return None, problems
    return SweepSpec(name=table["name"], experiment=table["experiment"], metric=table["metric"],
                     space=space, sampler=sampler, pruner=pruner, overrides=overrides,
                     **values), []


def _read_scalars(table: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """direction, n_trials, parallel and seed, the first two required."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, hint in (("direction", Direction), ("n_trials", int), ("parallel", int), ("seed", int)):
        if key in table:
            try:
                values[key] = coerce(table[key], hint)
            except BadValue as bad:
                problems.append(f"{key}: {bad}")
    if "direction" not in table:
        problems.append("direction: required, 'minimize' or 'maximize'")
    if "n_trials" not in table:
        problems.append("n_trials: required, the number of trials the study ends with")
    problems += [f"{key}: must be >= {least}, got {values[key]}"
                 for key, least in (("n_trials", 1), ("parallel", 1), ("seed", 0))
                 if key in values and values[key] < least]
    return values, problems


def _read_settings(raw: Any, cls: type, where: str) -> tuple[Any, list[str]]:
    """A sampler or pruner table: known keys of the right type, counts in range."""
    checked, problems = check_table(raw, cls, where)
    problems += [f"{where}.{key}: must be >= {_AT_LEAST.get(key, 0)}, got {value}"
                 for key, value in checked.items()
                 if isinstance(value, int) and value < _AT_LEAST.get(key, 0)]
    if problems:
        return None, problems
    return build(cls, checked, where)


def _read_space(raw: Any) -> tuple[tuple[Param, ...], list[str]]:
    if not isinstance(raw, dict) or not raw:
        return (), ["space: required, a table of dotted.key = { low, high } or { choices = [...] }"]
    params: list[Param] = []
    problems: list[str] = []
    for key, entry in _entries(raw):
        where = f"space.{key}"
        if key.startswith("launch."):
            problems.append(f"{where}: launch settings do not change a run, so they cannot be searched")
            continue
        try:
            hint = leaf_type(key)
        except BadValue as bad:
            problems.append(f"{where}: {bad}")
            continue
        param, found = _read_param(key, hint, entry, where)
        problems += found
        if param is not None:
            params.append(param)
    return tuple(params), problems


def _entries(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """`"train.optim.lr" = {...}` and nested `train.optim.lr = {...}` both name a leaf; a table
    holding `low` or `choices` is an entry, not a level of nesting."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not value.keys() & (_RANGE_KEYS | {"choices"}):
            out += _entries(value, f"{path}.")
        else:
            out.append((path, value))
    return out


def _read_param(key: str, hint: Any, entry: Any, where: str) -> tuple[Param | None, list[str]]:
    if not isinstance(entry, dict):
        return None, [f"{where}: expected {{ low, high }} or {{ choices = [...] }}, got {entry!r}"]
    if "choices" in entry:
        return _read_choices(key, hint, entry, where)
    unknown = [f"{where}.{name}: {unknown_key(name, _RANGE_KEYS | {'choices'})}"
               for name in entry if name not in _RANGE_KEYS]
    if hint not in (int, float):
        return None, unknown + [f"{where}: a range needs a number field, and this one holds "
                                f"{getattr(hint, '__name__', hint)}; use choices = [...]"]
    problems = unknown + [f"{where}.{name}: required" for name in ("low", "high") if name not in entry]
    values: dict[str, Any] = {}
    for name, expected in (("low", hint), ("high", hint), ("step", hint), ("log", bool)):
        if name in entry:
            try:
                values[name] = coerce(entry[name], expected)
            except BadValue as bad:
                problems.append(f"{where}.{name}: {bad}")
    if problems:
        return None, problems
    low, high, log, step = values["low"], values["high"], values.get("log", False), values.get("step")
    if low >= high:
        problems.append(f"{where}: low must be below high, got {low} and {high}")
    if log and low <= 0:
        problems.append(f"{where}.low: a log range must start above 0, got {low}")
    if step is not None and (step <= 0 or log):
        problems.append(f"{where}.step: must be > 0 and cannot go with log = true, got {step}")
    kind: ParamKind = "int" if hint is int else "float"
    return Param(key, kind, low=low, high=high, log=log, step=step), problems


def _read_choices(key: str, hint: Any, entry: dict[str, Any], where: str) -> tuple[Param | None, list[str]]:
    problems = [f"{where}.{name}: choices cannot go with {name}" for name in entry if name != "choices"]
    raw = entry["choices"]
    if not isinstance(raw, list) or not raw:
        return None, problems + [f"{where}.choices: expected a non-empty list, got {raw!r}"]
    try:
        choices = tuple(coerce(value, hint) for value in raw)
    except BadValue as bad:
        return None, problems + [f"{where}.choices: {bad}"]
    if not all(isinstance(choice, _CHOICE_TYPES) for choice in choices):
        problems.append(f"{where}.choices: each choice must be a number, string or boolean")
    if len(set(map(repr, choices))) != len(choices):
        problems.append(f"{where}.choices: repeated value in {raw!r}")
    return Param(key, "categorical", choices=choices), problems

