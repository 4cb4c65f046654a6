"""A recipe is one registry entry: a throwaway one, declared here alone, goes through
validation, `repro plan` and `repro run` like the paper's recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.config import AlignerConfig, DataConfig, FidConfig, ModelSources, RunConfig, TrainConfig
from experiments.data.batches import WHOLE, Part
from experiments.recipes.registry import RECIPES, Recipe, Trains, build_recipe, recipe_named
from experiments.training.objective import Objective
from tests.support.workdirs import child_runs, new_workdir, repro

TOY_EXPERIMENT = """
[[experiment]]
name = "toy-regression"
table = "table2"
row = "Toy regression"
recipe = "toy"
paper = "Failed"
"""


class ToyObjective(Objective):
    """Fits y = 3x: no model files, no data files, nothing to sample."""

    def __init__(self, config: RunConfig, cache_dir: Path | None = None) -> None:
        super().__init__(config, cache_dir)
        self.device = torch.device("cpu")
        self.trainable = nn.Linear(1, 1)

    def items(self, step: int, part: Part = WHOLE) -> torch.Tensor:
        return torch.randn(8, 1, generator=torch.Generator().manual_seed(step))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": ((self.trainable(x) - 3 * x) ** 2).mean()}

    def heldout(self) -> dict[str, float]:
        return {"mse": self.loss(self.batch(-1))["loss"].item()}


def build_toy(config: RunConfig, cache_dir: Path | None) -> Trains:
    return Trains(ToyObjective(config, cache_dir))


@pytest.fixture
def toy_recipe(monkeypatch) -> Recipe:
    recipe = Recipe("toy", "a one-weight regression", f"{__name__}:build_toy", generates=False)
    monkeypatch.setitem(RECIPES, recipe.name, recipe)
    return recipe


def test_an_unregistered_recipe_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match="unknown recipe 'toy'; registered: align, e2e"):
        recipe_named("toy")


def test_a_registered_recipe_plans_and_runs_through_the_harness(toy_recipe, tmp_path, capsys):
    workdir = new_workdir(tmp_path / "work")
    config = workdir / "experiments.toml"
    config.write_text(config.read_text() + TOY_EXPERIMENT)
    options = ["--tier", "tiny", "--only", "toy-regression", "--seeds", "0", "--set", "train.steps=30",
               "--set", "train.optim.lr=0.5"]

    assert repro(workdir, "plan", *options) == 0
    plan = capsys.readouterr().out
    assert "toy-regression" in plan and " toy " in plan and "1 runs from 1 experiments" in plan

    assert repro(workdir, "run", *options, "--executor", "debug", "--no-report") == 0
    client, runs = child_runs(workdir)
    (run,) = runs
    assert run.info.status == "FINISHED"
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert losses[-1] < 0.1 * losses[0]
    assert "eval/fid" not in run.data.metrics  # a recipe that generates nothing is not scored


def test_a_build_step_that_builds_what_its_entry_does_not_declare_is_refused(monkeypatch):
    recipe = Recipe("toy", "declared as scoring without a model", f"{__name__}:build_toy", trains=False,
                    generates=False)
    monkeypatch.setitem(RECIPES, recipe.name, recipe)
    config = RunConfig("toy", ModelSources("", ""), AlignerConfig(), TrainConfig(), DataConfig("", ""),
                       FidConfig("", ""))
    with pytest.raises(TypeError, match="recipe 'toy': .*build_toy built a Trains.* declares a Scores"):
        build_recipe(config, None)
