"""Turn a checked Document into concrete RunSpecs: merge the layers, cross seeds and sweeps, hash.

Layers, weakest first: protocol sections -> [stage.<recipe>] -> [tier.<t>] ->
[tier.<t>.stage.<recipe>] -> the experiment's overrides -> the experiment's `tier.<t>` ones ->
the user's override file -> --set -> the sweep point. The sweep point is last so that a run's
recorded point is always true.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from experiments.config import RunConfig
from repro.config.fields import SECTIONS, build, suggest
from repro.config.launch import LaunchConfig, check_launch
from repro.config.load import ConfigError, Document, Experiment, check_seeds
from repro.config.overrides import nest
from repro.config.paths import RUN_PREFIX, asset_versions, localize, needs_assets, resolve_paths
from repro.config.rules import check_batch_split, check_run, check_subjects
from repro.config.schema import ExperimentSpec, Matrix, RunSpec

SweepPoint = tuple[tuple[str, Any], ...]


def expand(
    document: Document,
    tier: str,
    *,
    only: Sequence[str] | str | None,
    seeds: Sequence[int] | None,
    table: str | None = None,
    user_layers: Sequence[dict[str, Any]],
    assets: Mapping[str, Path] | None,
    env: Mapping[str, str],
) -> Matrix:
    source = str(document.path)
    if tier not in document.tiers:
        choices = sorted(document.tiers)
        listed = ", ".join(choices)
        problem = f"tier: unknown tier {tier!r}{suggest(tier, choices)}; choose from {listed}"
        raise ConfigError(source, [problem])
    layers = document.tiers[tier]
    problems = _Problems()
    # Experiments whose `tiers` leave this one out are dropped before anything else sees them.
    left_out = {e.name: e.tiers for e in document.experiments if e.tiers is not None and tier not in e.tiers}
    named_left_out = _left_out_named(only, document.experiments, left_out, tier)
    problems.add("", [problem for _, problem in named_left_out])
    if only is not None:
        dropped = {item for item, _ in named_left_out}
        only = [item for item in ([only] if isinstance(only, str) else only) if item not in dropped]
    in_tier = tuple(e for e in document.experiments if e.name not in left_out)
    problems.add("", [
        f"experiment {e.name!r}: after: {e.after!r} does not run in tier {tier!r} (its `tiers`)"
        for e in in_tier if e.after in left_out
    ])
    tables = tuple(
        dataclasses.replace(table, rows=tuple(row for row in table.rows if row.experiment not in left_out))
        for table in document.tables
    )
    document = dataclasses.replace(document, experiments=in_tier, tables=tables)
    seed_override: tuple[int, ...] | None = None
    if seeds is not None:
        seed_override, found = check_seeds(list(seeds), "--seeds")
        problems.add("", found)
    selected, found = _select(document.experiments, only)
    problems.add("", found)
    if table is not None:
        selected, found = _in_table(document, table, selected)
        problems.add("", found)
    selected = _with_prerequisites(document.experiments, selected)

    specs: list[ExperimentSpec] = []
    runs: list[RunSpec] = []
    for experiment in _prerequisites_first(document.experiments):
        run_seeds = seed_override or experiment.seeds or layers.seeds
        for point in _points(experiment):
            where = f"{experiment.name!r}" + "".join(f" {key}={value}" for key, value in point)
            merged = merge(
                document.protocol,
                document.stages.get(experiment.recipe, {}),
                layers.config,
                layers.stages.get(experiment.recipe, {}),
                experiment.overrides,
                experiment.tier_overrides.get(tier, {}),
                *user_layers,
                *(nest(key, value) for key, value in point),
            )
            config, found = _build(experiment.recipe, merged)
            problems.add(where, found)
            if config is None:
                continue
            problems.add(where, check_run(config))
            launch, found = build(LaunchConfig, merged.get("launch", {}), "launch")
            problems.add(where, found or check_launch(launch) or check_batch_split(config, launch.world_size))
            # Paths are only checked for what will run, so `--only sd-v1-5` needs no MLLM.
            if experiment.name not in selected:
                continue
            for seed in run_seeds:
                seeded, after, found = _start_from(config, experiment, seed, runs)
                problems.add(where, found)
                seeded, found = resolve_paths(seeded, env)
                problems.add(where, found or check_subjects(seeded))
                problems.add(where, needs_assets(seeded, assets or {}))
                runs.append(_run(experiment, tier, seed, point, seeded, launch, assets, after))
        if experiment.name in selected:
            specs.append(
                ExperimentSpec(
                    experiment.name, experiment.table, experiment.row, experiment.recipe, run_seeds
                )
            )
    if problems:
        raise ConfigError(source, problems.lines())
    return Matrix(tier=tier, tables=document.tables, experiments=tuple(specs), runs=tuple(runs))


def _prerequisites_first(experiments: Sequence[Experiment]) -> list[Experiment]:
    """File order, except that an experiment comes after the one it starts from."""
    ordered: list[Experiment] = []
    by_name = {experiment.name: experiment for experiment in experiments}

    def place(experiment: Experiment) -> None:
        if experiment in ordered:
            return
        if experiment.after in by_name:
            place(by_name[experiment.after])
        ordered.append(experiment)

    for experiment in experiments:
        place(experiment)
    return ordered


def _start_from(
    config: RunConfig, experiment: Experiment, seed: int, runs: Sequence[RunSpec]
) -> tuple[RunConfig, tuple[str, ...], list[str]]:
    """The run this one starts from, as `@run/<hash>` in train.init_from: the `after`
    experiment's run with the same seed. A path the user set in init_from wins."""
    if experiment.after is None or config.train.init_from:
        return config, (), []
    before = [run for run in runs if run.experiment == experiment.after]
    match = [run for run in before if run.seed == seed]
    if not match:
        seeds = sorted({run.seed for run in before})
        return config, (), [f"after: {experiment.after!r} has no run with seed {seed} (its seeds: {seeds})"]
    init = f"{RUN_PREFIX}{match[0].config_hash}"
    train = dataclasses.replace(config.train, init_from=init)
    return dataclasses.replace(config, train=train), (match[0].config_hash,), []


