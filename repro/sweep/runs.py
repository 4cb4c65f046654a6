"""The RunSpec of each trial: the sweep's experiment, expanded alone, with the trial's params as
its one sweep point."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from repro.config import ConfigError
from repro.config.expand import expand, merge
from repro.config.load import read_document
from repro.config.overrides import read_overrides
from repro.config.schema import RunSpec
from repro.config.sweep import SweepSpec


@dataclass(frozen=True)
class TrialRuns:
    config: Path  # experiments.toml
    sweep: SweepSpec
    tier: str
    overrides: tuple[str, ...]  # the user's "dotted.key=value", over the sweep's own sections
    assets: Mapping[str, Path] | None  # each asset prefix's folder (repro.config.paths.asset_roots)

    def base(self) -> RunSpec:
        """The run every trial starts from, before its params are applied."""
        base = self._expand(f"sweep:{self.sweep.name}", f"{self.sweep.name} base", {})
        if base.launch.world_size > 1:
            # Pruning and telling the study happen in rank 0's job code alone: other ranks would
            # neither stop with a pruned trial nor keep out of the study.
            raise ConfigError(f"sweep {self.sweep.name!r}", [
                f"launch: a trial runs as one rank, not {base.launch.world_size} "
                "(launch.nodes x tasks per node)"])
        return base

    def trial(self, study: str, number: int, params: dict[str, Any]) -> RunSpec:
        """Layers, later wins: the experiment's, the sweep's sections, --set, then the params as
        the sweep point, so a trial's recorded params are always what it ran with.

        The labels are part of the run's id: two trials that drew the same params still get
        their own run folder and MLflow run, and a trial resumed after a kill finds its own.
        """
        return self._expand(f"sweep:{study}", f"{self.sweep.name} #{number}", params)

    def check_space(self) -> None:
        """The space against the resolved base run, before any trial is asked: each end of every
        range, and every choice, applied to the base run alone must make a valid run. A value the
        config cannot take (more warm-up steps than train.steps) is an error naming the space's
        key and the rule it breaks, rather than trials that fail as soon as they start. Checking
        the ends suffices for the config's rules, which are bounds; values of two params that
        clash only together still fail their trial alone."""
        problems = []
        for param in self.sweep.space:
            values = param.choices if param.kind == "categorical" else (param.low, param.high)
            for value in values:
                try:
                    self._expand(f"sweep:{self.sweep.name}", f"{self.sweep.name} space check",
                                 {param.key: value})
                except ConfigError as error:
                    problems += [f"space.{param.key}: {value!r} is a value of the space, but {problem}"
                                 for problem in error.problems or [str(error)]]
        if problems:
            raise ConfigError(f"sweep {self.sweep.name!r} on the {self.tier} tier", problems)

    def _expand(self, table: str, row: str, params: dict[str, Any]) -> RunSpec:
        document, problems = read_document(self.config)
        user_layers, found = read_overrides(self.overrides, None)
        problems += found
        if document is None or problems:
            raise ConfigError(str(self.config), problems)
        (base,) = [e for e in document.experiments if e.name == self.sweep.experiment]
        # The sweep's sections come after all of the experiment's, its tier's ones included.
        overrides = merge(base.overrides, base.tier_overrides.get(self.tier, {}), self.sweep.overrides)
        experiment = replace(
            base, table=table, row=row, overrides=overrides, tier_overrides={},
            # In the space's order: the point is part of the run's id.
            matrix=tuple((p.key, (params[p.key],)) for p in self.sweep.space if p.key in params),
        )
        # Expanded alone, so the sweep's sections and params are checked against its experiment
        # only, not against every experiment of the file.
        matrix = expand(replace(document, experiments=(experiment,)), self.tier, only=None,
                        seeds=[self.sweep.seed], user_layers=user_layers,
                        assets=self.assets, env=os.environ)
        (spec,) = matrix.runs
        return spec
