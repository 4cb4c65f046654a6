"""The view `repro ui` opens the MLflow UI on: the runs table with one row per run (the campaign
and sweep parents filtered out, so nothing is collapsed under them), ordered by row name, with
the table's row, seed and metrics as columns.

The MLflow UI keeps a column choice in the browser only; a URL can carry search facets but not
columns. What it can carry is a share key: the runs page loads its whole view (facets and
columns) from the experiment tag `mlflow.sharedViewState.<key>`, as its Share button writes it
(mlflow/server/js: viewStateShareKey; a URL that also names a facet ignores the shared view).
Columns are named as the UI names them, `<metrics|params|tags>.\\`<name>\\``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from mlflow import MlflowClient

from repro.tracking import tags

SHARED_VIEW_TAG = "mlflow.sharedViewState."
SHARE_KEY_PARAMETER = "viewStateShareKey"


def column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def runs_view(metrics: Sequence[str]) -> dict[str, object]:
    """The runs table's view: every run of a plan or sweep, the given metrics as columns
    (train/loss too, whose curves the charts tab draws)."""
    shown = [*dict.fromkeys([*metrics, tags.METRIC_TRAIN_LOSS])]
    return {
        "searchFilter": f"tags.`{tags.KIND}` = 'run'",
        "orderByKey": column("tags", tags.ROW),
        "orderByAsc": True,
        "selectedColumns": [column("tags", name) for name in (tags.TABLE, tags.ROW, tags.SEED)]
                           + [column("metrics", name) for name in shown],
    }


def share_runs_view(client: MlflowClient, experiment_id: str, metrics: Sequence[str]) -> str:
    """Stores the view on the experiment and returns its share key; the same view gets the same
    key, so setting it again changes nothing."""
    state = json.dumps(runs_view(metrics), sort_keys=True)
    key = hashlib.sha256(state.encode()).hexdigest()[:12]
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, state)
    return key
