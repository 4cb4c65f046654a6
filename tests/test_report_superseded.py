"""Which runs a table counts: of each experiment, seed and sweep point, only the config launched
last (an edited config's runs replace the old ones instead of pooling with them), and never an
Optuna trial's run, whose sampled params are not the row's."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric, Param

from repro.report.collect import collect_runs
from repro.sweep import tags as sweep_tags
from repro.tracking import tags
from tests.support.mlflow_store import FakeRunStore

FID = tags.METRIC_FID


class _Store(FakeRunStore):
    def log(self, seed: int, config_hash: str, fid: float, *, status: str = "FINISHED",
            point: dict[str, str] | None = None, extra_tags: dict[str, str] | None = None) -> None:
        run_id = self.create_run({
            tags.KIND: "run", tags.TABLE: "table2", tags.ROW: "E2E", tags.EXPERIMENT: "e2e",
            tags.TIER: "mini", tags.SEED: str(seed), tags.CONFIG_HASH: config_hash, **(extra_tags or {}),
        })
        params = [Param(f"{tags.SWEEP_POINT}{key}", value) for key, value in (point or {}).items()]
        self.client.log_batch(run_id, metrics=[Metric(FID, fid, 0, 0)], params=params)
        self.client.set_terminated(run_id, status)


def _fids(store: _Store) -> dict[tuple[int, str], float]:
    runs = collect_runs(store.uri, "kosmos-g", {"e2e"}, "mini", [FID])
    return {(run.seed, run.config_hash): run[FID] for _, run in runs.iterrows()}


def test_an_edited_configs_runs_replace_the_old_ones_seed_by_seed(tmp_path: Path) -> None:
    store = _Store(tmp_path, "kosmos-g")
    for seed in (0, 1):
        store.log(seed, f"150-steps-{seed}", 40.0)
    for seed in (0, 1, 2):
        store.log(seed, f"174-steps-{seed}", 30.0 + seed)
    assert _fids(store) == {(0, "174-steps-0"): 30.0, (1, "174-steps-1"): 31.0, (2, "174-steps-2"): 32.0}

    store.log(1, "150-steps-1", 41.0)  # the edit undone for seed 1, and run again
    assert _fids(store)[(1, "150-steps-1")] == 41.0 and len(_fids(store)) == 3


def test_sweep_points_of_one_seed_are_runs_of_their_own(tmp_path: Path) -> None:
    store = _Store(tmp_path, "kosmos-g")
    store.log(0, "lr-small", 20.0, point={"train.optim.lr": "0.0001"})
    store.log(0, "lr-large", 25.0, point={"train.optim.lr": "0.001"})

    assert _fids(store) == {(0, "lr-small"): 20.0, (0, "lr-large"): 25.0}


def test_a_sweep_trials_run_is_not_a_tables(tmp_path: Path) -> None:
    store = _Store(tmp_path, "kosmos-g")
    store.log(0, "plan", 30.0)
    store.log(0, "trial-3", 10.0, extra_tags={sweep_tags.TRIAL: "3"})

    assert _fids(store) == {(0, "plan"): 30.0}
