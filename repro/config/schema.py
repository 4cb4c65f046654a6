"""The experiment matrix as typed, frozen objects: what experiments.toml becomes once loaded."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import RunConfig
from repro.config.launch import LaunchConfig


@dataclass(frozen=True)
class TableRow:
    name: str  # the row's label as the paper prints it, e.g. "12-Layers AlignerNet"
    experiment: str  # the [[experiment]] that regenerates it
    paper_value: float | None  # None where the paper reports "Failed"


@dataclass(frozen=True)
class TableSpec:
    key: str  # "table2"
    title: str
    metric: str  # MLflow metric the table shows, e.g. "eval/fid"
    lower_is_better: bool
    baseline_row: str  # the row the failure rule compares against
    # A row counts as "Failed" when its runs diverged, or when its mean metric exceeds
    # failed_above_baseline_ratio x the baseline row's mean.
    failed_above_baseline_ratio: float
    rows: tuple[TableRow, ...]


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    table: str
    row: str
    recipe: str
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class RunSpec:
    """One concrete run: an experiment at one seed and one sweep point, fully resolved."""

    experiment: str
    table: str
    row: str
    tier: str
    seed: int
    sweep_point: tuple[tuple[str, object], ...]  # (dotted key, value) pairs; empty if none
    config: RunConfig
    config_hash: str  # stable id: hash of everything above but itself
    launch: LaunchConfig = LaunchConfig()  # how it is launched; not part of its id

    @property
    def run_name(self) -> str:
        point = "".join(f" {key}={value}" for key, value in self.sweep_point)
        return f"{self.row}{point} seed={self.seed}"


@dataclass(frozen=True)
class Matrix:
    """experiments.toml, validated: the tables, experiments and the runs they expand to."""

    tier: str
    tables: tuple[TableSpec, ...]
    experiments: tuple[ExperimentSpec, ...]
    runs: tuple[RunSpec, ...]
