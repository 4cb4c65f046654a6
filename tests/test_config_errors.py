"""Each class of broken config stops loading with a message naming the file, key and experiment.

Broken configs are the real experiments.toml with one edit, so the tests also pin its layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from experiments.tiny.dreambench_subjects import PROMPTS_FILE
from repro.config import ConfigError, load_matrix
from tests.support.full_tier import EXPERIMENTS, fake_full_env

TEXT = EXPERIMENTS.read_text()


@dataclass(frozen=True)
class Case:
    replace: tuple[str, str] | None = None  # (old, new) text in experiments.toml
    append: str = ""
    tier: str = "tiny"
    kwargs: dict = field(default_factory=dict)
    expect: tuple[str, ...] = ()  # substrings the message must contain


def _exp(name: str) -> str:
    return f"experiment '{name}'"


CASES = {
    "unknown key in an experiment": Case(
        replace=("aligner = { layers = 24 }", "aligner = { layres = 24 }"),
        expect=(_exp("aligner-24"), "aligner.layres", "did you mean 'layers'"),
    ),
    "unknown key in a tier": Case(
        replace=("[tier.tiny.train]\nsteps = 150", "[tier.tiny.train]\nstpes = 150"),
        expect=("tier.tiny.train.stpes", "did you mean 'steps'"),
    ),
    "unknown section": Case(append="\n[trian]\nsteps = 1\n", expect=("trian", "did you mean 'train'")),
    "unknown experiment field": Case(
        replace=('row = "24-Layers AlignerNet"', 'row = "24-Layers AlignerNet"\nrows = "x"'),
        expect=(_exp("aligner-24"), "rows: unknown key", "did you mean 'row'"),
    ),
    "string where an int is required": Case(
        replace=("aligner = { layers = 12 }", 'aligner = { layers = 12 }\ntrain = { steps = "ten" }'),
        expect=(_exp("aligner-12"), "train.steps", "expected an integer", "'ten'"),
    ),
    "float where an int is required": Case(
        replace=("steps = 150\nbatch_size = 16\n", "steps = 150\nbatch_size = 16.0\n"),
        expect=("tier.tiny.train.batch_size", "expected an integer", "16.0"),
    ),
    "bool is not an int": Case(
        replace=("aligner = { layers = 24 }", "aligner = { layers = true }"),
        expect=(_exp("aligner-24"), "aligner.layers", "expected an integer"),
    ),
    "pair of betas": Case(
        replace=("betas = [0.9, 0.98]", "betas = [0.9]"),
        expect=("train.optim.betas", "list of 2"),
    ),
    "unknown recipe": Case(
        replace=(
            'row = "24-Layers AlignerNet"\nrecipe = "align"',
            'row = "24-Layers AlignerNet"\nrecipe = "algn"',
        ),
        expect=(_exp("aligner-24"), "recipe", "did you mean 'align'"),
    ),
    "unknown stage": Case(
        replace=("[stage.e2e]", "[stage.endtoend]"), expect=("stage.endtoend", "unknown recipe")
    ),
    "unknown aligner kind": Case(
        replace=('kind = "decoder_only" }', 'kind = "decoder-only" }'),
        expect=(_exp("decoder-12"), "aligner.kind", "did you mean 'decoder_only'"),
    ),
    "unknown tier": Case(tier="tinny", expect=("tier", "'tinny'", "did you mean 'tiny'")),
    "duplicate experiment name": Case(
        replace=('name = "aligner-24"', 'name = "aligner-12"'),
        expect=(_exp("aligner-12"), "duplicate experiment name"),
    ),
    "duplicate row of a table": Case(
        replace=('row = "24-Layers AlignerNet"', 'row = "12-Layers AlignerNet"'),
        expect=(_exp("aligner-24"), "row", "already has a row '12-Layers AlignerNet'"),
    ),
    "row in an undeclared table": Case(
        replace=('table = "table2"\nrow = "24-Layers', 'table = "table3"\nrow = "24-Layers'),
        expect=(_exp("aligner-24"), "table", "'table3' is not declared"),
    ),
    "baseline with an aligner": Case(
        replace=('recipe = "baseline"', 'recipe = "baseline"\naligner = { layers = 2 }'),
        expect=(_exp("sd-v1-5"), "aligner", "baseline recipe has no aligner"),
    ),
    "e2e on a caption file without its images": Case(
        kwargs={"overrides": ['data.train="@tiny/coco/captions_train.json"']},
        expect=("'e2e-linear'", "'e2e-aligner'", "data.train_images", "e2e recipe reads from this folder"),
    ),
    "heads do not divide width": Case(
        replace=("aligner = { layers = 24 }", "aligner = { layers = 24, heads = 3 }"),
        expect=(_exp("aligner-24"), "aligner.heads", "do not divide aligner.width 32"),
    ),
    "warm-up longer than training": Case(
        replace=("optim = { warmup_steps = 10 }", "optim = { warmup_steps = 100 }"),
        expect=("'kosmos-g'", "train.optim.warmup_steps", "exceed train.steps 40"),
    ),
    "an experiment's section for an unknown tier": Case(
        replace=("tier.tiny = { train = { steps = 98 } }", "tier.tinny = { train = { steps = 98 } }"),
        expect=("experiment 'e2e-aligner': tier.tinny: unknown tier", "did you mean 'tiny'"),
    ),
    "an experiment's tier section with an unknown key": Case(
        replace=("tier.tiny = { train = { steps = 98 } }", "tier.tiny = { train = { stepz = 98 } }"),
        expect=(_exp("e2e-aligner"), "tier.tiny.train.stepz", "did you mean 'steps'"),
    ),
    "encoder cache while the MLLM's dropout is on": Case(
        kwargs={"overrides": ["train.mllm_dropout=0.1"]},
        expect=("'aligner-12'", "train.cache_encoder_outputs", "train.mllm_dropout = 0.1", "not repeatable"),
    ),
    "MLLM dropout out of range": Case(
        kwargs={"overrides": ["train.mllm_dropout=1.0", "train.cache_encoder_outputs=false"]},
        expect=("'aligner-12'", "train.mllm_dropout", "must be in [0, 1)"),
    ),
    "a share of empty captions over 1": Case(
        kwargs={"overrides": ["train.empty_caption_prob=1.5"]},
        expect=("'aligner-12'", "train.empty_caption_prob", "must be in [0, 1]"),
    ),
    "caption filter of no token": Case(
        kwargs={"overrides": ["train.max_caption_sp_tokens=0"]},
        expect=("'aligner-12'", "train.max_caption_sp_tokens", "must be >= 1"),
    ),
    "asynchronous checkpoints of a replicated run": Case(
        replace=("compile = false  #", "async_checkpoint = true\ncompile = false  #"),
        expect=("train.async_checkpoint", "needs train.parallelism = \"fsdp\""),
    ),
    "async_checkpoint is a bool": Case(
        replace=("compile = false  #", "async_checkpoint = 1\ncompile = false  #"),
        expect=("tier.tiny.train.async_checkpoint", "true or false"),
    ),
    "negative DataLoader workers": Case(
        kwargs={"overrides": ["data.num_workers=-2"]},
        expect=("'aligner-12'", "data.num_workers", "must be >= 0", "-2"),
    ),
    # The tiny tier's assets are not built (tiny_assets is an empty folder): the prompts file is
    # read from the copy experiments/ ships.
    "DreamBench subject the prompts file lacks": Case(
        kwargs={"overrides": ['dreambench.subjects=["unicorn"]']},
        expect=("'kosmos-g'", "dreambench.subjects", "['unicorn']", "'backpack'", "'wolf_plushie'"),
    ),
    "non-positive step count": Case(
        kwargs={"overrides": ["fid.steps=0"]}, expect=("'sd-v1-5'", "fid.steps", "must be >= 1")
    ),
    "empty tier seeds": Case(
        replace=("minutes in all.\nseeds = [0, 1]", "minutes in all.\nseeds = []"),
        expect=("tier.tiny.seeds", "non-empty list"),
    ),
    "negative experiment seed": Case(
        replace=('recipe = "baseline"', 'recipe = "baseline"\nseeds = [0, -1]'),
        expect=(_exp("sd-v1-5"), "seeds", ">= 0"),
    ),
    "empty seeds argument": Case(kwargs={"seeds": []}, expect=("--seeds", "non-empty")),
    "--only naming nothing": Case(
        kwargs={"only": ["aligner-13"]}, expect=("--only 'aligner-13'", "did you mean 'aligner-12'")
    ),
    "--set with an unknown key": Case(
        kwargs={"overrides": ["train.stepz=3"]}, expect=("train.stepz", "did you mean 'steps'")
    ),
    "--set with a wrong type": Case(
        kwargs={"overrides": ["train.steps=ten"]}, expect=("train.steps", "expected an integer")
    ),
    "--set without a value": Case(kwargs={"overrides": ["train.steps"]}, expect=("dotted.key=value",)),
    "sweep over an unknown key": Case(
        replace=("paper = 9.55", 'paper = 9.55\nmatrix = { "train.optim.lrr" = [1e-3] }'),
        expect=(_exp("aligner-24"), "matrix.train.optim.lrr", "did you mean 'lr'"),
    ),
    "sweep over a wrong type": Case(
        replace=("paper = 9.55", 'paper = 9.55\nmatrix = { "aligner.layers" = [2, "four"] }'),
        expect=(_exp("aligner-24"), "matrix.aligner.layers", "expected an integer"),
    ),
    "experiment without a recipe": Case(
        replace=('recipe = "align"\naligner = { layers = 24 }', "aligner = { layers = 24 }"),
        expect=(_exp("aligner-24"), "recipe: required"),
    ),
    "experiment without the paper's value": Case(
        replace=("paper = 9.55\n", ""), expect=(_exp("aligner-24"), "paper: required")
    ),
    "paper value neither number nor Failed": Case(
        replace=("paper = 9.55", 'paper = "failed"'), expect=(_exp("aligner-24"), "paper")
    ),
    "table baseline row that is no row": Case(
        replace=('baseline_row = "SD v1.5"', 'baseline_row = "SD 1.5"'),
        expect=("table.table2.baseline_row", "did you mean 'SD v1.5'"),
    ),
    "failure rule given by half": Case(
        replace=("failed_above_baseline_ratio = 3.0", ""),
        expect=("table.table2.failed_above_baseline_ratio: required with baseline_row",),
    ),
    "failure rule on a higher-is-better panel": Case(
        replace=('"MS-COCO FID", metrics = ["eval/fid"], labels = ["FID"], lower_is_better = true',
                 '"MS-COCO FID", metrics = ["eval/fid"], labels = ["FID"], lower_is_better = false'),
        expect=("table.table2.failed_above_baseline_ratio", "panel 'MS-COCO FID' is higher is better"),
    ),
    "table with panels and a one-metric key": Case(
        replace=("failed_above_baseline_ratio = 3.0", 'failed_above_baseline_ratio = 3.0\nmetric = "x"'),
        expect=("table.table2: metric: give panels, or metric and lower_is_better", "not both"),
    ),
    "table without metrics": Case(
        replace=('panels = [{ name = "MS-COCO FID"', 'panls = [{ name = "MS-COCO FID"'),
        expect=("table.table2.panls", "did you mean 'panels'", "table.table2.panels: required"),
    ),
    "beyond-paper column with a misspelt key": Case(
        replace=('{ metric = "eval/attribute_accuracy", label = "Accuracy", lower_is_better = false }] }]',
                 '{ metric = "eval/attribute_accuracy", lable = "Accuracy", lower_is_better = false }] }]'),
        expect=("table.table2.panels[0].beyond_paper[0].lable", "did you mean 'label'"),
    ),
    "finding of an unknown kind": Case(
        replace=('holds = "as_good_as"', 'holds = "as_good"'),
        expect=("table.table2.findings[3]", "unknown value 'as_good'", "did you mean 'as_good_as'"),
    ),
    "comparison finding without the other row": Case(
        replace=('holds = "better_than", other = "e2e-aligner"', 'holds = "better_than"'),
        expect=("table.table2.findings[2].other", "name the other experiment"),
    ),
    "a failure claim at equal compute": Case(
        replace=('experiment = "e2e-linear", holds = "fails" }',
                 'experiment = "e2e-linear", holds = "fails", at_equal_compute = true }'),
        expect=("table.table2.findings[0].at_equal_compute", "only a comparison of two rows"),
    ),
    "a failure claim at the same params": Case(
        replace=('experiment = "e2e-linear", holds = "fails" }',
                 'experiment = "e2e-linear", holds = "fails", same_params = ["train.steps"] }'),
        expect=("table.table2.findings[0].same_params", "only a comparison of two rows"),
    ),
    "a claim held to a param no config has": Case(
        replace=('same_params = ["train.steps"]', 'same_params = ["train.step"]'),
        expect=("table.table2.findings[3].same_params[0]: 'train.step'", "did you mean 'steps'"),
    ),
    "gate with both bounds": Case(
        replace=("at_most = 0.1 }", "at_most = 0.1, at_least = 0.0 }"),
        expect=("table.table2.gates[1]", "exactly one of at_least or at_most"),
    ),
    "gate on a metric the table does not have": Case(
        replace=('metric = "eval/attribute_accuracy/one_object"',
                 'metric = "eval/attribute_acuracy/one_object"'),
        expect=("table.table2.gates[0].metric", "'eval/attribute_acuracy/one_object' is no metric"),
    ),
    "finding naming no experiment": Case(
        replace=('experiment = "decoder-12", holds = "fails"', 'experiment = "decoder-21", holds = "fails"'),
        expect=("table.table2.findings[1].experiment", "'decoder-21' is no [[experiment]]",
                "did you mean 'decoder-12'"),
    ),
    "gate measured against no experiment": Case(
        replace=('times = "aligner-untrained"', 'times = "aligner-untrianed"'),
        expect=("table.table2.gates[2].times", "'aligner-untrianed' is no [[experiment]]",
                "did you mean 'aligner-untrained'"),
    ),
    "invalid TOML": Case(append="\n[[experiment]\n", expect=("cannot read",)),
}


def _load(tmp_path: Path, case: Case):
    text = TEXT
    if case.replace:
        old, new = case.replace
        assert text.count(old) == 1, f"the edit {old!r} no longer matches experiments.toml once"
        text = text.replace(old, new)
    path = tmp_path / "broken.toml"
    path.write_text(text + case.append)
    return load_matrix(path, case.tier, tiny_assets=tmp_path / "assets", env={}, **case.kwargs)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_broken_config_is_rejected_with_a_precise_message(tmp_path, case):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, case)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "broken.toml"))
    for part in case.expect:
        assert part in message


def test_several_problems_are_reported_at_once(tmp_path):
    case = Case(
        replace=("aligner = { layers = 24 }", "aligner = { layers = 24, kind = 'mlp' }\nseeds = []"),
        kwargs={"overrides": ["train.steps=ten"]},
    )
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, case)
    assert "3 problems" in str(caught.value)
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize(
    "env_edit, expect",
    [
        (
            {"KOSMOS_SD": None},
            ("KOSMOS_SD", "is not set", "export KOSMOS_SD", "--set models.stable_diffusion"),
        ),
        ({"KOSMOS_SD": ""}, ("KOSMOS_SD", "is not set")),
        (
            {"KOSMOS_SD": "/nonexistent/sd"},
            ("models.stable_diffusion", "/nonexistent/sd", "does not exist"),
        ),
    ],
    ids=["unset", "empty", "missing"],
)
def test_full_tier_path_problems_name_key_experiment_and_remedy(tmp_path, env_edit, expect):
    env = fake_full_env(tmp_path / "world")
    for name, value in env_edit.items():
        if value is None:
            del env[name]
        else:
            env[name] = value
    with pytest.raises(ConfigError) as caught:
        load_matrix(EXPERIMENTS, "full", env=env)
    message = str(caught.value)
    assert "models.stable_diffusion" in message and "'sd-v1-5'" in message
    for part in expect:
        assert part in message


def test_full_tier_path_set_empty_says_how_to_set_it(tmp_path):
    env = fake_full_env(tmp_path / "world")
    with pytest.raises(ConfigError) as caught:
        load_matrix(EXPERIMENTS, "full", overrides=["models.mllm="], env=env)
    message = str(caught.value)
    assert "'aligner-12'" in message and "models.mllm: no path given" in message
    assert "--set models.mllm=/path" in message


def test_full_tier_subjects_are_checked_against_the_users_prompts_file(tmp_path):
    env = fake_full_env(tmp_path / "world")
    prompts = Path(env["KOSMOS_DREAMBENCH"]) / "prompts_and_classes.txt"
    prompts.write_text(PROMPTS_FILE.read_text().replace("teapot,teapot\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_matrix(EXPERIMENTS, "full", overrides=['dreambench.subjects=["dog", "teapot"]'], env=env)
    message = str(caught.value)
    assert "'kosmos-g'" in message and "dreambench.subjects: ['teapot'] not in" in message
    assert "'dog'" in message.partition("subjects [")[2]


def test_full_tier_subjects_need_a_prompts_file_that_parses(tmp_path):
    env = fake_full_env(tmp_path / "world")  # its prompts file is empty
    with pytest.raises(ConfigError) as caught:
        load_matrix(EXPERIMENTS, "full", overrides=['dreambench.subjects=["dog"]'], env=env)
    assert "dreambench.prompts: " in str(caught.value) and "'subject_name,class'" in str(caught.value)
