"""Hands RunSpecs to a submitit executor and collects what comes back.

`local` runs each job in its own subprocess on this machine (the default), `debug` runs them
in this process one after another (for tests and pdb). Only the RunSpec and a small JobContext
travel to the job; models are built inside it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

from repro.config.schema import RunSpec
from repro.job import JobContext, JobResult, execute

log = logging.getLogger(__name__)

EXECUTORS = ("local", "debug")
_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class LaunchOutcome:
    spec: RunSpec
    job_id: str
    result: JobResult | None  # None when the job raised
    error: str | None = None  # the job's exception, and where its full log lives


def make_executor(kind: str, folder: Path, timeout_min: int = 24 * 60) -> submitit.Executor:
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        # submitit's local default is 5 minutes, after which it signals the job to stop.
        executor.update_parameters(timeout_min=timeout_min)
        return executor
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")


def launch(
    specs: list[RunSpec], ctx: JobContext, executor_kind: str, parallel: int, timeout_min: int
) -> list[LaunchOutcome]:
    """Keeps at most `parallel` jobs in flight and returns one outcome per spec, in order of
    completion. A failing job does not stop the others."""
    executor = make_executor(executor_kind, ctx.workdir / "jobs" / "%j", timeout_min)
    pending = list(specs)
    running: dict[submitit.Job, RunSpec] = {}
    outcomes: list[LaunchOutcome] = []
    while pending or running:
        while pending and len(running) < parallel:
            spec = pending.pop(0)
            job = executor.submit(execute, spec, ctx)
            log.info("submitted %s (%s) as job %s", spec.run_name, spec.config_hash, job.job_id)
            running[job] = spec
        finished = [job for job in running if job.done()]
        for job in finished:
            outcomes.append(_collect(job, running.pop(job)))
        if not finished:
            time.sleep(_POLL_SECONDS)
    return outcomes


def _collect(job: submitit.Job, spec: RunSpec) -> LaunchOutcome:
    try:
        result = job.result()
    except Exception as error:  # the job's own failure, re-raised by submitit
        message = f"{error}\n(full log: {job.paths.stderr})"
        log.error("%s failed: %s", spec.run_name, message)
        return LaunchOutcome(spec, str(job.job_id), None, message)
    log.info("%s: %s %s", spec.run_name, result.status, _headline(result))
    return LaunchOutcome(spec, str(job.job_id), result)


def _headline(result: JobResult) -> str:
    if result.failure:
        return result.failure
    fid = result.metrics.get("eval/fid")
    return f"FID {fid:.2f}" if fid is not None else ""
