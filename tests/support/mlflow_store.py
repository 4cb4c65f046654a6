"""A real MLflow store in a test folder where child runs are made by hand, with explicit start
times so that "the latest run" never depends on the clock."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient


class FakeRunStore:
    def __init__(self, tmp: Path, experiment: str) -> None:
        self.uri = f"sqlite:///{tmp}/mlflow.db"
        self.client = MlflowClient(self.uri)
        self.experiment_id = self.client.create_experiment(
            experiment, artifact_location=(tmp / "artifacts").as_uri()
        )
        self.clock = 1_700_000_000_000

    def create_run(self, run_tags: dict[str, str]) -> str:
        """A new run, started a minute after the previous one."""
        self.clock += 60_000
        return self.client.create_run(self.experiment_id, start_time=self.clock, tags=run_tags).info.run_id
