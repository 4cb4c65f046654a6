"""Runs launched together log the same dataset inputs at the same moment (every Table 2 row reads
the same captions). MLflow's database store looks a dataset up before inserting it, so two of them
can both insert it; each run must still end up listing it, and the store must hold it once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from mlflow import MlflowClient

from experiments.training.tracker import DataInput
from repro.tracking.mlflow_runs import MlflowTracker, ensure_experiment

RUNS = 6


def _log_after_all_arrive(uri: str, run_id: str, source: str, barrier, errors) -> None:
    client = MlflowClient(uri)
    inputs = [DataInput("data.train", "training", source, 100),
              DataInput("data.heldout", "heldout", source, 8)]
    barrier.wait()
    try:
        MlflowTracker(client, run_id).log_inputs(inputs)
    except Exception as error:  # reported to the test, which names it
        errors.put(f"{type(error).__name__}: {error}"[:300])


def test_runs_logging_the_same_dataset_at_once_all_list_it(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = ensure_experiment(client, "kosmos-g", tmp_path / "mlartifacts")
    run_ids = [client.create_run(experiment).info.run_id for _ in range(RUNS)]
    source = tmp_path / "captions.txt"
    source.write_text("a red dog\n")

    # fork: the workers need nothing re-imported, only to reach the store together
    context = multiprocessing.get_context("fork")
    barrier, errors = context.Barrier(RUNS), context.Queue()
    workers = [context.Process(target=_log_after_all_arrive, args=(uri, run_id, str(source), barrier, errors))
               for run_id in run_ids]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    found = [errors.get() for _ in range(errors.qsize())]
    assert not found, found
    assert all(worker.exitcode == 0 for worker in workers)
    for run_id in run_ids:
        names = sorted(d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs)
        assert names == ["data.heldout", "data.train"], run_id
