"""Rows whose seeds ran different configs. collect_runs keeps, per experiment and seed, the run of
the config launched last, so re-running some seeds of a row with an override (`repro run --only
aligner-12 --seeds 0 --set train.steps=10000`) leaves the other seeds at the config before, and
the row's mean would mix the two. The table notes such a row, the findings and gates read none,
and the report says what differs, from the params the runs logged."""

from __future__ import annotations

import pandas as pd

from repro.config.schema import TableSpec
from repro.tracking import tags
from repro.tracking.run_params import PER_SEED_PARAMS

HEADING = "### Rows whose seeds ran different configs"
MIXED_NOTE = "its seeds ran different configs (see below)"  # the row's note in the table


def mixed_configs(runs: pd.DataFrame) -> dict[str, str]:
    """Experiment -> what its runs' params differ in beyond the seed and the keys its sweep points
    set, e.g. "train.steps: 10000 (seed 0), 120 (seeds 1, 2)"; experiments whose runs agree are
    absent. `runs` as collect_runs gives them, their params in the `params` column. Only keys that
    every run of the row logged count: a key the harness added later is missing from older runs
    of the same config."""
    mixed = {}
    for experiment, group in runs.groupby("experiment", sort=False):
        params = list(group["params"])
        swept = {key.removeprefix(tags.SWEEP_POINT) for p in params for key in p
                 if key.startswith(tags.SWEEP_POINT)}
        shared = set.intersection(*(set(p) for p in params))
        keys = sorted(shared - set(PER_SEED_PARAMS) - swept)
        differing = [key for key in keys if not key.startswith(tags.SWEEP_POINT)
                     and len({p[key] for p in params}) > 1]
        if differing:
            mixed[str(experiment)] = "; ".join(_values(key, group) for key in differing)
    return mixed


def why_unread(experiments: list[str], mixed: dict[str, str], spec: TableSpec) -> str:
    """Why a finding or gate on `experiments` is not read, or "" where each row's seeds agree."""
    for experiment in experiments:
        if experiment in mixed:
            return (f"{_row_name(experiment, spec)}'s seeds ran different configs ({mixed[experiment]}); "
                    "run every seed of it with the same settings.")
    return ""


def mixed_section(mixed: dict[str, str], spec: TableSpec) -> str:
    lines = [f"{HEADING}\n", "Each of these rows' means mixes configs, so no finding or gate reads it; run"
             " every seed of it again with the same settings (`repro run --only <experiment>`)."]
    lines += [f"- **{_row_name(experiment, spec)}** ({experiment}): {differs}"
              for experiment, differs in mixed.items()]
    return "\n".join(lines)


def _row_name(experiment: str, spec: TableSpec) -> str:
    row = spec.row_of(experiment)
    return row.name if row is not None else experiment


def _values(key: str, group: pd.DataFrame) -> str:
    seeds_of: dict[str, list[int]] = {}
    for seed, params in zip(group["seed"], group["params"]):
        seeds_of.setdefault(params[key], []).append(int(seed))
    shown = [f"{value} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})"
             for value, seeds in seeds_of.items()]
    return f"{key}: {', '.join(shown)}"
