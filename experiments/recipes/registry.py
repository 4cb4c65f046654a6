"""Every recipe, declared once: what it does, what it reads, and the one build step its module
implements.

Validation, path resolution, `repro plan`, generation, the runner and the preflight all read
this table, so a new recipe is one file in this package plus one `register(...)` here (or from a
plugin or a test). It imports no torch: `repro --help` and `repro plan` read it too.

A recipe's build step is `build(config, cache_dir) -> Built`, and what it built says what a run
does with it: train an objective and sample with what it trained (Trains), sample with models as
they are (Generates), or score without a model (Scores). cache_dir is the work dir's shared
cache (encoder outputs, FID statistics), which rows reading the same frozen encoders share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.config import Evaluation, RunConfig

if TYPE_CHECKING:
    from experiments.evaluation.fid import Conditioner
    from experiments.training.objective import Objective
    from models import ImageDecoder


@dataclass(frozen=True)
class Recipe:
    """One way of making a run. `entry` ("module:attribute") is its build step, imported only when
    a run uses it; it returns the Built that `trains` and `generates` declare: Trains, Generates
    (generates alone) or Scores (neither)."""

    name: str
    summary: str
    entry: str
    trains: bool = True
    # Samples images with a conditioner, so the FID (and, when on, DreamBench) evaluations apply.
    generates: bool = True
    # Its conditioner takes images inside a prompt, which every DreamBench prompt carries.
    takes_images: bool = True
    # Its checkpoints hold the MLLM beside the aligner (stage 3), not the aligner alone.
    trains_mllm: bool = False
    # It evaluates weights someone else published, not what this harness trained: the report
    # says so in place of "reproduced".
    published_weights: bool = False
    # Config paths its models and data come from; FID and DreamBench inputs are added by the
    # evaluations a config turns on. "train.init_from" in here: it starts from another run.
    reads: frozenset[str] = frozenset()
    # Config paths it reads when they are set (image folders beside caption files, which image
    # shards do without): checked then, left out of the run's id otherwise.
    may_read: frozenset[str] = frozenset()

    def load(self) -> Callable[[RunConfig, Path | None], Built]:
        module, attribute = self.entry.split(":")
        return getattr(import_module(module), attribute)

    @property
    def starts_from_run(self) -> bool:
        return "train.init_from" in self.reads


@dataclass(frozen=True)
class Trains:
    """An objective for the training loop; its conditioner (and decoder, where it trains through
    one) sample once it is trained."""

    objective: Objective


@dataclass(frozen=True)
class Generates:
    """A conditioner and a decoder, frozen, that sample as they are: nothing to train."""

    conditioner: Conditioner
    decoder: ImageDecoder


@dataclass(frozen=True)
class Scores:
    """No model: `score` computes the run's metrics from the config's evaluation inputs (the
    preflight scores a shrunken config through it)."""

    score: Callable[[RunConfig], dict[str, float]]


Built = Trains | Generates | Scores

RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


def recipe_named(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; registered: {', '.join(RECIPES)}") from None


def build_recipe(config: RunConfig, cache_dir: Path | None) -> Built:
    """What the config's recipe builds, checked against what its entry here declares: repro/
    reads the declaration without building anything, so the two must agree."""
    recipe = recipe_named(config.recipe)
    built = recipe.load()(config, cache_dir)
    declared = Trains if recipe.trains else Generates if recipe.generates else Scores
    if not isinstance(built, declared):
        raise TypeError(f"recipe {recipe.name!r}: {recipe.entry} built a {type(built).__name__}, but its "
                        f"registry entry (trains={recipe.trains}, generates={recipe.generates}) declares "
                        f"a {declared.__name__}")
    return built


def evaluation_applies(config: RunConfig, evaluation: Evaluation) -> bool:
    """An evaluation scores a run when its recipe samples images and the config turns it on."""
    return recipe_named(config.recipe).generates and getattr(config, evaluation).enabled


_SD = "models.stable_diffusion"

register(Recipe(
    "align", "stage 2: AlignerNet learns the frozen MLLM -> CLIP text mapping (L_mse + L_rec)",
    "experiments.recipes.align:build",
    reads=frozenset({"models.mllm", _SD, "data.train", "data.heldout"}),
))
register(Recipe(
    "e2e", "Table 2's E2E rows: the alignment trained with the diffusion loss through the U-Net",
    "experiments.recipes.e2e:build",
    reads=frozenset({"models.mllm", _SD, "data.train", "data.heldout"}),
    may_read=frozenset({"data.train_images", "data.heldout_images"}),
))
register(Recipe(
    "instruct", "stage 3: MLLM and M instruction-tuned on compositional, edit and caption rows",
    "experiments.recipes.instruct:build", trains_mllm=True,
    reads=frozenset({"models.mllm", _SD, "data.heldout", "data.compositional", "data.edits",
                     "data.captioned", "train.init_from"}),
    may_read=frozenset({"data.heldout_images"}),
))
register(Recipe(
    "baseline", "SD v1.5 with its own CLIP text encoder: nothing to train",
    "experiments.recipes.baseline:build", trains=False, takes_images=False,
    reads=frozenset({_SD}),
))
register(Recipe(
    "oracle", "DreamBench's real photos of a subject scored against each other: no model",
    "experiments.recipes.oracle:build", trains=False, generates=False, takes_images=False,
    reads=frozenset({"dreambench.root", "dreambench.prompts", "dreambench.dino", "dreambench.clip"}),
))
register(Recipe(
    "released", "a released Kosmos-G checkpoint, as `repro import stage2|final` wrote it: nothing to train",
    "experiments.recipes.released:build", trains=False, published_weights=True,
    reads=frozenset({"models.released", _SD}),
))
