"""LaunchConfig -> submitit's SlurmExecutor parameters, and the sbatch script they make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from submitit.slurm.slurm import _make_sbatch_string

from repro.config.launch import LaunchConfig


def sbatch_parameters(launch: LaunchConfig, job_name: str = "repro") -> dict[str, Any]:
    """In sbatch's own names, which SlurmExecutor.update_parameters also takes."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": launch.timeout_min,
        "nodes": launch.nodes,
        "ntasks_per_node": launch.tasks_per_node,  # one task (= one rank) per GPU
        "array_parallelism": launch.array_parallelism,
        "signal_delay_s": launch.signal_delay_s,
        "additional_parameters": dict(launch.sbatch),
    }
    if launch.setup:
        params["setup"] = list(launch.setup)
    if launch.gpus_per_node:
        params["gpus_per_node"] = launch.gpus_per_node
    if launch.mem_gb is not None:
        params["mem"] = f"{launch.mem_gb}GB"
    for name in ("partition", "account", "qos", "constraint", "cpus_per_task"):
        if getattr(launch, name) is not None:
            params[name] = getattr(launch, name)
    return params


def sbatch_script(launch: LaunchConfig, folder: Path, array_size: int | None = None,
                  job_name: str = "repro") -> str:
    """The script `repro run --executor slurm` submits for these settings, without submitting
    it: what `repro plan --sbatch` prints and what the tests check against the config."""
    # submitit's own renderer (private, but it is what SlurmExecutor calls), so this can never
    # drift from the script that is really submitted.
    return _make_sbatch_string(
        command="python -u -m submitit.core._submit " + str(folder), folder=folder,
        map_count=array_size, **sbatch_parameters(launch, job_name),
    )
