"""experiments.toml loads for both tiers, carries the paper's protocol, and merges in order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_type_hints

import pytest

from experiments.config import RunConfig
from repro.config import ConfigError, load_matrix
from repro.config.fields import SECTIONS
from repro.config.paths import PATH_KEYS
from repro.config.schema import BeyondPaperColumn, FailureRule, Panel
from repro.launch.plan_table import format_plan
from tests.support.full_tier import EXPERIMENTS, fake_full_env

TABLE2 = {
    "SD v1.5": ("baseline", 9.34),
    "E2E w/o AlignerNet": ("e2e", None),
    "E2E w/ AlignerNet": ("e2e", 11.30),
    "12-Layers Decoder": ("align", None),
    "12-Layers AlignerNet": ("align", 9.89),
    "24-Layers AlignerNet": ("align", 9.55),
    "12-Layers AlignerNet (released checkpoint)": ("released", 9.89),
}
RELEASED_ROWS = 1  # one seed: the released rows train nothing


def tiny(tmp_path: Path, **kwargs):
    return load_matrix(EXPERIMENTS, "tiny", tiny_assets=tmp_path / "assets", env={}, **kwargs)


def full(tmp_path: Path, **kwargs):
    return load_matrix(EXPERIMENTS, "full", env=fake_full_env(tmp_path / "world"), **kwargs)


def config_of(matrix, experiment: str, seed: int = 0) -> RunConfig:
    (run,) = [r for r in matrix.runs if r.experiment == experiment and r.seed == seed]
    return run.config


def test_tiny_tier_has_every_table2_row_at_each_seed(tmp_path):
    matrix = tiny(tmp_path, table="table2")
    assert matrix.tier == "tiny"
    assert len(matrix.runs) == 6 * 2 + RELEASED_ROWS
    assert {(run.row, run.seed) for run in matrix.runs} == {
        (row, s) for row, (recipe, _) in TABLE2.items() for s in ((0,) if recipe == "released" else (0, 1))}
    for run in matrix.runs:
        assert run.config.recipe == TABLE2[run.row][0]
        assert run.config.seed == run.seed
    table = next(t for t in matrix.tables if t.key == "table2")
    accuracy = BeyondPaperColumn("eval/attribute_accuracy", "Accuracy", lower_is_better=False)
    assert table.panels == (Panel("MS-COCO FID", ("eval/fid",), ("FID",), lower_is_better=True,
                                  beyond_paper=(accuracy,)),)
    assert table.failure_rule == FailureRule(baseline_row="SD v1.5", failed_above_baseline_ratio=3.0)
    assert {row.name: row.paper for row in table.rows} == {
        row: (("eval/fid", paper),) for row, (_, paper) in TABLE2.items()}


def test_a_table_of_one_metric_may_still_name_it_without_panels(tmp_path):
    """Table 2 as it was written before tables had panels: the same table, its one panel named
    after the metric."""
    text = EXPERIMENTS.read_text()
    panels = ('panels = [{ name = "MS-COCO FID", metrics = ["eval/fid"], labels = ["FID"],'
              ' lower_is_better = true, beyond_paper = [{ metric = "eval/attribute_accuracy",'
              ' label = "Accuracy", lower_is_better = false }] }]')
    assert text.count(panels) == 1
    path = tmp_path / "experiments.toml"
    # The old form has no beyond-paper columns, so no gate may read attribute accuracy.
    text = re.sub(r"^gates = \[\n.*?^\]\n", "", text, count=1, flags=re.MULTILINE | re.DOTALL)
    path.write_text(text.replace(panels, 'metric = "eval/fid"\nlower_is_better = true'))
    old = next(t for t in load_matrix(path, "tiny", tiny_assets=tmp_path / "assets", env={}).tables
               if t.key == "table2")
    new = next(t for t in tiny(tmp_path).tables if t.key == "table2")
    assert old.panels == (Panel("eval/fid", ("eval/fid",), ("eval/fid",), lower_is_better=True),)
    assert (old.rows, old.failure_rule) == (new.rows, new.failure_rule)


def test_tiny_tier_shrinks_sizes_and_roots_assets(tmp_path):
    matrix = tiny(tmp_path)
    assets = (tmp_path / "assets").resolve()
    align = config_of(matrix, "aligner-12")
    assert (align.aligner.width, align.aligner.ffn, align.aligner.heads) == (32, 64, 2)
    assert align.aligner.max_source_len == 256
    assert (align.train.steps, align.train.batch_size, align.train.optim.warmup_steps) == (150, 16, 10)
    assert (align.train.log_every, align.train.eval_every, align.train.checkpoint_every) == (5, 25, 25)
    # The SentencePiece cap at the tiny captions' scale; no MLLM dropout, so the encoder cache holds.
    assert (align.train.max_caption_sp_tokens, align.train.mllm_dropout) == (16, 0.0)
    assert align.train.cache_encoder_outputs
    assert (align.fid.num_captions, align.fid.steps, align.fid.generate_size, align.fid.resolution) == (
        64,
        10,
        32,
        32,
    )
    assert align.models.mllm == str(assets / "kosmos2")
    assert align.models.stable_diffusion == str(assets / "sd")
    assert align.fid.inception_weights == str(assets / "inception-random.pth")
    assert align.data.train_images is None  # align never reads images
    e2e = config_of(matrix, "e2e-aligner")
    assert e2e.train.steps == 98  # the experiment's tiny-tier steps, at aligner-12's compute
    assert e2e.data.train == str(assets / "wds") and e2e.data.train_images is None
    assert not (tmp_path / "assets").exists()  # loading builds nothing


def test_table2_ablations_differ_only_where_the_paper_says(tmp_path):
    matrix = tiny(tmp_path)
    assert config_of(matrix, "e2e-linear").aligner.kind == "linear"
    assert config_of(matrix, "decoder-12").aligner.kind == "decoder_only"
    assert config_of(matrix, "aligner-12").aligner.layers == 12
    assert config_of(matrix, "aligner-24").aligner.layers == 24
    assert config_of(matrix, "aligner-24").aligner.width == 32  # tier still applies under it


def test_full_tier_is_the_papers_protocol(tmp_path):
    matrix = full(tmp_path, table="table2")
    assert len(matrix.runs) == 7  # seed 0 only
    align = config_of(matrix, "aligner-12")
    optim = align.train.optim
    assert (optim.lr, optim.betas, optim.weight_decay, optim.eps) == (1e-3, (0.9, 0.98), 0.01, 1e-6)
    assert (optim.warmup_steps, optim.grad_clip) == (375, 2.0)
    assert (align.train.steps, align.train.batch_size) == (300_000, 3_584)
    assert align.train.max_caption_tokens == 75 and align.train.precision == "fp16"
    # (code) what the official stage 2 does where the paper is silent
    assert (align.train.max_caption_sp_tokens, align.train.mllm_dropout) == (85, 0.1)
    assert (align.train.rec_mask_padding, align.train.append_eos, align.train.cache_encoder_outputs) == (
        False, False, False
    )
    aligner = align.aligner
    assert (aligner.kind, aligner.layers, aligner.width, aligner.ffn, aligner.heads) == (
        "aligner",
        12,
        768,
        3072,
        12,
    )
    fid = align.fid
    assert (fid.num_captions, fid.caption_seed, fid.sampler, fid.steps) == (30_000, 0, "ddim", 250)
    assert (fid.guidance, fid.resolution, fid.generate_size) == (3.0, 256, 512)
    e2e = config_of(matrix, "e2e-aligner")
    assert (e2e.train.batch_size, e2e.train.optim.lr) == (1_024, 1e-3)
    # At aligner-12's compute (tests/test_e2e_compute.py), each row its own steps, per tier.
    assert (e2e.train.steps, config_of(matrix, "e2e-linear").train.steps) == (147_899, 152_897)
    tiny = load_matrix(EXPERIMENTS, "tiny", only=["e2e-aligner", "e2e-linear"], tiny_assets=tmp_path, env={})
    steps = (config_of(tiny, "e2e-aligner").train.steps, config_of(tiny, "e2e-linear").train.steps)
    assert steps == (98, 181)


def test_full_tier_paths_come_from_the_environment(tmp_path):
    env = fake_full_env(tmp_path / "world")
    matrix = load_matrix(EXPERIMENTS, "full", env=env)
    e2e = config_of(matrix, "e2e-aligner")
    assert e2e.models.mllm == env["KOSMOS_MLLM"]
    assert e2e.data.train == env["KOSMOS_TRAIN_SHARDS"] and e2e.data.train_images is None
    baseline = config_of(matrix, "sd-v1-5")
    assert baseline.models.mllm == "" and baseline.data.train == ""  # unused by the baseline


def test_full_tier_paths_can_come_from_set_and_an_override_file(tmp_path):
    env = fake_full_env(tmp_path / "world")
    sd = tmp_path / "elsewhere" / "sd"
    sd.mkdir(parents=True)
    mllm = tmp_path / "kosmos2"
    mllm.mkdir()
    override_file = tmp_path / "local.toml"
    override_file.write_text(f'[models]\nmllm = "{mllm}"\n')
    del env["KOSMOS_SD"], env["KOSMOS_MLLM"]
    matrix = load_matrix(
        EXPERIMENTS,
        "full",
        overrides=[f"models.stable_diffusion={sd}"],
        override_file=override_file,
        env=env,
    )
    config = config_of(matrix, "aligner-24")
    assert (config.models.stable_diffusion, config.models.mllm) == (str(sd), str(mllm))


def test_precedence_protocol_stage_tier_experiment_user(tmp_path):
    matrix = tiny(tmp_path)
    # [train] steps 300k < [tier.tiny.train] 150 < the experiment's 147,899 < its tier.tiny 98
    assert config_of(matrix, "e2e-aligner").train.steps == 98
    assert config_of(matrix, "aligner-12").train.steps == 150
    set_last = tiny(tmp_path, overrides=["train.steps=90"])  # and --set beats them all
    assert config_of(set_last, "e2e-aligner").train.steps == 90
    # [stage.e2e] batch 1024 loses to [tier.tiny.train] batch 16
    assert config_of(matrix, "e2e-aligner").train.batch_size == 16
    # untouched by every layer: the protocol's value
    assert config_of(matrix, "aligner-12").train.optim.betas == (0.9, 0.98)
    # the experiment beats the tier; --set beats the experiment
    assert config_of(matrix, "aligner-24").aligner.layers == 24
    overridden = tiny(tmp_path, overrides=["aligner.layers=3", "train.optim.betas=[0.8, 0.9]"])
    assert config_of(overridden, "aligner-24").aligner.layers == 3
    assert config_of(overridden, "aligner-24").train.optim.betas == (0.8, 0.9)


def test_later_set_wins_and_beats_the_override_file(tmp_path):
    override_file = tmp_path / "local.toml"
    override_file.write_text("[train]\nsteps = 7\nlog_every = 7\n")
    matrix = tiny(tmp_path, override_file=override_file, overrides=["train.steps=20", "train.steps=30"])
    config = config_of(matrix, "aligner-12")
    assert (config.train.steps, config.train.log_every) == (30, 7)


def test_only_filters_by_name_or_row_and_seeds_replace_the_tiers(tmp_path):
    matrix = tiny(tmp_path, only=["aligner-24", "SD v1.5"], seeds=[5])
    assert {(run.experiment, run.seed) for run in matrix.runs} == {("aligner-24", 5), ("sd-v1-5", 5)}
    assert [spec.name for spec in matrix.experiments] == ["sd-v1-5", "aligner-24"]
    assert all(spec.seeds == (5,) for spec in matrix.experiments)
    assert len(matrix.tables[0].rows) == 7  # the report still shows the whole table


def test_only_checks_paths_of_selected_experiments_only(tmp_path):
    env = fake_full_env(tmp_path / "world")
    del env["KOSMOS_MLLM"], env["KOSMOS_TRAIN_SHARDS"]
    matrix = load_matrix(EXPERIMENTS, "full", only="sd-v1-5", env=env)
    assert [run.experiment for run in matrix.runs] == ["sd-v1-5"]


def test_matrix_sweep_crosses_points_with_seeds(tmp_path):
    text = EXPERIMENTS.read_text() + (
        '\n[[experiment]]\nname = "lr-sweep"\ntable = "table2"\nrow = "lr sweep"\nrecipe = "align"\n'
        'paper = 9.89\nmatrix = { "train.optim.lr" = [1e-3, 3e-4], aligner.layers = [2, 4] }\n'
    )
    path = tmp_path / "experiments.toml"
    path.write_text(text)
    matrix = load_matrix(path, "tiny", only=["lr-sweep"], tiny_assets=tmp_path, env={})
    assert len(matrix.runs) == 2 * 2 * 2
    points = {(run.sweep_point, run.seed) for run in matrix.runs}
    assert ((("train.optim.lr", 3e-4), ("aligner.layers", 4)), 1) in points
    for run in matrix.runs:
        point = dict(run.sweep_point)
        assert run.config.train.optim.lr == point["train.optim.lr"]
        assert run.config.aligner.layers == point["aligner.layers"]
    assert len({run.config_hash for run in matrix.runs}) == 8
    # points in declaration order, seeds innermost
    assert matrix.runs[4].run_name == "lr sweep train.optim.lr=0.0003 aligner.layers=2 seed=0"


def test_plan_lists_every_run(tmp_path):
    matrix = tiny(tmp_path, table="table2")
    text = format_plan(matrix)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["hash", "experiment", "row", "seed"]
    assert len(lines) == 2 + len(matrix.runs) + 1
    for run in matrix.runs:
        assert any(line.startswith(run.config_hash) and run.row in line for line in lines)
    assert "decoder_only x12" in text and "aligner x24" in text
    assert "13 runs from 7 experiments, tier tiny" in text


def test_loading_imports_no_heavy_library(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from repro.config import load_matrix\nfrom repro.launch.plan_table import format_plan\n"
        f"format_plan(load_matrix({str(EXPERIMENTS)!r}, 'tiny', tiny_assets=Path('a'), env={{}}))\n"
        "heavy = ('torch', 'mlflow', 'diffusers', 'transformers', 'pandas')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(heavy)\n"
    )
    # How long this takes is bench/startup.py's.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_every_string_field_is_a_known_path():
    """A new str field in experiments/config.py must say which recipes read it (paths.py), unless
    it names something other than a path (a parquet column)."""
    strings = {
        f"{section}.{name}"
        for section, cls in SECTIONS.items()
        for name, hint in get_type_hints(cls).items()
        if hint in (str, str | None)
    }
    assert strings - {"data.text_column"} == set(PATH_KEYS)


def test_tiny_tier_without_an_asset_folder_is_an_error():
    with pytest.raises(ConfigError, match="tiny_assets"):
        load_matrix(EXPERIMENTS, "tiny", env={})
