"""`repro run` of one tiny run as a job of two CPU ranks (the local executor's tasks, gloo): one
MLflow run, logged by rank 0 alone, with the world size and gradient accumulation it trained
with, and one FID made by both ranks and scored once."""

from __future__ import annotations

import pickle

import pytest

from repro.tracking import tags
from tests.support.workdirs import FAST, child_runs, new_workdir, repro

pytestmark = pytest.mark.slow


def test_a_two_rank_job_is_one_run_logged_once(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = new_workdir(tmp_path / "work")
    # E2E w/ AlignerNet trains M without N: DDP has to cope with parameters the loss never uses.
    assert repro(workdir, "run", "--tier", "tiny", "--only", "e2e-aligner", "--seeds", "0", "--executor",
                 "local", "--set", "launch.cpu_tasks_per_node=2", "--set", "train.micro_batch_size=4",
                 # Every experiment's batch has to split, stage 3's (10 captions) included.
                 "--set", "train.batch_size=16", "--no-report",
                 *FAST) == 0

    client, runs = child_runs(workdir)
    assert len(runs) == 1
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.params["train/world_size"] == "2"
    assert run.data.params["train/micro_batch_size"] == "4"  # 16 captions: 2 ranks x 2 micro-batches of 4
    assert run.data.params["train/grad_accumulation"] == "2"
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == list(range(2, 13, 2))  # each step once: rank 1 logged nothing
    assert len(client.get_metric_history(run.info.run_id, "eval/fid")) == 1

    (job,) = (workdir / "jobs").glob("[0-9]*")
    for rank in (0, 1):
        outcome, result = pickle.loads((job / f"{job.name}_{rank}_result.pkl").read_bytes())
        assert outcome == "success", result
        assert result.run_id == (run.info.run_id if rank == 0 else None)
    checkpoints = workdir / "runs" / run.data.tags[tags.CONFIG_HASH] / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000008", "step-00000012"]
