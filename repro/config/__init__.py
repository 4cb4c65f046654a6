"""experiments.toml -> a validated Matrix of RunSpecs. Imports no torch/mlflow, so `repro plan`
starts fast."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from repro.config.expand import config_hash, expand
from repro.config.fields import suggest
from repro.config.load import ConfigError, read_document
from repro.config.overrides import read_overrides
from repro.config.paths import TINY_PREFIX
from repro.config.schema import Matrix
from repro.config.sweep import SweepSpec

__all__ = ["ConfigError", "Matrix", "SweepSpec", "config_hash", "load_matrix", "load_sweep", "load_sweeps"]


def load_matrix(
    path: Path | str,
    tier: str,
    only: Sequence[str] | str | None = None,
    seeds: Sequence[int] | None = None,
    *,
    table: str | None = None,
    overrides: Iterable[str] = (),
    override_file: Path | None = None,
    tiny_assets: Path | None = None,
    assets: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
) -> Matrix:
    """Load, validate and expand the matrix for one tier; raise ConfigError listing every problem.

    only: experiment names or row labels to keep (all when None).
    seeds: replaces the seeds the tier or the experiment would run.
    table: keep only the experiments that fill a row of this table (own or reused); the runs
        they start from (`after`) come along either way.
    overrides: "dotted.key=value" (TOML literal, else a bare string), applied after every layer
        of the file and after `override_file` (a TOML file of config sections).
    assets: each asset prefix's folder (`@tiny/`, `@mini/`: repro.config.paths.asset_roots) that
        its paths are re-rooted in; nothing is built or checked there.
    tiny_assets: the `@tiny/` folder alone, short for assets={"@tiny/": tiny_assets}.
    env: where `${VAR}` placeholders in paths are looked up (os.environ by default).
    """
    path = Path(path)
    document, problems = read_document(path)
    user_layers, found = read_overrides(overrides, override_file)
    problems += found
    if document is None or problems:
        raise ConfigError(str(path), problems)
    return expand(
        document,
        tier,
        only=only,
        seeds=seeds,
        table=table,
        user_layers=user_layers,
        assets={**(assets or {}), **({TINY_PREFIX: tiny_assets} if tiny_assets is not None else {})},
        env=os.environ if env is None else env,
    )


def load_sweeps(path: Path | str) -> tuple[SweepSpec, ...]:
    """Every [[sweep]] of the file, checked; raise ConfigError listing every problem in it."""
    document, problems = read_document(Path(path))
    if document is None:
        raise ConfigError(str(path), problems)
    return document.sweeps


def load_sweep(path: Path | str, name: str) -> SweepSpec:
    sweeps = {sweep.name: sweep for sweep in load_sweeps(path)}
    if name not in sweeps:
        known = ", ".join(sorted(sweeps)) or "none declared"
        raise ConfigError(str(path), [f"sweep {name!r}: no [[sweep]] has this name{suggest(name, sweeps)}; "
                                      f"sweeps: {known}"])
    return sweeps[name]
