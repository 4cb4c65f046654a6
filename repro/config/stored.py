"""A run's resolved config read back from the config.json the job wrote into its directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.config import RunConfig
from repro.config.fields import SECTIONS, build, check_table
from repro.config.load import ConfigError


def stored_config(run_dir: Path) -> RunConfig:
    return stored_record(run_dir)[1]


def stored_record(run_dir: Path) -> tuple[dict[str, Any], RunConfig]:
    """The whole config.json (provenance beside the config) and the RunConfig in it, read once."""
    path = run_dir / "config.json"
    try:
        record = json.loads(path.read_text())
        stored = record["config"]
    except (OSError, ValueError, KeyError) as bad:
        raise ConfigError(str(path), [f"not a run's config.json: {bad}"]) from None
    sections, problems = {}, []
    for name, cls in SECTIONS.items():
        # JSON turned tuples into lists; checking coerces them back, as for experiments.toml.
        checked, found = check_table(_without_nulls(stored.get(name, {})), cls, name)
        problems += found
        sections[name], found = build(cls, checked, name)
        problems += found
    if problems:
        raise ConfigError(str(path), problems)
    return record, RunConfig(recipe=stored["recipe"], seed=stored["seed"], **sections)


def _without_nulls(table: dict[str, Any]) -> dict[str, Any]:
    """None is every optional field's default, and the checker (like TOML) knows no null."""
    return {key: _without_nulls(value) if isinstance(value, dict) else value
            for key, value in table.items() if value is not None}
