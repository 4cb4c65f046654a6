"""MLflow bookkeeping: the campaign parent run, one child run per RunSpec, and the Tracker the
recipes log through.

Runs are found again by their config hash, which is what makes `repro run` idempotent: a run
whose hash already finished is skipped, and one that was killed or crashed is reopened, so its
resumed training keeps logging into the same MLflow run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import IntegrityError

from experiments.training.tracker import DataInput
from repro.config.schema import RunSpec
from repro.tracking import tags
from repro.tracking.dataset_inputs import dataset_input
from repro.tracking.provenance import git_commit, package_versions
from repro.tracking.run_params import run_params

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "kosmos-g"
# MLflow caps a log_batch call at 1000 metrics / 100 params.
_PARAMS_PER_BATCH = 100


def default_tracking_uri(workdir: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite file in the work directory (MLflow 3's own
    default backend; the file store is deprecated)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workdir.resolve() / 'mlflow.db'}"


def runs_url(server: str, experiment_id: str, share_key: str | None = None) -> str:
    """The experiment's runs table in the MLflow UI at `server`, in the view stored under
    `share_key` (repro.tracking.runs_view). MLflow 3 opens an experiment on its GenAI overview
    (traces) unless the URL asks for the machine-learning workflow, whatever the experiment's
    tags say (its routes: mlflow/server/js, experimentPageTabRuns)."""
    view = f"&viewStateShareKey={share_key}" if share_key else ""
    return f"{server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning{view}"


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path) -> str:
    """Creates the store and the experiment once, in the launching process: array tasks that
    each create a fresh SQLite schema at the same moment race on it. Behind a tracking server
    the artifacts go where the server keeps them (its --artifacts-destination)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    served = client.tracking_uri.startswith(("http://", "https://"))
    location = None if served else artifact_root.resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


class MlflowTracker:
    """experiments.training.tracker.Tracker on one MLflow run, through the client (no global active run,
    so several trackers can live in one process)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
        )

    def log_params(self, params: Mapping[str, object]) -> None:
        """Params are immutable in MLflow: a resumed run logs again only what it lacks, and one
        resumed on another world size keeps the value it started with (with a warning)."""
        logged = self.client.get_run(self.run_id).data.params
        for key, value in params.items():
            if key in logged and logged[key] != str(value):
                log.warning("param %s stays %s; this attempt runs with %s", key, logged[key], value)
        new = [Param(key, str(value)) for key, value in params.items() if key not in logged]
        for start in range(0, len(new), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[start:start + _PARAMS_PER_BATCH])

    def log_inputs(self, inputs: list[DataInput]) -> None:
        datasets = [dataset_input(item) for item in inputs]
        try:
            self.client.log_inputs(self.run_id, datasets=datasets)
        except MlflowException as error:
            # MLflow's database store looks a dataset up, then inserts it: two runs logging the
            # same dataset at once can both miss it, and the later insert breaks the unique key.
            # The insert that won is committed, so a second attempt finds it.
            if not isinstance(error.__cause__, IntegrityError):
                raise
            self.client.log_inputs(self.run_id, datasets=datasets)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_artifacts(self, local_folder: Path, folder: str) -> None:
        """Everything under local_folder, as the artifact folder `folder`."""
        self.client.log_artifacts(self.run_id, str(local_folder), folder)

    def set_tags(self, values: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])


def find_campaign(client: MlflowClient, experiment_id: str, campaign: str) -> Run | None:
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tags.KIND}` = 'campaign' and tags.`{tags.CAMPAIGN}` = '{campaign}'",
        max_results=1,
    )
    return found[0] if found else None


def open_campaign(client: MlflowClient, experiment_id: str, name: str, campaign: str, tier: str) -> str:
    """The parent run of one plan; running the same plan again reopens it."""
    found = find_campaign(client, experiment_id, campaign)
    if found is not None:
        run_id = found.info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(
        experiment_id, run_name=name,
        tags={tags.KIND: "campaign", tags.CAMPAIGN: campaign, tags.TIER: tier, tags.GIT_COMMIT: git_commit()},
    )
    return run.info.run_id


def runs_with_hash(client: MlflowClient, experiment_id: str, config_hash: str) -> list[Run]:
    """Every child run of this config, newest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tags.KIND}` = 'run' and tags.`{tags.CONFIG_HASH}` = '{config_hash}'",
        order_by=["attributes.start_time DESC"],
    )


def is_done(run: Run) -> bool:
    """Finished, or failed for a reason that is itself the result (a diverged loss)."""
    if run.info.status == "FINISHED":
        return True
    reason = run.data.tags.get(tags.FAILURE_REASON, "")
    return run.info.status == "FAILED" and reason.startswith(tags.STATUS_DIVERGED)


def open_run(
    client: MlflowClient, experiment_id: str, parent_run_id: str, spec: RunSpec, workdir: Path
) -> str:
    """Reopens the newest unfinished run of this config (a resume), or creates a new one, with
    the params of repro.tracking.run_params (paths relative to the work directory's roots)."""
    for run in runs_with_hash(client, experiment_id, spec.config_hash):
        if not is_done(run):
            client.update_run(run.info.run_id, status="RUNNING")
            if tags.FAILURE_REASON in run.data.tags:  # the crash it recorded is being retried
                client.delete_tag(run.info.run_id, tags.FAILURE_REASON)
            return run.info.run_id
        break
    run = client.create_run(experiment_id, run_name=spec.run_name, tags={
        "mlflow.parentRunId": parent_run_id,
        tags.KIND: "run", tags.TABLE: spec.table, tags.ROW: spec.row,
        tags.EXPERIMENT: spec.experiment, tags.TIER: spec.tier, tags.SEED: str(spec.seed),
        tags.CONFIG_HASH: spec.config_hash, tags.GIT_COMMIT: git_commit(),
        **{f"version.{name}": version for name, version in package_versions().items()},
    })
    items = [Param(k, v) for k, v in sorted(run_params(spec, workdir).items())]
    for start in range(0, len(items), _PARAMS_PER_BATCH):
        client.log_batch(run.info.run_id, params=items[start:start + _PARAMS_PER_BATCH])
    return run.info.run_id
