"""What runs inside a launched job: one RunSpec, start (or resume) to finish, tracked in MLflow.

The submitted callable and its arguments are small, picklable and stateless: everything a
requeued or re-run job needs (its MLflow run, its checkpoints) it finds again from the config
hash, never from state captured at submission time.

A job with several tasks is one run trained with data parallelism: each task is a rank of
torch.distributed, and rank 0 alone talks to MLflow and writes the run's files.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import submitit
import torch
from mlflow import MlflowClient

from experiments.recipes.run import run_recipe
from experiments.training import preemption
from experiments.training.distributed import process_group
from experiments.training.tracker import NullTracker, Tracker
from repro.config.paths import localize_runs
from repro.config.schema import RunSpec
from repro.launch.failures import clip, failure_reason, headline, is_permanent
from repro.launch.run_lock import RunLock
from repro.sharing.export import write_export
from repro.terminal import quiet_unless_interactive
from repro.tracking import tags
from repro.tracking.http_retries import server_gone_message, unanswered_request, use_patient_client
from repro.tracking.mlflow_runs import MlflowTracker, open_run
from repro.tracking.provenance import git_commit

log = logging.getLogger(__name__)

# A JobResult's status when another process was training the run already: nothing was done.
IN_PROGRESS = "IN_PROGRESS"


def threads_per_job(parallel: int) -> int:
    """This machine's cores split between the jobs that run at once, so that concurrent jobs
    do not each spin a thread per core."""
    return max(1, (os.cpu_count() or 1) // max(1, parallel))


@dataclass(frozen=True)
class JobContext:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    workdir: Path
    threads: int | None = None  # torch intra-op threads; None keeps torch's default

    @property
    def runs_dir(self) -> Path:
        return self.workdir / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.workdir / ".cache"


class StopRun(Exception):
    """Raised from inside a recipe (through a wrapped tracker) to end a run early on purpose,
    e.g. a sweep pruning a trial: the run ends KILLED with this message as its reason, not as a
    crash."""


@dataclass(frozen=True)
class JobResult:
    config_hash: str
    run_id: str | None  # None from ranks other than 0, which track nothing
    status: str  # "FINISHED", "FAILED", or IN_PROGRESS (another process trains the run)
    metrics: dict[str, float]
    failure: str | None


def execute(
    spec: RunSpec, ctx: JobContext, wrap_tracker: Callable[[MlflowTracker], Tracker] | None = None
) -> JobResult:
    """wrap_tracker: what the recipe logs through, given the run's own tracker (a sweep uses it
    to watch the held-out metric); the recipe gets the run's tracker itself when None."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_unless_interactive()
    use_patient_client()
    _export_ranks()
    threads = _torch_threads(ctx)
    if threads:
        torch.set_num_threads(threads)
    with process_group() as world:
        if world.rank == 0:
            return _execute_tracked(spec, ctx, wrap_tracker)
        return _execute_untracked(spec, ctx)


def _execute_tracked(
    spec: RunSpec, ctx: JobContext, wrap_tracker: Callable[[MlflowTracker], Tracker] | None
) -> JobResult:
    run_dir = ctx.runs_dir / spec.config_hash
    lock = RunLock(run_dir)
    # Taken before the MLflow run is reopened, so a second job touches neither it nor the files.
    if not lock.acquire():
        reason = f"in progress elsewhere ({lock.holder()} holds {lock.path}); not started again"
        log.warning("%s: %s", spec.run_name, reason)
        return JobResult(spec.config_hash, None, IN_PROGRESS, {}, reason)
    try:
        return _train_tracked(spec, ctx, wrap_tracker, run_dir)
    except Exception as error:
        # Retried again, the job would only wait out the client's retries once more.
        gone = server_gone_message(error)
        if gone is None:
            raise
        log.error("%s: %s", spec.run_name, gone)
        return JobResult(spec.config_hash, None, "FAILED", {}, gone)
    finally:
        lock.release()


def _train_tracked(
    spec: RunSpec, ctx: JobContext, wrap_tracker: Callable[[MlflowTracker], Tracker] | None, run_dir: Path
) -> JobResult:
    client = MlflowClient(ctx.tracking_uri)
    run_id = open_run(client, ctx.experiment_id, ctx.parent_run_id, spec, ctx.workdir)
    tracker = MlflowTracker(client, run_id)
    tracker.set_tags(_job_tags())
    config_file = run_dir / "config.json"
    try:
        # The export carries these facts as written here (one git commit for both).
        record = {"experiment": spec.experiment, "table": spec.table, "row": spec.row, "tier": spec.tier,
                  "seed": spec.seed, "sweep_point": dict(spec.sweep_point), "config_hash": spec.config_hash,
                  "git_commit": git_commit(), "config": asdict(spec.config)}
        config_file.write_text(json.dumps(record, indent=2))
        tracker.log_artifact(config_file)
        recipe_tracker = wrap_tracker(tracker) if wrap_tracker else tracker
        result = run_recipe(localize_runs(spec.config, ctx.runs_dir), run_dir, ctx.cache_dir, recipe_tracker,
                            progress=sys.stderr.isatty())
    except BaseException as error:
        # Record why and leave the checkpoints in place for the next attempt.
        stopped = isinstance(error, StopRun)
        # SystemExit: submitit's preemption handler requeued the job and is ending this attempt.
        interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
        reason = str(error) if stopped else failure_reason(error)
        if interrupted:
            reason = "interrupted (preempted, timed out or cancelled); resumes when requeued"
        status = "KILLED" if stopped or interrupted else "FAILED"
        if unanswered_request(error) is not None:
            raise  # the server is not there to record it; the run stays open for the resume
        _record_end(client, run_id, status, reason)
        if status == "FAILED" and is_permanent(error):
            # Ended here rather than raised: the launcher resubmits what raises, and this cannot pass.
            log.error("%s: %s", spec.run_name, headline(error))
            return JobResult(spec.config_hash, run_id, "FAILED", {}, headline(error))
        raise
    metrics_file = run_dir / "metrics.json"
    metrics_file.write_text(json.dumps(result.metrics, indent=2))
    tracker.log_artifact(metrics_file)
    status = "FINISHED"
    if result.failure is not None:
        tracker.set_tags({tags.FAILURE_REASON: result.failure})
        status = "FAILED"
    elif result.trained is not None:
        try:  # what the run trained, as it is in memory, shareable from MLflow (repro/sharing/export.py)
            exported = write_export(result.trained, spec.config, record, result.metrics, run_dir / "export",
                                    copy_base_mllm=False)
            tracker.log_artifacts(exported, tags.MODEL_ARTIFACT)
        except Exception as error:
            _record_end(client, run_id, "FAILED", clip(f"exporting the model: {failure_reason(error)}"))
            raise
    client.set_terminated(run_id, status=status)
    return JobResult(spec.config_hash, run_id, status, result.metrics, result.failure)


def _record_end(client: MlflowClient, run_id: str, status: str, reason: str) -> None:
    """The run's end and why, where the store still takes it: one on a full disk does not, and
    the job's own error (not the store's) is what the launcher must see."""
    try:
        client.set_tag(run_id, tags.FAILURE_REASON, reason)
        client.set_terminated(run_id, status=status)
    except Exception as store_error:
        log.error("could not record the run's end in MLflow (%s): %s", headline(store_error),
                  reason.split("\n")[0])


def _execute_untracked(spec: RunSpec, ctx: JobContext) -> JobResult:
    """A rank other than 0: it trains and evaluates its share; what it would log, rank 0 logs."""
    run_dir = ctx.runs_dir / spec.config_hash
    result = run_recipe(localize_runs(spec.config, ctx.runs_dir), run_dir, ctx.cache_dir, NullTracker(),
                        progress=False)
    status = "FINISHED" if result.failure is None else "FAILED"
    return JobResult(spec.config_hash, None, status, result.metrics, result.failure)


class RunJob(submitit.helpers.Checkpointable):
    """What the launcher submits: execute(spec, ctx), requeued on preemption or timeout.

    It holds no state, so Checkpointable's own checkpoint() (resubmit self with the same
    arguments) is exactly right: the requeued job finds the run's newest checkpoint and its
    MLflow run again from the config hash. The checkpoint written for the warning signal comes
    from the training loop, at its next step boundary (experiments.training.preemption).
    """

    def __call__(self, spec: RunSpec, ctx: JobContext) -> JobResult:
        defer_preemption()
        with interrupt_at_step_boundary():
            return execute(spec, ctx)


def defer_preemption() -> None:
    """For a Checkpointable job: holds submitit's requeue signal back until the training loop's
    next step boundary, so the job writes a checkpoint before it is requeued."""
    preemption.defer(signal.Signals[f"SIG{submitit.JobEnvironment.USR_SIG}"])


@contextmanager
def interrupt_at_step_boundary() -> Iterator[None]:
    """SIGINT (the launcher stopping its jobs, a terminal's Ctrl-C) as a KeyboardInterrupt, held
    back while training until the next step boundary, where a checkpoint is written first; the
    run then ends KILLED. The job may have started with SIGINT blocked (repro.launch.signals) or
    ignored (a launcher started in the background by a script), so the handler is installed
    here whatever it inherited. The signal comes once from the launcher and once more from a
    terminal: the stop happens once, and a second one must not cut short the run's recording."""
    stopping = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    preemption.defer(signal.SIGINT)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    try:
        yield
    finally:
        # The debug executor runs jobs inside the launcher, whose own Ctrl-C must work again.
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)


def _export_ranks() -> None:
    """A job of several tasks: torch.distributed's env:// variables, from submitit's view of
    the job (SLURM's or the local executor's). Each task keeps sight of all the node's GPUs
    (process_group picks LOCAL_RANK's); a preset MASTER_PORT is kept."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # called directly, not through submitit
        return
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


def _torch_threads(ctx: JobContext) -> int | None:
    """The cores SLURM gave this task, where it says (the launcher's split is of another
    machine's cores); else the launcher's share for the job, split between its local ranks."""
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if ctx.threads is None:
        return None
    return max(1, ctx.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _job_tags() -> dict[str, str]:
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # called directly, not through submitit
        return {}
    return {tags.JOB_ID: env.job_id, tags.JOB_EXECUTOR: env.cluster}
