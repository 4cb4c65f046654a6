"""The data files a run read (experiments.training.tracker.DataInput) as MLflow dataset
inputs: name, source, a digest of the contents, and the rows the run took, which the MLflow UI
lists under the run's "Datasets used" and compares across runs."""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from experiments.training.tracker import DataInput

# Above this, a file is known by its name, size and mtime: hashing a caption TSV of many GB
# would read it whole before the first step.
_CONTENT_HASH_LIMIT = 64 * 2**20


def dataset_input(item: DataInput) -> DatasetInput:
    # MLflow's own source for a local path: type "local", {"uri": path} (artifact_dataset_sources).
    dataset = Dataset(
        name=item.name, digest=digest(Path(item.source)), source_type="local",
        source=json.dumps({"uri": item.source}), profile=json.dumps({"num_rows": item.rows}),
    )
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, item.context)])


def digest(path: Path) -> str:
    """16 hex digits that change with the data: a small file's content hash; for a large file, a
    folder (image roots, parquet shards) or a glob, a hash of the files' names, sizes and
    modification times, which is cheap for millions of files and reads none of them."""
    if path.is_file() and path.stat().st_size <= _CONTENT_HASH_LIMIT:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()[:16]
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files, root = sorted(p for p in path.rglob("*") if p.is_file()), path
    else:  # a glob of shards
        files, root = sorted(Path(p) for p in glob.glob(str(path))), Path("/")
    hashed = hashlib.sha256()
    for file in files:
        stat = file.stat()
        hashed.update(f"{file.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return hashed.hexdigest()[:16]
