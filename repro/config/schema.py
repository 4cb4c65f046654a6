"""The experiment matrix as typed, frozen objects: what experiments.toml becomes once loaded."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import RunConfig
from repro.config.launch import LaunchConfig

FAILED = "Failed"  # how the paper prints a row that produced no meaningful images


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
class Panel:
    """One side of a multi-metric table, e.g. Table 1's DreamBench panel."""

    name: str
    metrics: tuple[str, ...]  # MLflow metric names, in column order
    labels: tuple[str, ...]  # their column headers, e.g. "CLIP-I"
    lower_is_better: bool


@dataclass(frozen=True)
class PanelRow:
    """A row of a panel table. Reproduced rows name the experiment whose runs fill them; cited
    rows (other methods, as the paper prints them) have experiment None."""

    name: str
    experiment: str | None
    kind: str  # e.g. "zero-shot", "fine-tuning"; "" when the paper gives none
    paper: tuple[tuple[str, float], ...]  # (metric, the paper's value)


@dataclass(frozen=True)
class PanelTableSpec:
    """A table of several metrics in panels (Table 1): reproduced rows beside cited ones."""

    key: str
    title: str
    panels: tuple[Panel, ...]
    rows: tuple[PanelRow, ...]  # reproduced first, in file order

    @property
    def reproduced(self) -> tuple[PanelRow, ...]:
        return tuple(row for row in self.rows if row.experiment is not None)

    @property
    def cited(self) -> tuple[PanelRow, ...]:
        return tuple(row for row in self.rows if row.experiment is None)


AnyTable = TableSpec | PanelTableSpec


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
    # Config hashes of the runs this one starts from (stage 3 after stage 2): it is launched
    # once they have finished. Already part of the id through train.init_from.
    after: tuple[str, ...] = ()

    @property
    def run_name(self) -> str:
        point = "".join(f" {key}={value}" for key, value in self.sweep_point)
        return f"{self.row}{point} seed={self.seed}"


@dataclass(frozen=True)
class Matrix:
    """experiments.toml, validated: the tables, experiments and the runs they expand to."""

    tier: str
    tables: tuple[AnyTable, ...]
    experiments: tuple[ExperimentSpec, ...]
    runs: tuple[RunSpec, ...]
