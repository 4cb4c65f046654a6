"""Table 1 in experiments.toml: a panel table with cited rows, stage 3 starting from Table 2's
aligned run (`after`), DreamBench switched on where the table needs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.config import ConfigError, load_matrix
from repro.config.paths import localize_runs
from repro.config.schema import TableSpec
from tests.support.full_tier import EXPERIMENTS

TEXT = EXPERIMENTS.read_text()


def tiny(tmp_path: Path, path: Path = EXPERIMENTS, **kwargs):
    return load_matrix(path, "tiny", tiny_assets=tmp_path / "assets", env={}, **kwargs)


def edited(tmp_path: Path, old: str, new: str) -> Path:
    assert TEXT.count(old) == 1, old
    path = tmp_path / "experiments.toml"
    path.write_text(TEXT.replace(old, new))
    return path


def test_table1_plans_stage2_then_stage3_and_reuses_the_sd_baseline(tmp_path):
    matrix = tiny(tmp_path, table="table1")
    by_experiment = {}
    for run in matrix.runs:
        by_experiment.setdefault(run.experiment, []).append(run)
    assert {k: len(v) for k, v in by_experiment.items()} == {
        "sd-v1-5": 2, "aligner-12": 2, "kosmos-g": 2, "kosmos-g-released": 1, "real-images": 1}
    for run in by_experiment["kosmos-g"]:
        (stage2,) = [r for r in by_experiment["aligner-12"] if r.seed == run.seed]
        assert run.after == (stage2.config_hash,)
        assert run.config.train.init_from == f"@run/{stage2.config_hash}"
        assert run.config.recipe == "instruct"
        assert run.config.dreambench.enabled and run.config.fid.enabled
        assert run.config.dreambench.root == str((tmp_path / "assets" / "dreambench").resolve())
    (oracle,) = by_experiment["real-images"]
    assert not oracle.config.fid.enabled and oracle.config.dreambench.enabled
    assert all(not r.config.dreambench.enabled for r in by_experiment["aligner-12"])
    (released,) = by_experiment["kosmos-g-released"]
    assert released.config.dreambench.enabled and released.config.fid.enabled and not released.after
    assert released.config.models.released == str((tmp_path / "assets" / "released" / "final").resolve())


def test_table1_spec_keeps_cited_rows_apart(tmp_path):
    spec = next(t for t in tiny(tmp_path).tables if t.key == "table1")
    assert isinstance(spec, TableSpec) and spec.failure_rule is None
    assert [p.name for p in spec.panels] == ["DreamBench", "MS-COCO"]
    assert spec.panels[0].labels == ("DINO", "CLIP-I", "CLIP-T") and spec.panels[1].lower_is_better
    assert {r.name: r.experiment for r in spec.reproduced} == {
        "KOSMOS-G": "kosmos-g", "KOSMOS-G (released checkpoint)": "kosmos-g-released",
        "Real images (oracle)": "real-images", "SD v1.5": "sd-v1-5"}
    # The released model's row shows the paper's KOSMOS-G beside what this protocol measures.
    for experiment in ("kosmos-g", "kosmos-g-released"):
        assert dict(next(r for r in spec.reproduced if r.experiment == experiment).paper) == {
            "eval/dino": 0.694, "eval/clip_i": 0.847, "eval/clip_t": 0.287, "eval/fid": 10.99}
    cited = {r.name: dict(r.paper) for r in spec.cited}
    assert len(cited) == 12 and cited["SuTI"]["eval/dino"] == 0.741 and cited["GLIDE"] == {"eval/fid": 12.24}


def test_stage3_alone_brings_its_stage2_run_along(tmp_path):
    matrix = tiny(tmp_path, only=["kosmos-g"], seeds=[1])
    assert sorted(run.experiment for run in matrix.runs) == ["aligner-12", "kosmos-g"]


def test_changing_the_stage2_run_changes_the_stage3_id(tmp_path):
    def kosmos_hash(matrix):
        return next(r.config_hash for r in matrix.runs if r.experiment == "kosmos-g" and r.seed == 0)

    before = kosmos_hash(tiny(tmp_path, table="table1"))
    path = edited(tmp_path, "aligner = { layers = 12 }", "aligner = { layers = 12 }\ntrain = { steps = 99 }")
    assert kosmos_hash(tiny(tmp_path, path, table="table1")) != before


def test_an_init_from_path_replaces_the_dependency(tmp_path):
    weights = tmp_path / "stage2.pt"
    weights.write_bytes(b"")
    matrix = tiny(tmp_path, only=["kosmos-g"], overrides=[f"train.init_from={weights}"])
    assert [r.experiment for r in matrix.runs] == ["aligner-12", "aligner-12", "kosmos-g", "kosmos-g"]
    stage3 = [r for r in matrix.runs if r.experiment == "kosmos-g"]
    assert all(r.after == () and r.config.train.init_from == str(weights) for r in stage3)


def test_run_paths_are_rerooted_in_the_work_dir(tmp_path):
    run = next(r for r in tiny(tmp_path, table="table1").runs if r.experiment == "kosmos-g")
    local = localize_runs(run.config, tmp_path / "runs")
    assert local.train.init_from == str(tmp_path / "runs" / run.after[0])


@pytest.mark.parametrize("old, new, expect", [
    ('after = "aligner-12"', 'after = "aligner-13"', ["experiment 'kosmos-g': after", "'aligner-13'",
                                                       "did you mean 'aligner-12'"]),
    ('after = "aligner-12"  # stage 3', '# stage 3', ["experiment 'kosmos-g': after", "set train.init_from"]),
    ('after = "aligner-12"', 'after = "kosmos-g"', ["loops back"]),
    ('"eval/fid" = 10.99 }', '"eval/fd" = 10.99 }', ["eval/fd", "not a metric of any panel", "'eval/fid'"]),
    ("paper = 9.55", 'paper = { "eval/fid" = 9.55 }', ["experiment 'aligner-24': paper", "one metric"]),
    ('reuse = [{ experiment = "sd-v1-5"', 'reuse = [{ experiment = "sd-v15"',
     ["table.table1.reuse[0].experiment"]),
])
def test_broken_table1_config_names_the_key(tmp_path, old, new, expect):
    with pytest.raises(ConfigError) as error:
        tiny(tmp_path, edited(tmp_path, old, new))
    for text in expect:
        assert text in str(error.value)


def test_unknown_table_is_named(tmp_path):
    with pytest.raises(ConfigError, match="--table 'table3': no such table.*table1, table2"):
        tiny(tmp_path, table="table3")


def test_full_tier_stage3_and_dreambench_follow_the_paper(tmp_path):
    from tests.support.full_tier import fake_full_env

    matrix = load_matrix(EXPERIMENTS, "full", table="table1", env=fake_full_env(tmp_path / "world"))
    stage3 = next(r.config for r in matrix.runs if r.experiment == "kosmos-g")
    train = stage3.train
    assert (train.steps, train.batch_size, train.optim.lr, train.optim.warmup_steps) == (
        200_000, 1_024, 1e-3, 375)
    assert (train.entity_drop_prob, train.background_keep_prob, train.null_condition_prob) == (0.5, 0.5, 0.1)
    assert train.edit_caption_drop_prob == 0.5  # (code) --random-drop-caption-prob 0.5
    assert stage3.data.mix == (2.0, 2.0, 1.0) and train.trainable_vision_layers == 1
    assert (stage3.data.captioned_max_sp_tokens, stage3.data.captioned_min_image_side) == (128, 384)
    assert (train.mllm_dropout, train.append_eos) == (0.1, False)
    bench = stage3.dreambench
    assert (bench.sampler, bench.steps, bench.guidance, bench.images_per_prompt) == ("dpm", 100, 7.5, 4)
    assert bench.subjects == () and bench.templates == () and bench.reference == "input"
    # (code) scripts/remove_dreambench_multiimg.sh: one chosen photo per subject, 26 of 30 not the first
    assert len(bench.input_images) == 30
    assert sum(photo != "00.jpg" for photo in bench.input_images.values()) == 26
    assert (bench.input_images["dog"], bench.input_images["dog3"], bench.input_images["teapot"]) == (
        "02.jpg", "05.jpg", "04.jpg")
    prompts = tmp_path / "world" / "kosmos_dreambench" / "prompts_and_classes.txt"
    assert bench.prompts == str(prompts.resolve())
    assert (stage3.fid.steps, stage3.fid.guidance, stage3.fid.num_captions) == (250, 3.0, 30_000)


def test_rows_of_released_weights_say_so_in_place_of_reproduced(tmp_path):
    rows = {row.name: row for table in tiny(tmp_path).tables for row in table.rows}
    for name in ("KOSMOS-G (released checkpoint)", "12-Layers AlignerNet (released checkpoint)"):
        assert rows[name].source == "released checkpoint, evaluated here"
    assert rows["12-Layers AlignerNet"].source == rows["KOSMOS-G"].source == "reproduced"
