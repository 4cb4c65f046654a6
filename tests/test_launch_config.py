"""[launch] layers like the config sections, is checked like them, stays out of the run's id, and
the sbatch script a paper-scale run submits asks for exactly what the config says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from repro.config import ConfigError, load_matrix
from repro.config.launch import LaunchConfig
from repro.launch.executor import _wait, slurm_arrays
from repro.launch.slurm_params import sbatch_script
from tests.support.full_tier import EXPERIMENTS, fake_full_env


def full(tmp_path: Path, **kwargs):
    return load_matrix(EXPERIMENTS, "full", env=fake_full_env(tmp_path / "world"), **kwargs)


def tiny(tmp_path: Path, **kwargs):
    return load_matrix(EXPERIMENTS, "tiny", tiny_assets=tmp_path / "assets", env={}, **kwargs)


def test_tiers_and_overrides_layer_the_launch_settings(tmp_path):
    assert all(run.launch == LaunchConfig() for run in tiny(tmp_path).runs)
    paper = full(tmp_path).runs[0].launch
    assert (paper.executor, paper.nodes, paper.gpus_per_node, paper.world_size) == ("slurm", 4, 8, 32)
    changed = full(tmp_path / "again", overrides=[
        "launch.partition=a100", "launch.sbatch={ exclusive = \"\" }", "launch.setup=[\"module load cuda\"]",
    ]).runs[0].launch
    assert (changed.partition, changed.sbatch, changed.setup, changed.nodes) == (
        "a100", {"exclusive": ""}, ("module load cuda",), 4)


def test_launch_settings_do_not_change_a_runs_id(tmp_path):
    local = {run.config_hash for run in tiny(tmp_path).runs}
    on_slurm = tiny(tmp_path, overrides=["launch.executor=slurm", "launch.nodes=2"])
    slurm = {run.config_hash for run in on_slurm.runs}
    assert local == slurm


@pytest.mark.parametrize("override, message", [
    ("launch.executor=lsf", "launch.executor: unknown value 'lsf'"),
    ("launch.gpus_per_nod=8", "did you mean 'gpus_per_node'"),
    ("launch.nodes=0", "launch.nodes: must be >= 1"),
    ("launch.nodes=2", "launch.nodes: 2 nodes need executor = \"slurm\""),
    ("launch.setup=\"module load cuda\"", "launch.setup: expected a list"),
    ("launch.cpu_tasks_per_node=3", "train.batch_size: 16 does not split evenly over 3 ranks"),
])
def test_bad_launch_settings_name_their_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        tiny(tmp_path, overrides=[override])


def test_paper_scale_sbatch_asks_for_what_the_config_says(tmp_path):
    matrix = full(tmp_path, only=["aligner-12", "aligner-24"],
                  overrides=["launch.partition=a100", "launch.account=kosmos", "launch.qos=high",
                             "launch.constraint=a100-80g", "launch.array_parallelism=1",
                             "launch.sbatch={ mail-type = \"END\" }",
                             "launch.setup=[\"module load cuda/12.1\"]"])
    (group,) = slurm_arrays(list(matrix.runs))
    assert len(group) == 2
    script = sbatch_script(group[0].launch, tmp_path / "jobs" / "%j", array_size=len(group))
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, re.MULTILINE))
    assert flags["nodes"] == "4"
    assert flags["gpus-per-node"] == "8"
    assert flags["ntasks-per-node"] == "8"  # one rank per GPU: 32 ranks in all
    assert flags["cpus-per-task"] == "10"
    assert flags["mem"] == "480GB"
    assert flags["time"] == "2880"
    assert flags["partition"] == "a100"
    assert flags["account"] == "kosmos"
    assert flags["qos"] == "high"
    assert flags["constraint"] == "a100-80g"
    assert flags["mail-type"] == "END"
    assert flags["array"] == "0-1%1"
    assert flags["signal"] == "USR2@120"  # the warning the job checkpoints on
    assert "module load cuda/12.1" in script
    assert re.search(r"^srun .*submitit\.core\._submit", script, re.MULTILINE)


class _StoppedJob:
    """A local job whose task ended at a step boundary on SIGINT, as submitit reports it."""

    job_id = "1"
    paths = type("Paths", (), {"stderr": Path("job.err")})()

    def done(self) -> bool:
        return True

    def results(self) -> list:
        raise RuntimeError("Job (task=0) failed\nTraceback (most recent call last):\n"
                           "  ...\nKeyboardInterrupt")


def test_a_local_job_stopped_by_sigint_stops_the_launcher_and_is_never_retried(tmp_path):
    """A terminal's Ctrl-C reaches the jobs as well as the launcher; a job that finishes its stop
    first must not read as a failed attempt to resubmit."""
    spec = next(run for run in tiny(tmp_path).runs if run.launch.executor == "local")
    assert spec.launch.max_retries >= 1
    submitted = []
    job = _StoppedJob()
    running = {job: (spec, 1)}
    with pytest.raises(KeyboardInterrupt):
        _wait([], running, lambda s: submitted.append(s), parallel=1)
    assert submitted == [] and job in running  # still in flight for the launcher's stop
