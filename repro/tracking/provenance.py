"""What a run records about where it came from: the code's commit and the package versions."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "torch", "torchvision", "diffusers", "transformers", "mlflow", "optuna", "submitit",
    "torch-fidelity", "pandas", "numpy",
)


def git_commit(where: Path | None = None) -> str:
    """HEAD's hash, suffixed "-dirty" when tracked files have uncommitted changes."""
    cwd = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
