"""Every recipe, declared once: what it does, what it reads, and where its code lives.

Validation, path resolution, `repro plan`, generation and the runner all read this table, so a
new recipe is one file in this package plus one `register(...)` here (or from a plugin or a
test). It imports no torch: `repro --help` and `repro plan` read it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """One way of making a run. `entry` ("module:attribute") is imported only when a run uses it:
    - a recipe that trains: an `Objective` subclass, built as `entry(config, cache_dir)`;
    - one that only generates: `entry(config, device)` -> (conditioner, decoder);
    - one that does neither: `entry(config)` -> its metrics.
    """

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
    # Config paths its models and data come from; FID and DreamBench inputs are added by the
    # evaluations a config turns on. "train.init_from" in here: it starts from another run.
    reads: frozenset[str] = frozenset()
    # Config paths it reads when they are set (image folders beside caption files, which image
    # shards do without): checked then, left out of the run's id otherwise.
    may_read: frozenset[str] = frozenset()

    def load(self) -> Callable[..., Any]:
        module, attribute = self.entry.split(":")
        return getattr(import_module(module), attribute)

    @property
    def starts_from_run(self) -> bool:
        return "train.init_from" in self.reads


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


_SD = "models.stable_diffusion"

register(Recipe(
    "align", "stage 2: AlignerNet learns the frozen MLLM -> CLIP text mapping (L_mse + L_rec)",
    "experiments.recipes.align:AlignObjective",
    reads=frozenset({"models.mllm", _SD, "data.train", "data.heldout"}),
))
register(Recipe(
    "e2e", "Table 2's E2E rows: the alignment trained with the diffusion loss through the U-Net",
    "experiments.recipes.e2e:E2EObjective",
    reads=frozenset({"models.mllm", _SD, "data.train", "data.heldout"}),
    may_read=frozenset({"data.train_images", "data.heldout_images"}),
))
register(Recipe(
    "instruct", "stage 3: MLLM and M instruction-tuned on compositional, edit and caption rows",
    "experiments.recipes.instruct:InstructObjective", trains_mllm=True,
    reads=frozenset({"models.mllm", _SD, "data.heldout", "data.compositional", "data.edits",
                     "data.captioned", "train.init_from"}),
    may_read=frozenset({"data.heldout_images"}),
))
register(Recipe(
    "baseline", "SD v1.5 with its own CLIP text encoder: nothing to train",
    "experiments.recipes.baseline:baseline_model", trains=False, takes_images=False,
    reads=frozenset({_SD}),
))
register(Recipe(
    "oracle", "DreamBench's real photos of a subject scored against each other: no model",
    "experiments.recipes.oracle:oracle_metrics", trains=False, generates=False, takes_images=False,
    reads=frozenset({"dreambench.root", "dreambench.prompts", "dreambench.dino", "dreambench.clip"}),
))
