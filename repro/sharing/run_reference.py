"""What a command's RUN argument names (`repro generate --checkpoint`, `repro export`): a run
directory or a checkpoint in one, a config hash under WORKDIR/runs, an MLflow run id, or a
folder `repro export` wrote."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from repro.config.load import ConfigError
from repro.tracking import tags
from repro.tracking.tags import MODEL_ARTIFACT


def find_run(reference: str, workdir: Path, tracking_uri: str) -> tuple[Path, Path]:
    """(folder, weights): a run directory and the checkpoint path within it that was named (the
    directory itself when none was), or for an export, its folder twice. An MLflow run whose
    directory is not on this machine comes as its logged export, downloaded under WORKDIR/.cache."""
    path = Path(reference).expanduser()
    if path.exists():
        # The nearest folder holding a config.json: the path itself (a run directory or an
        # export), or above a checkpoint (runs/<hash>/checkpoints/step-N/model.safetensors).
        for folder in [path, *path.parents][:4]:
            if (folder / "config.json").is_file():
                return folder, path
        raise ConfigError(f"{reference!r}: no run's config.json in it or in the folders above it")
    by_hash = workdir / "runs" / reference
    if by_hash.is_dir():
        return by_hash, by_hash
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(reference)
    except MlflowException:
        raise ConfigError(f"{reference!r}: not a file, a run directory, a config hash "
                          f"under {workdir / 'runs'} or an MLflow run id at {tracking_uri}") from None
    config_hash = run.data.tags.get(tags.CONFIG_HASH)
    run_dir = workdir / "runs" / str(config_hash)
    if run_dir.is_dir():
        return run_dir, run_dir
    if any(item.path == MODEL_ARTIFACT for item in client.list_artifacts(reference)):
        into = workdir / ".cache" / "mlflow-models" / reference
        exported = Path(client.download_artifacts(reference, MODEL_ARTIFACT, str(into)))
        return exported, exported
    raise ConfigError(f"{reference!r}: MLflow run of config {config_hash}, but {run_dir} is not here "
                      f"and the run logged no {MODEL_ARTIFACT!r} artifact; pass --workdir of the machine "
                      "that trained it")
