"""The data files a run read (experiments.training.tracking.DataInput) as MLflow dataset
inputs: name, source, a digest of the contents, and the rows the run took, which the MLflow UI
lists under the run's "Datasets used" and compares across runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from experiments.training.tracking import DataInput


def dataset_input(item: DataInput) -> DatasetInput:
    # MLflow's own source for a local path: type "local", {"uri": path} (artifact_dataset_sources).
    dataset = Dataset(
        name=item.name, digest=digest(Path(item.source)), source_type="local",
        source=json.dumps({"uri": item.source}), profile=json.dumps({"num_rows": item.rows}),
    )
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, item.context)])


def digest(path: Path) -> str:
    """A file's content hash; for a folder (image roots, parquet shards) a hash of its files'
    names, sizes and modification times, which is cheap for millions of files. 16 hex digits."""
    hashed = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            hashed = hashlib.file_digest(f, "sha256")
    else:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            hashed.update(f"{file.relative_to(path)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return hashed.hexdigest()[:16]
