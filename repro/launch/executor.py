"""Hands RunSpecs to a submitit executor and collects what comes back.

`local` runs each job in its own subprocess on this machine (the default), `debug` runs them
in this process one after another (for tests and pdb), `slurm` submits them to a cluster as one
job array per distinct launch setting. Only the RunSpec and a small JobContext travel to the
job; models are built inside it. A job that fails is resubmitted up to `launch.max_retries`
times; a preempted or timed-out one is requeued by submitit itself (see repro.launch.run_job.RunJob). A job
that ended its run FAILED for a reason another attempt cannot change returns rather than raises
(repro.launch.failures), and a full disk is not retried either.

Interrupted (Ctrl-C, or SIGTERM through repro.launch.signals), the launcher stops the local jobs it
started, waits for them to end and raises `Interrupted` naming every run still in flight;
SLURM jobs are the cluster's, and stay until `repro cancel`.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil
import submitit

from repro.config.launch import EXECUTORS, LaunchConfig
from repro.config.schema import RunSpec
from repro.launch.run_job import JobContext, JobResult, RunJob
from repro.launch.signals import sigint_blocked
from repro.launch.slurm_params import sbatch_parameters

log = logging.getLogger(__name__)

_POLL_SECONDS = 1.0
# How long a cancelled local job has to record its end before it is killed outright.
_CANCEL_GRACE_SECONDS = 30.0
# A job's exception comes back as text: this is how a full disk reads (errno 28, ENOSPC).
_DISK_FULL = "[Errno 28]"
# ... and how a local job stopped by SIGINT at a step boundary ends (repro.launch.run_job).
_INTERRUPTED = "\nKeyboardInterrupt"


class Interrupted(KeyboardInterrupt):
    """The launcher was interrupted with these runs in flight (local ones now stopped)."""

    def __init__(self, cause: KeyboardInterrupt, in_flight: list[RunSpec]) -> None:
        super().__init__()
        self.cause = cause
        self.in_flight = in_flight


@dataclass(frozen=True)
class LaunchOutcome:
    spec: RunSpec
    job_id: str
    result: JobResult | None  # None when the job raised
    error: str | None = None  # the job's exception, and where its full log lives
    attempts: int = 1


def make_executor(
    kind: str, folder: Path, timeout_min: int = 24 * 60, launch: LaunchConfig | None = None
) -> submitit.Executor:
    """launch: the ranks and SLURM resources a job asks for (one CPU task when None)."""
    launch = launch or LaunchConfig(executor=kind, timeout_min=timeout_min)  # type: ignore[arg-type]
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        # submitit's local default is 5 minutes, after which it signals the job to stop.
        executor.update_parameters(timeout_min=timeout_min, tasks_per_node=launch.tasks_per_node)
        return executor
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    if kind == "slurm":
        # max_num_timeout: how often a job that keeps hitting its time limit is requeued.
        slurm = submitit.SlurmExecutor(folder=folder, max_num_timeout=launch.max_retries)
        slurm.update_parameters(**{**sbatch_parameters(launch), "time": timeout_min})
        return slurm
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")


Record = Callable[[RunSpec, submitit.Job], None]


def launch(
    specs: list[RunSpec], ctx: JobContext, parallel: int, *,
    record: Record = lambda spec, job: None, wait: bool = True,
) -> list[LaunchOutcome]:
    """Returns one outcome per spec, in order of completion; a failing job does not stop the
    others. SLURM runs go out at once (the cluster queues them); local ones `parallel` at a
    time. record(spec, job) is called for every submission, retries included.
    wait=False returns right after the SLURM submissions, with no outcomes."""
    folder = ctx.workdir / "jobs" / "%j"
    executors: dict[str, submitit.Executor] = {}

    def executor_for(spec: RunSpec) -> submitit.Executor:
        key = json.dumps(asdict(spec.launch), sort_keys=True)
        if key not in executors:
            executors[key] = make_executor(spec.launch.executor, folder, spec.launch.timeout_min, spec.launch)
        return executors[key]

    def submit(spec: RunSpec) -> submitit.Job:
        with sigint_blocked():  # the job's processes start with it blocked (repro.launch.signals)
            job = executor_for(spec).submit(RunJob(), spec, ctx)
        log.info("submitted %s (%s) as job %s", spec.run_name, spec.config_hash, job.job_id)
        record(spec, job)
        return job

    running: dict[submitit.Job, tuple[RunSpec, int]] = {}  # job -> (spec, attempt)
    for group in slurm_arrays([spec for spec in specs if spec.launch.executor == "slurm"]):
        executor = executor_for(group[0])
        with executor.batch():  # one sbatch --array for the whole group
            jobs = [executor.submit(RunJob(), spec, ctx) for spec in group]
        for spec, job in zip(group, jobs):
            log.info("submitted %s (%s) as array task %s", spec.run_name, spec.config_hash, job.job_id)
            record(spec, job)
            running[job] = (spec, 1)
    if not wait:
        return []
    try:
        return _wait(specs, running, submit, parallel)
    except KeyboardInterrupt as interrupt:
        _stop_local(list(running))
        raise Interrupted(interrupt, [spec for spec, _ in running.values()]) from None


def _wait(
    specs: list[RunSpec], running: dict[submitit.Job, tuple[RunSpec, int]],
    submit: Callable[[RunSpec], submitit.Job], parallel: int,
) -> list[LaunchOutcome]:
    pending = [(spec, 1) for spec in specs if spec.launch.executor != "slurm"]
    outcomes: list[LaunchOutcome] = []
    while pending or running:
        local = sum(spec.launch.executor != "slurm" for spec, _ in running.values())
        while pending and local < parallel:
            spec, attempt = pending.pop(0)
            running[submit(spec)] = (spec, attempt)
            local += 1
        finished = [job for job in running if job.done()]
        for job in finished:
            spec, attempt = running[job]
            outcome = _collect(job, spec)
            if spec.launch.executor != "slurm" and _INTERRUPTED in (outcome.error or ""):
                # A terminal's Ctrl-C reaches the jobs too, and one may finish its stop before
                # the launcher acts on its own: the stop is the launcher's, never a retry.
                raise KeyboardInterrupt
            del running[job]
            if (outcome.result is None and attempt <= spec.launch.max_retries
                    and _DISK_FULL not in (outcome.error or "")):  # set whenever result is None
                log.warning("%s: attempt %d of %d failed; resubmitting", spec.run_name, attempt,
                            spec.launch.max_retries + 1)
                if spec.launch.executor == "slurm":
                    running[submit(spec)] = (spec, attempt + 1)
                else:
                    pending.insert(0, (spec, attempt + 1))
                continue
            outcomes.append(replace(outcome, attempts=attempt))
        if not finished:
            time.sleep(_POLL_SECONDS)
    return outcomes


def _stop_local(jobs: list[submitit.Job]) -> None:
    """SIGINT to each local job's tasks, which stop at their next step boundary with a checkpoint
    and record their runs as interrupted; a kill for any still alive after the grace period.
    Not through job.cancel(): its SIGINT goes to submitit's controller, which kills the tasks
    a second later, before they can save."""
    local = [job for job in jobs if isinstance(job, submitit.LocalJob)]
    for job in local:
        log.warning("stopping job %s", job.job_id)
        _interrupt_tasks(_controller_pid(job))
    deadline = time.monotonic() + _CANCEL_GRACE_SECONDS
    while any(not job.done() for job in local) and time.monotonic() < deadline:
        time.sleep(0.2)
    for job in local:
        if not job.done():
            log.error("job %s did not stop within %.0f s; killing it", job.job_id, _CANCEL_GRACE_SECONDS)
            _kill_tree(_controller_pid(job))  # submitit's LocalJob has no public kill


def _controller_pid(job: submitit.LocalJob) -> int:
    """submitit's LocalJob has no public handle on its tasks: its controller process is the way in."""
    if job._process is None:
        raise RuntimeError(f"local job {job.job_id} has no process: it was never started here")
    return job._process.pid


