"""The small interface a recipe reports through. repro/ hands in an MLflow-backed one; tests
hand in `RecordingTracker`, so a recipe runs under a test without any tracking server."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Tracker(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...


class RecordingTracker:
    """Keeps everything in memory; what tests assert on."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: list[tuple[Path, str | None]] = []
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append((step, float(value)))

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

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass
