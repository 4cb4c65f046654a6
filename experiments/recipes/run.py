"""One entry point per run: seed everything, build what the config's recipe names (registry.py),
train it if it trains, then run the evaluations the config turns on (MS-COCO FID, DreamBench).
The result carries the trained conditioner, which the job exports from memory."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from experiments.config import RunConfig
from experiments.evaluation.fid import evaluate_fid, fid_tags
from experiments.recipes.modules import sampling_models
from experiments.recipes.registry import (
    Generates,
    Scores,
    Trains,
    build_recipe,
    evaluation_applies,
    recipe_named,
)
from experiments.training.loop import train
from experiments.training.tracker import DataInput, Tracker
from models import KosmosGConditioner

log = logging.getLogger(__name__)


# Counts the evaluations return that the config fixes (images made): params, not metrics.
_EVALUATION_COUNTS = ("eval/num_images", "eval/dreambench_images")


@dataclass(frozen=True)
class RecipeResult:
    metrics: dict[str, float]
    failure: str | None = None  # why the run counts as failed (diverged), if it does
    params: dict[str, int] = field(default_factory=dict)  # what the evaluations counted
    # The conditioner a finished run trained, in memory, for its export; None when it trained none.
    trained: KosmosGConditioner | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def run_recipe(
    config: RunConfig, run_dir: Path, cache_dir: Path, tracker: Tracker, *, progress: bool
) -> RecipeResult:
    seed_everything(config.seed)
    # The cache dir is shared by every run of the work dir: rows reading the same frozen
    # encoders reuse each other's encoder outputs, as they reuse FID reference statistics.
    built = build_recipe(config, cache_dir)
    if isinstance(built, Scores):
        scores = built.score(config)
        tracker.log_metrics(scores, step=0)
        return RecipeResult(scores)

    metrics: dict[str, float] = {}
    step = 0
    if isinstance(built, Generates):
        metrics["compute/device_hours"] = metrics["compute/train_flops"] = 0.0  # nothing to train
    else:
        objective = built.objective
        tracker.log_inputs(objective.data_inputs())
        outcome = train(objective, config.train, run_dir, tracker, progress=progress)
        # What the objective set aside, on load and while streaming, by reason: never silently lost.
        metrics.update({f"data/{reason}": float(n) for reason, n in objective.data_counts().items()})
        step = outcome.steps
        metrics["compute/train_seconds"] = outcome.train_seconds
        metrics["compute/device_hours"] = outcome.train_seconds / 3600.0
        step_flops = objective.nominal_step_flops()
        if step_flops is not None:
            # Counted, not timed: runs at equal compute by construction (Table 2's E2E rows) show so.
            metrics["compute/step_flops"] = float(step_flops)
            metrics["compute/train_flops"] = float(step_flops) * outcome.steps
        if outcome.failure is not None:
            log.warning("run failed: %s", outcome.failure)
            tracker.log_metrics(metrics, step=step)
            return RecipeResult(metrics, failure=outcome.failure)
        if not recipe_named(config.recipe).generates:
            tracker.log_metrics(metrics, step=step)
            return RecipeResult(metrics)
    models = sampling_models(built, config)
    conditioner, decoder = models.conditioner, models.decoder
    trained = built.objective.conditioner if isinstance(built, Trains) else None

    if evaluation_applies(config, "fid"):
        tracker.set_tags(fid_tags(config.fid))
        metrics.update(evaluate_fid(
            conditioner, decoder, config.fid, seed=config.seed, run_dir=run_dir,
            cache_dir=cache_dir, progress=progress,
        ))
        if "eval/num_images" in metrics:  # rank 0, which scored them
            tracker.log_inputs([DataInput("fid.captions", "evaluation", config.fid.captions,
                                          int(metrics["eval/num_images"]))])
        grid = run_dir / "samples" / "grid.png"
        if grid.is_file():  # rank 0 alone draws it
            tracker.log_artifact(grid, "samples")
    if evaluation_applies(config, "dreambench"):
        # Imported here: only Table 1's runs load the DINO and CLIP scorers.
        from experiments.evaluation.dreambench_scores import (
            dreambench_sheets,
            evaluate_dreambench,
        )

        # Typed as FID's conditioner; the rules (repro.config.rules) turn DreamBench on only for
        # recipes whose conditioner takes images (Recipe.takes_images).
        metrics.update(evaluate_dreambench(
            conditioner,  # type: ignore[arg-type]
            decoder, config.dreambench, seed=config.seed, run_dir=run_dir, progress=progress,
        ))
        for sheet in dreambench_sheets(run_dir):
            tracker.log_artifact(sheet, "dreambench")
    params = {key: int(metrics.pop(key)) for key in _EVALUATION_COUNTS if key in metrics}
    tracker.log_params(params)
    tracker.log_metrics(metrics, step=step)
    return RecipeResult(metrics, params=params, trained=trained)
