"""Runs that start from other runs go out after them: in a later wave, or as SLURM jobs that
depend on theirs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from repro.config import load_matrix
from repro.launch.campaign import _after_jobs
from repro.launch.executor import dependency_waves
from tests.support.full_tier import EXPERIMENTS


@pytest.fixture(scope="module")
def table1_runs(tmp_path_factory):
    assets = tmp_path_factory.mktemp("assets")
    return list(load_matrix(EXPERIMENTS, "tiny", table="table1", tiny_assets=assets, env={}).runs)


def test_stage3_runs_come_in_the_wave_after_their_stage2_runs(table1_runs):
    waves = dependency_waves(table1_runs)
    assert len(waves) == 2
    assert {r.experiment for r in waves[1]} == {"kosmos-g"}
    assert sorted(r.experiment for r in waves[0]) == (
        ["aligner-12"] * 2 + ["kosmos-g-released", "real-images"] + ["sd-v1-5"] * 2)


def test_a_prerequisite_outside_the_batch_does_not_hold_a_run_back(table1_runs):
    stage3 = [r for r in table1_runs if r.experiment == "kosmos-g"]  # stage 2 finished earlier
    assert dependency_waves(stage3) == [stage3]


def test_waiting_runs_are_refused_when_they_wait_on_each_other(table1_runs):
    a, b = table1_runs[:2]
    looped = [replace(a, after=(b.config_hash,)), replace(b, after=(a.config_hash,))]
    with pytest.raises(ValueError, match="wait on each other"):
        dependency_waves(looped)


def test_a_slurm_run_waits_for_its_prerequisites_jobs(table1_runs):
    run = next(r for r in table1_runs if r.experiment == "kosmos-g")
    run = replace(run, launch=replace(run.launch, executor="slurm", sbatch={"exclusive": ""}))
    waiting = _after_jobs(run, ["123_0", "124"])
    assert waiting.launch.sbatch == {"exclusive": "", "dependency": "afterok:123_0:124"}
    assert waiting.config_hash == run.config_hash and run.launch.sbatch == {"exclusive": ""}
