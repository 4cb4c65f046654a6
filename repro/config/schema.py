"""The experiment matrix as typed, frozen objects: what experiments.toml becomes once loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from experiments.config import RunConfig
from repro.config.launch import LaunchConfig

FAILED = "Failed"  # how the paper prints a row that produced no meaningful images


@dataclass(frozen=True)
class BeyondPaperColumn:
    """A column the paper has none of (the mini world's attribute accuracy): shown after the
    panel's own columns, with no paper value, only when some run of the table logged it."""

    metric: str
    label: str
    lower_is_better: bool


@dataclass(frozen=True)
class Panel:
    """One side of a table: the metrics shown together under one heading, e.g. Table 1's
    DreamBench panel, or Table 2's one panel, MS-COCO FID."""

    name: str
    metrics: tuple[str, ...]  # MLflow metric names, in column order
    labels: tuple[str, ...]  # their column headers, e.g. "CLIP-I"
    lower_is_better: bool
    beyond_paper: tuple[BeyondPaperColumn, ...] = ()


@dataclass(frozen=True)
class TableRow:
    """Reproduced rows name the experiment whose runs fill them; cited rows (other methods, as
    the paper prints them) have experiment None."""

    name: str  # the row's label as the paper prints it, e.g. "12-Layers AlignerNet"
    experiment: str | None
    kind: str  # e.g. "zero-shot", "fine-tuning"; "" when the paper gives none
    # (metric, the paper's value); None where the paper prints "Failed".
    paper: tuple[tuple[str, float | None], ...]
    # How a reproduced row's numbers came about, the report's Source column.
    source: str = "reproduced"


@dataclass(frozen=True)
class FailureRule:
    """When a reproduced row counts as "Failed", as the paper's rows that made no meaningful
    images do: its runs diverged, or its mean of a metric exceeds failed_above_baseline_ratio x
    the baseline row's mean (so only for lower-is-better metrics)."""

    baseline_row: str
    failed_above_baseline_ratio: float


# How a finding compares its experiment's row: "fails" under the table's failure rule; "better_than"
# the other row (strictly, on the table's first metric); "as_good_as" the other row, within the
# seeds' spread.
FindingKind = Literal["fails", "better_than", "as_good_as"]


@dataclass(frozen=True)
class Finding:
    """One of the paper's claims about a table, checked against the measured rows."""

    claim: str  # as the report states it, e.g. "E2E without AlignerNet fails"
    experiment: str
    holds: FindingKind
    other: str | None = None  # the experiment compared with; None for "fails"
    # The claim compares the two rows at equal training compute: where their counted FLOPs lie
    # further apart than a step (an override gave one row more steps), it cannot be checked.
    at_equal_compute: bool = False
    # Config keys (dotted) whose values the two rows' runs must share, e.g. train.steps for a claim
    # about the same training (24 against 12 layers): where they differ it cannot be checked.
    same_params: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gate:
    """A bound a row's mean must meet for the table to mean something (the mini world's models):
    mean of `metric` over the experiment's finished runs >= bound (at_least) or <= bound, the
    bound scaled by the `times` experiment's mean of the same metric where one is named."""

    name: str
    experiment: str
    metric: str
    bound: float
    at_least: bool
    times: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """A table of the paper: panels of metrics, reproduced rows beside cited ones. Table 2 is one
    panel with a failure rule, Table 1 two panels without one."""

    key: str  # "table2"
    title: str
    panels: tuple[Panel, ...]
    rows: tuple[TableRow, ...]  # reproduced first, in file order
    failure_rule: FailureRule | None = None
    findings: tuple[Finding, ...] = ()
    gates: tuple[Gate, ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        """The paper's metrics, the columns every tier shows."""
        return tuple(metric for panel in self.panels for metric in panel.metrics)

    @property
    def beyond_paper(self) -> tuple[BeyondPaperColumn, ...]:
        return tuple(column for panel in self.panels for column in panel.beyond_paper)

    @property
    def collected_metrics(self) -> tuple[str, ...]:
        """Every metric the report reads from the runs: the columns and what the gates check."""
        extra = [column.metric for column in self.beyond_paper] + [gate.metric for gate in self.gates]
        return tuple(dict.fromkeys([*self.metrics, *extra]))

    def row_of(self, experiment: str) -> TableRow | None:
        return next((row for row in self.rows if row.experiment == experiment), None)

    @property
    def reproduced(self) -> tuple[TableRow, ...]:
        return tuple(row for row in self.rows if row.experiment is not None)

    @property
    def cited(self) -> tuple[TableRow, ...]:
        return tuple(row for row in self.rows if row.experiment is None)


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
    tables: tuple[TableSpec, ...]
    experiments: tuple[ExperimentSpec, ...]
    runs: tuple[RunSpec, ...]
