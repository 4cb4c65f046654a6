"""The mini tier: every Table 1 and 2 row on the mini world (the released rows left out, the
untrained floor added), its `@mini/` paths re-rooted in the asset folder, shipped weights of
another world version refused, and one run going end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.mini.assets import SHIPPED_WEIGHTS, check_shipped
from repro.config import ConfigError, load_matrix, load_sweep
from repro.config.paths import MINI_PREFIX
from repro.sweep.runs import TrialRuns
from repro.tracking import tags
from tests.support.full_tier import EXPERIMENTS
from tests.support.workdirs import ONE_THREAD, child_runs, new_workdir, repro

ROWS = {"sd-v1-5", "e2e-linear", "e2e-aligner", "decoder-12", "aligner-12", "aligner-24", "aligner-untrained",
        "kosmos-g", "real-images"}


def test_mini_tier_plans_every_row_but_the_released_ones_into_the_asset_folder(tmp_path: Path) -> None:
    matrix = load_matrix(EXPERIMENTS, "mini", assets={MINI_PREFIX: tmp_path}, env={})
    assert {run.experiment for run in matrix.runs} == ROWS
    rows = {row.name for table in matrix.tables for row in table.reproduced}
    assert "Untrained AlignerNet (floor)" in rows and not any("released" in row for row in rows)
    aligner = next(run for run in matrix.runs if run.experiment == "aligner-12")
    assert aligner.config.models.mllm == str(tmp_path / "kosmos2")
    classifier = tmp_path / "classifier" / "attribute_classifier.safetensors"
    assert aligner.config.fid.attribute_classifier == str(classifier)
    # The id keeps `@mini/` symbolic: another asset folder, the same runs.
    elsewhere = load_matrix(EXPERIMENTS, "mini", assets={MINI_PREFIX: tmp_path / "b"}, env={})
    assert [run.config_hash for run in elsewhere.runs] == [run.config_hash for run in matrix.runs]
    with pytest.raises(ConfigError, match="'aligner-12-released' runs only in tiers tiny, full, not 'mini'"):
        load_matrix(EXPERIMENTS, "mini", only="aligner-12-released", assets={MINI_PREFIX: tmp_path}, env={})


def test_only_the_mini_tiers_aligning_rows_empty_captions(tmp_path: Path) -> None:
    """Stage 2 learns guidance's null on the mini world (docs/fidelity.md); the rows that do not
    align keep the default, and with it the run ids they had before."""
    mini = load_matrix(EXPERIMENTS, "mini", seeds=[0], assets={MINI_PREFIX: tmp_path}, env={})
    emptying = {run.experiment for run in mini.runs if run.config.train.empty_caption_prob > 0}
    assert emptying == {run.experiment for run in mini.runs if run.config.recipe == "align"}
    assert {"aligner-12", "aligner-24", "decoder-12", "aligner-untrained"} <= emptying
    assert {run.config.train.empty_caption_prob for run in mini.runs if run.experiment in emptying} == {0.1}
    tiny = load_matrix(EXPERIMENTS, "tiny", seeds=[0], tiny_assets=tmp_path, env={})
    assert all(run.config.train.empty_caption_prob == 0 for run in tiny.runs)


def test_the_declared_sweep_runs_on_the_mini_tier(tmp_path: Path) -> None:
    runs = TrialRuns(EXPERIMENTS, load_sweep(EXPERIMENTS, "align-lr"), "mini", (), {MINI_PREFIX: tmp_path})
    runs.check_space()
    base = runs.base().config
    assert base.models.mllm == str(tmp_path / "kosmos2") and base.train.eval_every < base.train.steps


def test_tiers_names_known_tiers(tmp_path: Path) -> None:
    config = tmp_path / "experiments.toml"
    config.write_text(EXPERIMENTS.read_text().replace('tiers = ["mini"]', 'tiers = ["minni"]'))
    unknown = r"'aligner-untrained': tiers: unknown tier 'minni' \(did you mean 'mini'\?\)"
    with pytest.raises(ConfigError, match=unknown):
        load_matrix(config, "mini", env={})


def _copy_weights(out: Path) -> Path:
    shutil.copytree(SHIPPED_WEIGHTS, out, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in SHIPPED_WEIGHTS.rglob("*.safetensors"):
        (out / weights.relative_to(SHIPPED_WEIGHTS)).symlink_to(weights)
    return out


@pytest.mark.skipif(not (SHIPPED_WEIGHTS / "sd").is_dir(), reason="the mini SD is not trained yet")
def test_weights_of_another_world_version_are_refused_naming_the_retraining_command(tmp_path: Path) -> None:
    weights = _copy_weights(tmp_path / "weights")
    record_file = weights / "kosmos2" / "provenance.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "world_version": "000000000000"}))
    with pytest.raises(ValueError, match="mini Kosmos-2 .* version '000000000000'.*`repro mini kosmos2`"):
        check_shipped(weights)
    record_file.write_text(json.dumps(record))
    shutil.rmtree(weights / "sd")
    with pytest.raises(FileNotFoundError, match="no mini Stable Diffusion .* train it with `repro mini sd"):
        check_shipped(weights)


@pytest.mark.skipif(not (SHIPPED_WEIGHTS / "sd").is_dir(), reason="the mini SD is not trained yet")
def test_a_mini_run_goes_end_to_end_with_an_fid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = new_workdir(tmp_path / "work")
    quick = ["--set", "fid.num_captions=16", "--set", "fid.steps=2"]
    assert repro(workdir, "run", "--tier", "mini", "--only", "sd-v1-5", "--seeds", "0", *ONE_THREAD, *quick,
                 "--executor", "debug", "--no-report") == 0
    (run,) = child_runs(workdir)[1]
    assert run.info.status == "FINISHED" and run.data.tags[tags.EXPERIMENT] == "sd-v1-5"
    assert run.data.metrics["eval/fid"] > 0
    assert (workdir / ".cache" / "mini-assets" / "coco" / "captions_val.json").is_file()
