"""One entry point per run: train with the configured recipe, then evaluate."""

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
from experiments.seeding import seed_everything
from experiments.tracking import Tracker
from experiments.train import train
from models import ClipTextTarget, ImageDecoder, KosmosGConditioner

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RecipeResult:
    metrics: dict[str, float]
    failure: str | None = None  # why the run counts as failed (diverged), if it does


def run_recipe(
    config: RunConfig, run_dir: Path, cache_dir: Path, tracker: Tracker, *, progress: bool
) -> RecipeResult:
    seed_everything(config.seed)
    device = pick_device()
    metrics: dict[str, float] = {}
    if config.recipe == "baseline":
        text_encoder = frozen(ClipTextTarget.from_pretrained(config.models.stable_diffusion), device)
        conditioner = ClipConditioner(text_encoder)
        decoder = None
        metrics["compute/device_hours"] = 0.0  # nothing to train
    else:
        # The align recipe's encoder-output cache lives beside the FID cache so that every
        # ablation row reading the same frozen encoders shares it.
        objective = (
            AlignObjective(config, cache_dir=cache_dir) if config.recipe == "align" else E2EObjective(config)
        )
        metrics["data/dropped_captions"] = float(objective.dropped_captions)
        outcome = train(objective, config.train, run_dir, tracker, progress=progress)
        metrics["compute/train_seconds"] = outcome.train_seconds
        metrics["compute/device_hours"] = outcome.train_seconds / 3600.0
        if outcome.failure is not None:
            log.warning("run failed: %s", outcome.failure)
            tracker.log_metrics(metrics, step=outcome.steps)
            return RecipeResult(metrics, failure=outcome.failure)
        conditioner = KosmosGConditioner(objective.mllm, objective.trainable).eval()
        decoder = getattr(objective, "decoder", None)
    if decoder is None:
        decoder = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), device)
    metrics.update(evaluate_fid(
        conditioner, decoder, config.fid, seed=config.seed, run_dir=run_dir,
        cache_dir=cache_dir, progress=progress,
    ))
    tracker.log_metrics(metrics, step=config.train.steps if config.recipe != "baseline" else 0)
    grid = run_dir / "samples" / "grid.png"
    tracker.log_artifact(grid, "samples")
    return RecipeResult(metrics)
