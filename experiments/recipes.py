"""One entry point per run: train with the configured recipe, then run the evaluations it asks
for (MS-COCO FID, DreamBench).

Recipes: `align` (stage 2), `e2e` (Table 2's end-to-end rows), `instruct` (stage 3, from an
aligned run), `baseline` (SD v1.5 with its own text encoder, nothing to train) and `oracle`
(DreamBench's real photos compared with each other, no model at all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from experiments.align import AlignObjective
from experiments.baseline import ClipConditioner
from experiments.components import frozen, pick_device
from experiments.config import RunConfig
from experiments.e2e import E2EObjective
from experiments.evaluate import evaluate_fid
from experiments.instruct import InstructObjective
from experiments.seeding import seed_everything
from experiments.tracking import Tracker
from experiments.train import Objective, train
from models import ClipTextTarget, ImageDecoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecipeResult:
    metrics: dict[str, float]
    failure: str | None = None  # why the run counts as failed (diverged), if it does


def run_recipe(
    config: RunConfig, run_dir: Path, cache_dir: Path, tracker: Tracker, *, progress: bool
) -> RecipeResult:
    seed_everything(config.seed)
    if config.recipe == "oracle":
        from experiments.dreambench_eval import dreambench_oracle

        metrics = dreambench_oracle(config.dreambench)
        tracker.log_metrics(metrics, step=0)
        return RecipeResult(metrics)

    device = pick_device()
    metrics: dict[str, float] = {}
    step = 0
    if config.recipe == "baseline":
        text_encoder = frozen(ClipTextTarget.from_pretrained(config.models.stable_diffusion), device)
        conditioner = ClipConditioner(text_encoder)
        decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), device)
        metrics["compute/device_hours"] = 0.0  # nothing to train
    else:
        objective = _objective(config, cache_dir)
        metrics.update(_data_counts(objective))
        outcome = train(objective, config.train, run_dir, tracker, progress=progress)
        step = outcome.steps
        metrics["compute/train_seconds"] = outcome.train_seconds
        metrics["compute/device_hours"] = outcome.train_seconds / 3600.0
        if outcome.failure is not None:
            log.warning("run failed: %s", outcome.failure)
            tracker.log_metrics(metrics, step=step)
            return RecipeResult(metrics, failure=outcome.failure)
        conditioner = objective.conditioner.eval()  # the trained MLLM + M
        decoder = getattr(objective, "decoder", None)
        if decoder is None:
            decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), device)

    if config.fid.enabled:
        metrics.update(evaluate_fid(
            conditioner, decoder, config.fid, seed=config.seed, run_dir=run_dir,
            cache_dir=cache_dir, progress=progress,
        ))
        grid = run_dir / "samples" / "grid.png"
        if grid.is_file():  # rank 0 alone draws it
            tracker.log_artifact(grid, "samples")
    if config.dreambench.enabled:
        # Imported here: only Table 1's runs load the DINO and CLIP scorers.
        from experiments.dreambench_eval import dreambench_sheets, evaluate_dreambench

        metrics.update(evaluate_dreambench(
            conditioner, decoder, config.dreambench, seed=config.seed, run_dir=run_dir, progress=progress,
        ))
        for sheet in dreambench_sheets(run_dir):
            tracker.log_artifact(sheet, "dreambench")
    tracker.log_metrics(metrics, step=step)
    return RecipeResult(metrics)


def _objective(config: RunConfig, cache_dir: Path) -> Objective:
    if config.recipe == "align":
        # The encoder-output cache lives beside the FID cache so that every ablation row
        # reading the same frozen encoders shares it.
        return AlignObjective(config, cache_dir=cache_dir)
    if config.recipe == "e2e":
        return E2EObjective(config)
    return InstructObjective(config)


def _data_counts(objective: Objective) -> dict[str, float]:
    """How much data the recipe set aside on load, by reason: logged, never silently lost."""
    counts = {"data/dropped_captions": float(getattr(objective, "dropped_captions", 0))}
    for reason, count in getattr(objective, "skipped_rows", {}).items():
        counts[f"data/skipped_{reason}"] = float(count)
    return counts