def _interrupt_tasks(controller_pid: int) -> None:
    """SIGINT to the controller's children, the job's tasks (one per rank); not to their own
    children, the data loader workers, which end with their task."""
    try:
        tasks = psutil.Process(controller_pid).children()
    except psutil.NoSuchProcess:
        return
    for task in tasks:
        try:
            task.send_signal(signal.SIGINT)
        except psutil.NoSuchProcess:
            pass


def _kill_tree(pid: int) -> None:
    """SIGKILL to a job's controller and every process under it, found before any dies: killing
    the controller alone would leave its tasks running as orphans."""
    try:
        controller = psutil.Process(pid)
        processes = [controller, *controller.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def dependency_waves(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """`specs` in launch order: each wave only starts from runs of earlier waves (or from runs
    outside `specs`, which must have finished already)."""
    hashes = {spec.config_hash for spec in specs}
    waves: list[list[RunSpec]] = []
    placed: set[str] = set()
    left = list(specs)
    while left:
        wave = [s for s in left if all(h in placed or h not in hashes for h in s.after)]
        if not wave:  # a loop; the config loader refuses those, so this is a bug
            raise ValueError(f"runs wait on each other: {[s.config_hash for s in left]}")
        waves.append(wave)
        placed |= {s.config_hash for s in wave}
        left = [s for s in left if s.config_hash not in placed]
    return waves


def slurm_arrays(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Runs that ask for the same resources go out as one array."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(json.dumps(asdict(spec.launch), sort_keys=True), []).append(spec)
    return list(groups.values())


def _collect(job: submitit.Job, spec: RunSpec) -> LaunchOutcome:
    try:
        # Every task's result, so a rank that failed fails the job; rank 0's is the run's.
        result = job.results()[0]
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