class _Problems:
    """Problems keyed by text, so one shared by many experiments is listed once, naming them all."""

    def __init__(self) -> None:
        self._where: dict[str, list[str]] = {}

    def add(self, where: str, problems: Sequence[str]) -> None:
        for problem in problems:
            places = self._where.setdefault(problem, [])
            if where not in places:
                places.append(where)

    def __bool__(self) -> bool:
        return bool(self._where)

    def lines(self) -> list[str]:
        out = []
        for problem, places in self._where.items():
            named = [place for place in places if place]
            if not named:
                out.append(problem)
            else:
                noun = "experiment" if len(named) == 1 else "experiments"
                out.append(f"{noun} {', '.join(named)}: {problem}")
        return out


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; a later layer's value wins, tables merge key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


# Keys added after runs had finished, left out of the hash while they hold their default: a run
# that does not set one keeps the id (its folder, checkpoints and MLflow run) it had before the
# key existed.
HASHED_WHEN_CHANGED: tuple[str, ...] = (
    "data.max_image_pixels", "models.released", "fid.attribute_classifier", "train.empty_caption_prob"
)


def hashed_config(config: RunConfig) -> dict[str, Any]:
    tree = dataclasses.asdict(config)
    for key in HASHED_WHEN_CHANGED:
        section, name = key.split(".")
        if tree[section][name] == _default(type(getattr(config, section)), name):
            del tree[section][name]
    return tree


def config_hash(
    experiment: str, table: str, row: str, tier: str, seed: int, point: SweepPoint, config: RunConfig
) -> str:
    """First 12 hex digits of sha256 over canonical JSON: same inputs, same id, any process.
    A run on versioned assets (the mini world's trained weights) hashes their version too; the
    others keep the ids they had before assets had versions."""
    payload: dict[str, Any] = {
        "experiment": experiment,
        "table": table,
        "row": row,
        "tier": tier,
        "seed": seed,
        "sweep_point": [[key, value] for key, value in point],
        "config": hashed_config(config),
    }
    versions = asset_versions(config)
    if versions:
        payload["assets"] = versions
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _default(section: type, key: str) -> Any:
    return {field.name: field.default for field in dataclasses.fields(section)}[key]


