"""What the SLURM tests share: whether a controller answers, and SLURM's preemption done by hand."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest


def slurm_is_up() -> bool:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return answer.returncode == 0 and "up" in answer.stdout


# conftest.py's `slurm_controller` skips these where no controller answers, and fails them in CI.
SLURM_ONLY = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_controller")]


def preempt(workdir: Path, job_id: str) -> None:
    """What SLURM does before a preemption or the time limit: the warning signal (`signal_delay_s`
    ahead); then, once the job has requeued itself, start it again at once."""
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    wait_for(lambda: "Requeued job" in _job_logs(workdir), 60)
    # SLURM holds a requeued job back for a while (its BeginTime); not worth waiting for here.
    # Only once the controller has it pending: an update that lands before the requeue is undone.
    wait_for(lambda: _pending_reason(job_id) == "BeginTime", 60)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)


def _pending_reason(job_id: str) -> str:
    answer = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "PD", "-o", "%r"], capture_output=True,
                            text=True)
    return answer.stdout.strip()


def _job_logs(workdir: Path) -> str:
    return "\n".join(p.read_text() for p in (workdir / "jobs").glob("*/*_log.err"))


def wait_for(found, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError("timed out; see `squeue`, `sacct` and the job logs")
