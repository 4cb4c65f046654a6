"""The small interface a recipe reports through. repro/ hands in an MLflow-backed one; tests
hand in `RecordingTracker`, so a recipe runs under a test without any tracking server.

Metrics are what changes over a run (losses, throughput, scores); params are what a run holds
fixed (its world size, micro-batch size, the number of images an evaluation made); inputs are
the data files it read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class DataInput:
    """A data file (or folder) a run read: what the MLflow UI lists as the run's datasets."""

    name: str  # the config key that named it, e.g. "data.train"
    context: str  # "training", "heldout" or "evaluation"
    source: str  # its path
    rows: int  # the rows (captions, examples) the run took from it


class Tracker(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_params(self, params: Mapping[str, object]) -> None: ...

    def log_inputs(self, inputs: list[DataInput]) -> None: ...

    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...


class RecordingTracker:
    """Keeps everything in memory; what tests assert on."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.params: dict[str, object] = {}
        self.inputs: list[DataInput] = []
        self.artifacts: list[tuple[Path, str | None]] = []
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append((step, float(value)))

    def log_params(self, params: Mapping[str, object]) -> None:
        self.params.update(params)

    def log_inputs(self, inputs: list[DataInput]) -> None:
        self.inputs += inputs

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.artifacts.append((Path(path), folder))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def series(self, name: str) -> list[float]:
        return [value for _, value in self.metrics.get(name, [])]


class NullTracker:
    """Drops everything: what ranks other than 0 report through, rank 0 logging for the run."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_params(self, params: Mapping[str, object]) -> None:
        pass

    def log_inputs(self, inputs: list[DataInput]) -> None:
        pass

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass
