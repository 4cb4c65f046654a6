"""Against a real SLURM (scripts/slurm-local.sh starts one on this machine): a Table 2 row of each
recipe on the tiny tier, as one job array, gives the same table as the in-process executor,
`repro status` and the run tags name each array task, a 2-task (2-rank gloo) job trains like one
process, and a preempted 2-task job checkpoints on SLURM's warning signal, is requeued, and
resumes into the same MLflow run without repeating steps.

Run alone with `pytest -m slurm`."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from repro.tracking import tags
from tests.support.slurm import SLURM_ONLY, preempt, wait_for
from tests.support.workdirs import (
    ONE_THREAD,
    QUICK_LOGS_AND_FID,
    SHORT_TRAINING,
    child_runs,
    new_workdir,
    repro,
)

pytestmark = SLURM_ONLY

def table_rows(workdir: Path) -> dict[str, dict[str, str]]:
    with open(workdir / "reports" / "table2.csv") as handle:
        return {row["row"]: row for row in csv.DictReader(handle)}


# One Table 2 row of each recipe: the executor runs every recipe's job the same way, and each row
# more would be trained twice (on SLURM and in process) for no new path.
ONE_ROW_PER_RECIPE = ["--only", "sd-v1-5", "--only", "e2e-aligner", "--only", "aligner-12"]


def test_table2_as_one_job_array_reports_like_the_local_executor(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # The plan's options, which `status` takes too; --threads is for `run` alone.
    plan = ["--tier", "tiny", "--table", "table2", *ONE_ROW_PER_RECIPE, "--seeds", "0", *SHORT_TRAINING,
            *QUICK_LOGS_AND_FID]
    local, cluster = new_workdir(tmp_path / "local"), new_workdir(tmp_path / "slurm")
    assert repro(local, "run", *plan, *ONE_THREAD, "--executor", "debug") == 0
    assert repro(cluster, "run", *plan, *ONE_THREAD, "--executor", "slurm", "--set", "launch.cpus_per_task=1",
                 "--set", "launch.array_parallelism=2") == 0

    _, runs = child_runs(cluster)
    job_ids = {run.data.tags[tags.JOB_ID] for run in runs}
    assert {run.data.tags[tags.JOB_EXECUTOR] for run in runs} == {"slurm"}
    assert len(job_ids) == 3 and len({job_id.split("_")[0] for job_id in job_ids}) == 1  # one array

    ours, theirs = table_rows(cluster), table_rows(local)
    # Every row is listed, those not run with n = 0: the six ablations and the released checkpoint.
    assert ours.keys() == theirs.keys() and len(ours) == 7
    assert sum(values["n"] == "1" for values in ours.values()) == 3
    for row, values in ours.items():
        assert (values["status"], values["n"]) == (theirs[row]["status"], theirs[row]["n"]), row
        if values["mean"]:
            assert float(values["mean"]) == pytest.approx(float(theirs[row]["mean"]), rel=1e-3), row

    capsys.readouterr()
    assert repro(cluster, "status", *plan) == 0
    shown = capsys.readouterr().out
    for job_id in job_ids:
        assert job_id in shown
    # sacct may still say RUNNING for a task whose result is in while its job step winds down.
    assert shown.count("COMPLETED") + shown.count("RUNNING") + shown.count("COMPLETING") == 3
    assert shown.count("FINISHED") + shown.count("FAILED") == 3


def test_a_two_task_job_trains_like_one_process_on_the_same_global_batch(tmp_path, monkeypatch):
    """Two SLURM tasks = two gloo ranks, each with half of every global batch: the logged
    losses are the single process's. L_rec is left out: its 77 / l_s scale is per micro-batch."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plan = ["--tier", "tiny", "--only", "aligner-12", "--seeds", "0", *SHORT_TRAINING, *QUICK_LOGS_AND_FID,
            "--set", "train.rec_weight=0.0", "--set", "fid.enabled=false"]
    single, cluster = new_workdir(tmp_path / "single"), new_workdir(tmp_path / "cluster")
    assert repro(single, "run", *plan, *ONE_THREAD, "--executor", "debug", "--no-report") == 0
    assert repro(cluster, "run", *plan, *ONE_THREAD, "--executor", "slurm", "--no-report",
                 "--set", "launch.cpu_tasks_per_node=2", "--set", "launch.cpus_per_task=1") == 0

    def losses(workdir: Path) -> tuple[list[float], float]:
        client, (run,) = child_runs(workdir)
        history = client.get_metric_history(run.info.run_id, "train/loss")
        return [m.value for m in sorted(history, key=lambda m: m.step)], run.data.params["train/world_size"]

    (one, one_world), (two, two_world) = losses(single), losses(cluster)
    assert (one_world, two_world) == ("1", "2") and len(one) == len(two) == 6
    assert two == pytest.approx(one, rel=1e-4)


def test_preempted_job_checkpoints_and_resumes_into_the_same_run(tmp_path, monkeypatch):
    """Two ranks (two tasks, gloo) both get the signal; they stop at the same step, rank 0
    requeues the job, and the run stays one MLflow run logged by rank 0 alone. A one-task job's
    requeue is test_slurm_sweep's preempted trial; its resume into the same run, test_pipeline's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = new_workdir(tmp_path / "preempt")
    plan = ["--tier", "tiny", "--only", "aligner-12", "--seeds", "1", *QUICK_LOGS_AND_FID,
            "--set", "train.steps=100", "--set", "train.checkpoint_every=25",
            "--set", "launch.cpu_tasks_per_node=2", "--set", "launch.cpus_per_task=1"]
    assert repro(workdir, "run", *plan, *ONE_THREAD, "--executor", "slurm", "--no-wait", "--no-report") == 0
    checkpoints = workdir / "runs"
    wait_for(lambda: list(checkpoints.glob("*/checkpoints/step-00000025/model.safetensors")), 240)
    client, (run,) = child_runs(workdir)
    preempt(workdir, run.data.tags[tags.JOB_ID])
    wait_for(lambda: client.get_run(run.info.run_id).info.status == "FINISHED", 300)

    _, (after,) = child_runs(workdir)
    assert after.info.run_id == run.info.run_id
    assert after.data.params["train/world_size"] == "2"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(set(steps)) == list(range(2, 101, 2))
    # The newest periodic checkpoint was at step 25 or later; without the one written for the
    # signal, the steps from there to the signal would have been trained (and logged) twice.
    assert len(steps) == len(set(steps)), "a step was trained twice"
