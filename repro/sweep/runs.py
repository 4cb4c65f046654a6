"""The RunSpec of each trial: the base experiment's run with the trial's params as overrides."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from repro.config import load_matrix
from repro.config.schema import RunSpec
from repro.config.sweep import SweepSpec


@dataclass(frozen=True)
class TrialRuns:
    config: Path  # experiments.toml
    sweep: SweepSpec
    tier: str
    overrides: tuple[str, ...]  # the user's "dotted.key=value", over the sweep's own sections
    tiny_assets: Path | None

    def base(self) -> RunSpec:
        """The run every trial starts from, before its params are applied."""
        return self._load({})

    def trial(self, study: str, number: int, params: dict[str, Any]) -> RunSpec:
        """Layers, later wins: the experiment's, the sweep's sections, --set, the params (last,
        so a trial's recorded params are always what it ran with).

        The id covers the study and trial number as well as the config: two trials that drew
        the same params still get their own run folder and MLflow run, while a trial resumed
        after a kill finds its own checkpoints and run again.
        """
        spec = self._load(params)
        digest = hashlib.sha256(f"{study}/{number}/{spec.config_hash}".encode()).hexdigest()[:12]
        return replace(
            spec,
            table=f"sweep:{self.sweep.name}",  # keeps trials out of the paper tables' reports
            row=f"{self.sweep.name} #{number}",
            sweep_point=tuple((param.key, params[param.key]) for param in self.sweep.space),
            config_hash=digest,
        )

    def _load(self, params: dict[str, Any]) -> RunSpec:
        assignments = [*_assignments(self.sweep.overrides), *self.overrides]
        # JSON scalars are TOML literals, so each value reaches the config with its type.
        assignments += [f"{key}={json.dumps(value)}" for key, value in params.items()]
        matrix = load_matrix(self.config, self.tier, only=[self.sweep.experiment],
                             seeds=[self.sweep.seed], overrides=assignments,
                             tiny_assets=self.tiny_assets)
        (spec,) = matrix.runs  # the sweep's experiment has no matrix, and one seed is asked for
        return spec


def _assignments(sections: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in sections.items():
        if isinstance(value, dict):
            out += _assignments(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out
