"""The params a run logs to MLflow: what the compare view sets side by side.

Only the config sections the run's recipe uses (registry.py says what it trains and reads):
`aligner.*` and `train.*` for a recipe that trains, `data.*` for one that reads data, `fid.*`
and `dreambench.*` while the evaluation is on; no value that is unset (None, or a path the
recipe does not read); paths relative to the root they come from (`@tiny/...` and `@mini/...`
for the assets the harness builds, `@run/<hash>` for another run) so that runs compare equal
across machines.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from experiments.config import EVALUATIONS, RunConfig
from experiments.recipes.registry import evaluation_applies, recipe_named
from repro.config.paths import PATH_KEYS, RUN_PREFIX, asset_roots
from repro.config.schema import RunSpec
from repro.tracking import tags

# The params in which the runs of one config, one per seed, differ: the seed, and a stage-3 run's
# stage-2 run (`@run/<hash>`: the same seed's).
PER_SEED_PARAMS = ("seed", "train.init_from")


def run_params(spec: RunSpec, workdir: Path) -> dict[str, str]:
    config = spec.config
    roots = {**asset_roots(workdir), RUN_PREFIX: (workdir / "runs").resolve()}
    flat = {"recipe": config.recipe, "seed": config.seed}
    for section in used_sections(config):
        flat.update(_flatten(asdict(getattr(config, section)), f"{section}."))
    params = {key: _shown(key, value, roots) for key, value in flat.items() if value not in (None, "")}
    params.update({f"{tags.SWEEP_POINT}{key}": str(value) for key, value in spec.sweep_point})
    return params


def used_sections(config: RunConfig) -> list[str]:
    recipe = recipe_named(config.recipe)
    read = {key.split(".")[0] for key in recipe.reads}
    used = ["models"] if "models" in read else []
    if recipe.trains:
        used += ["aligner", "train"]
    if "data" in read:
        used.append("data")
    for section in EVALUATIONS:
        if section in read or evaluation_applies(config, section):
            used.append(section)
    return used


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix.rstrip("."): value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}{key}."))
    return flat


def _shown(key: str, value: Any, roots: dict[str, Path]) -> str:
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    if key in PATH_KEYS:
        for prefix, root in roots.items():
            if Path(value).is_relative_to(root):
                return prefix + Path(value).relative_to(root).as_posix()
    return str(value)
