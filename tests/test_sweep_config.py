"""[[sweep]] entries: the example loads, bad ones stop loading with a message naming the sweep
and the key, and a trial's RunSpec is the base run with its params applied last."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.cli import main
from repro.config import ConfigError, load_matrix, load_sweep
from repro.config.paths import TINY_PREFIX
from repro.sweep.runs import TrialRuns
from tests.support.full_tier import EXPERIMENTS

TEXT = EXPERIMENTS.read_text()
GOOD = '''
[[sweep]]
name = "probe"
experiment = "aligner-12"
metric = "heldout/mse_loss"
direction = "minimize"
n_trials = 3
train = { steps = 20 }

[sweep.space]
"train.optim.lr" = { low = 1e-4, high = 3e-3, log = true }
train.optim.warmup_steps = { low = 0, high = 5 }
"aligner.layers" = { choices = [1, 2] }
'''


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(text)
    return path


def test_the_example_sweep_loads():
    sweep = load_sweep(EXPERIMENTS, "align-lr")
    assert (sweep.experiment, sweep.metric, sweep.direction) == ("aligner-12", "heldout/mse_loss", "minimize")
    assert (sweep.n_trials, sweep.parallel, sweep.pruner.kind) == (8, 2, "median")
    lr, warmup, rec = sweep.space
    assert (lr.key, lr.kind, lr.low, lr.high, lr.log) == ("train.optim.lr", "float", 1e-4, 3e-3, True)
    assert (warmup.key, warmup.kind) == ("train.optim.warmup_steps", "int")
    assert (rec.key, rec.kind) == ("train.rec_weight", "float")


def test_nested_and_quoted_space_keys_and_types_come_from_the_config_fields(tmp_path):
    sweep = load_sweep(_write(tmp_path, TEXT + GOOD), "probe")
    assert [(p.key, p.kind) for p in sweep.space] == [
        ("train.optim.lr", "float"), ("train.optim.warmup_steps", "int"), ("aligner.layers", "categorical")]
    assert sweep.overrides == {"train": {"steps": 20}}
    assert (sweep.parallel, sweep.sampler.kind, sweep.pruner.kind) == (1, "tpe", "median")


BAD = {
    "unknown setting": (('metric = "heldout/mse_loss"', 'metirc = "heldout/mse_loss"'),
                        ("metirc: unknown key", "did you mean 'metric'")),
    "unknown space key": (('"train.optim.lr" = {', '"train.optim.lrr" = {'),
                          ("space.train.optim.lrr", "did you mean 'lr'")),
    "range on a text field": (
        ('"aligner.layers" = { choices = [1, 2] }', '"aligner.kind" = { low = 1, high = 2 }'),
        ("space.aligner.kind", "use choices"),
    ),
    "launch setting in the space": (
        ('"aligner.layers" = { choices = [1, 2] }', '"launch.nodes" = { choices = [1, 2] }'),
        ("space.launch.nodes", "cannot be searched"),
    ),
    "float bound on an int field": (("low = 0, high = 5", "low = 0.5, high = 5"),
                                    ("space.train.optim.warmup_steps.low", "expected an integer")),
    "log range from zero": (("low = 1e-4, high = 3e-3", "low = 0.0, high = 3e-3"),
                            ("space.train.optim.lr.low", "above 0")),
    "empty range": (("low = 0, high = 5", "low = 5, high = 5"),
                    ("space.train.optim.warmup_steps", "low must be below high")),
    "choice of the wrong type": (("choices = [1, 2]", 'choices = [1, "two"]'),
                                 ("space.aligner.layers.choices", "expected an integer")),
    "bad direction": (('direction = "minimize"', 'direction = "minimise"'),
                      ("direction", "did you mean 'minimize'")),
    "unknown experiment": (('experiment = "aligner-12"', 'experiment = "aligner-13"'),
                           ("experiment: no [[experiment]] named 'aligner-13'",)),
    "no trials": (("n_trials = 3", "n_trials = 0"), ("n_trials: must be >= 1",)),
    "unknown pruner": (("n_trials = 3", 'n_trials = 3\npruner = { kind = "medain" }'),
                       ("pruner.kind", "did you mean 'median'")),
    "unknown sampler setting": (("n_trials = 3", 'n_trials = 3\nsampler = { startup = 2 }'),
                                ("sampler.startup: unknown key",)),
    "bad override": (("train = { steps = 20 }", 'train = { steps = "many" }'),
                     ("train.steps", "expected an integer")),
    "no space": (('\n[sweep.space]\n"train.optim.lr" = { low = 1e-4, high = 3e-3, log = true }\n'
                  'train.optim.warmup_steps = { low = 0, high = 5 }\n'
                  '"aligner.layers" = { choices = [1, 2] }\n', "\n"),
                 ("space: required",)),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_sweeps_are_rejected_naming_the_sweep_and_key(tmp_path, case):
    (old, new), expected = BAD[case]
    assert old in GOOD
    path = _write(tmp_path, TEXT + GOOD.replace(old, new))
    with pytest.raises(ConfigError) as raised:
        load_matrix(path, "tiny", tiny_assets=tmp_path)  # the whole file is checked, as for `repro plan`
    message = str(raised.value)
    assert "sweep 'probe'" in message
    for text in expected:
        assert text in message


def test_a_sweep_over_an_experiment_with_a_matrix_is_rejected(tmp_path):
    text = TEXT.replace("aligner = { layers = 12 }",
                        "aligner = { layers = 12 }\nmatrix = { \"train.optim.lr\" = [1e-3, 2e-3] }")
    with pytest.raises(ConfigError, match="sweep 'probe': experiment: 'aligner-12' has a matrix"):
        load_sweep(_write(tmp_path, text + GOOD), "probe")


def test_duplicate_sweep_names_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="duplicate sweep name 'probe'"):
        load_sweep(_write(tmp_path, TEXT + GOOD + GOOD), "probe")


def test_an_unknown_sweep_name_lists_the_sweeps(tmp_path, capsys):
    (tmp_path / "experiments.toml").write_text(TEXT)
    assert main(["--workdir", str(tmp_path), "sweep", "align-rl"]) == 2
    assert "did you mean 'align-lr'" in capsys.readouterr().err


def test_a_trial_is_the_base_run_with_its_params_applied_last(tmp_path):
    path = _write(tmp_path, TEXT + GOOD)
    runs = TrialRuns(path, load_sweep(path, "probe"), "tiny", ("train.optim.lr=0.5", "train.steps=12"),
                     {TINY_PREFIX: tmp_path})
    base = runs.base()
    assert (base.config.train.steps, base.config.train.optim.lr) == (12, 0.5)  # --set over the sweep's own
    params = {"train.optim.lr": 2e-4, "train.optim.warmup_steps": 3, "aligner.layers": 2}
    trial = runs.trial("probe.tiny.x", 4, params)
    chosen = trial.config
    assert (chosen.train.optim.lr, chosen.train.optim.warmup_steps, chosen.aligner.layers) == (2e-4, 3, 2)
    assert (trial.table, trial.row, trial.experiment) == ("sweep:probe.tiny.x", "probe #4", "aligner-12")
    assert dict(trial.sweep_point) == params
    # Same params, another trial number or study: another run folder and MLflow run.
    assert runs.trial("probe.tiny.x", 4, dict(reversed(params.items()))).config_hash == trial.config_hash
    assert runs.trial("probe.tiny.x", 4, params).config_hash == trial.config_hash
    assert runs.trial("probe.tiny.x", 5, params).config_hash != trial.config_hash
    assert runs.trial("probe.tiny.y", 4, params).config_hash != trial.config_hash


def test_a_sweeps_layers_are_checked_against_its_experiment_only(tmp_path):
    path = _write(tmp_path, TEXT + GOOD.replace("train = { steps = 20 }\n", ""))
    runs = TrialRuns(path, load_sweep(path, "probe"), "tiny", (), {TINY_PREFIX: tmp_path})
    params = {"train.optim.lr": 1e-3, "train.optim.warmup_steps": 100, "aligner.layers": 1}
    # 100 warm-up steps fit aligner-12's 150 tiny steps, though not the tiny e2e runs' 60.
    assert runs.trial("probe.tiny.x", 0, params).config.train.optim.warmup_steps == 100
    with pytest.raises(ConfigError, match="200 warm-up steps exceed train.steps 150"):
        runs.trial("probe.tiny.x", 0, {**params, "train.optim.warmup_steps": 200})


def test_a_sweep_of_multi_rank_trials_is_rejected_before_anything_runs(tmp_path, capsys):
    (tmp_path / "experiments.toml").write_text(TEXT)
    command = ["--workdir", str(tmp_path), "sweep", "align-lr", "--set", "launch.cpu_tasks_per_node=2"]
    assert main(command) == 2
    assert "launch: a trial runs as one rank, not 2" in capsys.readouterr().err
    assert not (tmp_path / ".cache").exists()  # stopped before building the tiny tier's assets


def test_a_space_the_base_config_cannot_take_is_rejected_before_any_trial(tmp_path, capsys):
    """The example's warm-up range reaches 50 steps; with 30 training steps its upper end is no
    valid run, and the sweep says so naming both keys instead of failing trials one by one."""
    (tmp_path / "experiments.toml").write_text(TEXT)
    assert main(["--workdir", str(tmp_path), "sweep", "align-lr", "--set", "train.steps=30"]) == 2
    error = capsys.readouterr().err
    assert "space.train.optim.warmup_steps: 50 is a value of the space" in error
    assert "50 warm-up steps exceed train.steps 30" in error
    assert "train.optim.lr" not in error and "train.rec_weight" not in error  # their ranges fit
    assert not (tmp_path / "optuna.journal").exists() and not (tmp_path / ".cache").exists()


def test_every_choice_is_checked_too(tmp_path):
    path = _write(tmp_path, TEXT + GOOD.replace("choices = [1, 2]", "choices = [1, 0]"))
    runs = TrialRuns(path, load_sweep(path, "probe"), "tiny", (), {TINY_PREFIX: tmp_path})
    with pytest.raises(ConfigError, match=r"space.aligner.layers: 0 is a value of the space, but "
                                          r".*aligner.layers: must be >= 1"):
        runs.check_space()
    path = _write(tmp_path, TEXT + GOOD)
    # Every end fits.
    TrialRuns(path, load_sweep(path, "probe"), "tiny", (), {TINY_PREFIX: tmp_path}).check_space()
