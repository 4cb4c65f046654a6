"""Everything the report reads from MLflow: the runs of a table's experiments at one tier, their
loss histories, sample grids and DreamBench sheets. The rest of the report works on
plain DataFrames and files."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from repro.sweep import tags as sweep_tags
from repro.tracking import tags
from repro.tracking.store import StoreError

_URI_VARIABLE = "MLFLOW_TRACKING_URI"

HISTORY_COLUMNS = ["run_id", "experiment", "seed", "step", "loss"]
# Only runs that ended count; a RUNNING or KILLED run has no result to report yet.
_ENDED = ("FINISHED", "FAILED")


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    # mlflow.search_runs only reads the global tracking URI; restore it so callers see no change.
    # set_tracking_uri also exports MLFLOW_TRACKING_URI, which would then outrank every later
    # default (and reach child processes), so the variable is restored as well.
    previous = mlflow.get_tracking_uri()
    previous_env = os.environ.get(_URI_VARIABLE)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop(_URI_VARIABLE, None)
        else:
            os.environ[_URI_VARIABLE] = previous_env


def collect_runs(
    tracking_uri: str,
    experiment_name: str,
    experiments: Collection[str],
    tier: str,
    metrics: Sequence[str],
) -> pd.DataFrame:
    """The plan runs of `experiments` at `tier`, one per experiment, seed and sweep point, with
    one column per metric, named after it. That one run is of the config launched last (a run
    of an edited config supersedes the runs of the one before it) and, of that config's runs,
    the latest FINISHED re-run, else the latest FAILED one. The table a plan run was tagged with
    does not matter (Table 1 reuses Table 2's SD v1.5 runs); an Optuna trial's runs are the
    sweep's report, not a table's."""
    experiment = MlflowClient(tracking_uri).get_experiment_by_name(experiment_name)
    if experiment is None:
        raise StoreError(
            f"no MLflow experiment named {experiment_name!r} at {tracking_uri}; nothing has run there"
        )
    query = f"tags.`{tags.KIND}` = 'run' and tags.`{tags.TIER}` = '{tier}'"
    with _tracking_uri(tracking_uri):
        found = mlflow.search_runs(experiment_ids=[experiment.experiment_id], filter_string=query)
    runs = _tidy(found, metrics)
    planned = runs["experiment"].isin(experiments) & runs["trial"].isna()
    return _latest_per_config(_latest_config(runs[planned]))


def _tidy(found: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """`found` with plain column names, a metric's column named after the metric, `point`: the
    run's sweep point as text ("" where it has none), and `params`: the params it logged, a dict."""
    # search_runs only creates a tags./metrics. column when some run has it, hence the reindex.
    source = {
        "run_id": "run_id",
        "row": f"tags.{tags.ROW}",
        "experiment": f"tags.{tags.EXPERIMENT}",
        "seed": f"tags.{tags.SEED}",
        "config_hash": f"tags.{tags.CONFIG_HASH}",
        "git_commit": f"tags.{tags.GIT_COMMIT}",
        "status": "status",
        "failure_reason": f"tags.{tags.FAILURE_REASON}",
        "fid_implementation": f"tags.{tags.FID_IMPLEMENTATION}",
        "fid_preprocessing": f"tags.{tags.FID_PREPROCESSING}",
        "start_time": "start_time",
        "trial": f"tags.{sweep_tags.TRIAL}",
        **{metric: f"metrics.{metric}" for metric in metrics},
        "device_hours": f"metrics.{tags.METRIC_DEVICE_HOURS}",
        "train_flops": f"metrics.{tags.METRIC_TRAIN_FLOPS}",
        "step_flops": f"metrics.{tags.METRIC_STEP_FLOPS}",
    }
    point = found.filter(like=f"params.{tags.SWEEP_POINT}").sort_index(axis=1).astype("string")
    logged = found.filter(regex=r"^params\.").rename(columns=lambda column: column.removeprefix("params."))
    runs = found.reindex(columns=list(source.values())).set_axis(list(source), axis=1)
    text = ["run_id", "status", "row", "experiment", "config_hash", "git_commit", "failure_reason",
            "fid_implementation", "fid_preprocessing"]
    runs[text] = runs[text].astype("string")
    runs["seed"] = pd.to_numeric(runs["seed"]).astype("Int64")
    runs["point"] = point.fillna("").agg(" ".join, axis=1) if not point.empty else ""
    runs["params"] = [row.dropna().to_dict() for _, row in logged.iterrows()]
    measured = [*metrics, "device_hours", "train_flops", "step_flops"]
    runs[measured] = runs[measured].astype(float)
    return runs


def _latest_config(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the config launched last of each experiment, seed and sweep point."""
    started = runs.groupby("config_hash")["start_time"].transform("max")
    newest = started == started.groupby([runs["experiment"], runs["seed"], runs["point"]]).transform("max")
    return runs[newest]


def _latest_per_config(runs: pd.DataFrame) -> pd.DataFrame:
    ended = runs[runs["status"].isin(_ENDED)]
    ranked = ended.assign(_finished=ended["status"] == "FINISHED")
    ranked = ranked.sort_values(["_finished", "start_time"], ascending=False, kind="stable")
    latest = ranked.drop_duplicates("config_hash", keep="first").drop(columns=["_finished", "point", "trial"])
    return latest.sort_values(["row", "seed"], kind="stable").reset_index(drop=True)


def loss_histories(tracking_uri: str, runs: pd.DataFrame) -> pd.DataFrame:
    """train/loss over steps for every run in `runs`, one point per step; runs that never
    trained add nothing.

    A run that resumed from an older checkpoint than its newest (one was damaged and moved
    aside) logs the steps in between again; MLflow keeps every point, so the last one logged for
    a step is the one of the attempt that went on, and the only one kept here."""
    client = MlflowClient(tracking_uri)
    points = [
        (run.run_id, run.experiment, run.seed, point.step, point.value, point.timestamp)
        for run in runs.itertuples()
        for point in client.get_metric_history(run.run_id, tags.METRIC_TRAIN_LOSS)
    ]
    histories = pd.DataFrame(points, columns=[*HISTORY_COLUMNS, "timestamp"])
    # Typed even when empty, so callers can do arithmetic on it without checking first.
    histories = histories.astype({"step": "int64", "loss": "float64"})
    histories = histories.sort_values(["run_id", "step", "timestamp"], kind="stable")
    return histories.drop_duplicates(["run_id", "step"], keep="last").drop(columns="timestamp")


def download_sample_grids(tracking_uri: str, runs: pd.DataFrame, dst: Path) -> dict[str, Path]:
    """Per experiment, the samples grid of its lowest seed that logged one; experiments with none
    are absent."""
    client = MlflowClient(tracking_uri)
    folder, name = tags.SAMPLE_GRID_ARTIFACT.rsplit("/", 1)
    grids: dict[str, Path] = {}
    for run in runs.sort_values("seed").itertuples():
        if run.experiment in grids:
            continue
        logged = {Path(info.path).name for info in client.list_artifacts(run.run_id, folder)}
        if name not in logged:
            continue
        local = mlflow.artifacts.download_artifacts(
            run_id=run.run_id,
            artifact_path=tags.SAMPLE_GRID_ARTIFACT,
            dst_path=str(dst / run.run_id),
            tracking_uri=tracking_uri,
        )
        grids[run.experiment] = Path(local)
    return grids


def download_dreambench_sheets(tracking_uri: str, runs: pd.DataFrame, dst: Path) -> dict[str, Path]:
    """Per DreamBench subject, the sheet logged by the lowest seed in `runs` that logged any;
    empty when none did."""
    client = MlflowClient(tracking_uri)
    for run in runs.sort_values("seed").itertuples():
        if not client.list_artifacts(run.run_id, tags.DREAMBENCH_SHEETS):
            continue
        local = mlflow.artifacts.download_artifacts(
            run_id=run.run_id,
            artifact_path=tags.DREAMBENCH_SHEETS,
            dst_path=str(dst / run.run_id),
            tracking_uri=tracking_uri,
        )
        return {sheet.stem: sheet for sheet in sorted(Path(local).glob("*.png"))}
    return {}