def _run(
    experiment: Experiment,
    tier: str,
    seed: int,
    point: SweepPoint,
    config: RunConfig,
    launch: LaunchConfig,
    assets: Mapping[str, Path] | None,
    after: tuple[str, ...] = (),
) -> RunSpec:
    config = dataclasses.replace(config, seed=seed)
    # Hashed while asset paths are still `@tiny/...` or `@mini/...`, so such a run's id is the same
    # on every machine and checkout; the asset folder is only where this machine keeps them.
    digest = config_hash(experiment.name, experiment.table, experiment.row, tier, seed, point, config)
    if assets:
        config = localize(config, assets)
    return RunSpec(
        experiment=experiment.name,
        table=experiment.table,
        row=experiment.row,
        tier=tier,
        seed=seed,
        sweep_point=point,
        config=config,
        config_hash=digest,
        launch=launch,
        after=after,
    )


def _build(recipe: str, merged: dict[str, Any]) -> tuple[RunConfig | None, list[str]]:
    sections: dict[str, Any] = {}
    problems: list[str] = []
    for name, cls in SECTIONS.items():
        sections[name], found = build(cls, merged.get(name, {}), name)
        problems += found
    if problems:
        return None, problems
    return RunConfig(recipe=recipe, **sections), []


def _points(experiment: Experiment) -> list[SweepPoint]:
    keys = [key for key, _ in experiment.matrix]
    return [
        tuple(zip(keys, values))
        for values in itertools.product(*(values for _, values in experiment.matrix))
    ]


def _in_table(document: Document, table: str, selected: set[str]) -> tuple[set[str], list[str]]:
    """The selected experiments that fill a row of `table`, its own or reused."""
    spec = next((t for t in document.tables if t.key == table), None)
    if spec is None:
        known = sorted(t.key for t in document.tables)
        return set(), [f"--table {table!r}: no such table{suggest(table, known)}; tables: {', '.join(known)}"]
    members = {row.experiment for row in spec.rows if row.experiment is not None}
    return selected & members, []


def _with_prerequisites(experiments: Sequence[Experiment], selected: set[str]) -> set[str]:
    """A run that starts from another needs that one in the plan too (it is skipped there if
    it already finished)."""
    by_name = {experiment.name: experiment for experiment in experiments}
    out = set(selected)
    for name in selected:
        after = by_name[name].after
        while after is not None and after not in out:
            out.add(after)
            after = by_name[after].after
    return out


def _left_out_named(
    only: Sequence[str] | str | None,
    experiments: Sequence[Experiment],
    left_out: Mapping[str, Any],
    tier: str,
) -> list[tuple[str, str]]:
    """(item, problem) for each --only item naming an experiment that `tiers` leave out of this
    tier: said as such, not as an unknown name."""
    wanted = [only] if isinstance(only, str) else list(only or ())
    return [
        (item, f"--only {item!r}: experiment {e.name!r} runs only in tiers "
               f"{', '.join(left_out[e.name])}, not {tier!r}")
        for item in wanted for e in experiments if e.name in left_out and item in (e.name, e.row)
    ]


def _select(
    experiments: Sequence[Experiment], only: Sequence[str] | str | None
) -> tuple[set[str], list[str]]:
    """Experiments named by `only` (names or row labels); all of them when it is None."""
    if only is None:
        return {experiment.name for experiment in experiments}, []
    wanted = [only] if isinstance(only, str) else list(only)
    selected: set[str] = set()
    problems: list[str] = []
    known = [name for e in experiments for name in (e.name, e.row)]
    for item in wanted:
        matches = {e.name for e in experiments if item in (e.name, e.row)}
        if not matches:
            problems.append(
                f"--only {item!r}: names no experiment or row{suggest(item, known)}; "
                f"experiments: {', '.join(e.name for e in experiments)}"
            )
        selected |= matches
    return selected, problems
