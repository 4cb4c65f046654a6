"""A finished stage-2 run's directory, made in-process, as the harness leaves it: checkpoints
and the config.json that `repro generate`, stage 3 and `repro export` read."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from experiments.recipes.run import RecipeResult, run_recipe
from experiments.training.tracker import RecordingTracker
from tests.support.tiny import tiny_config


def finished_stage2(assets: Path, run_dir: Path) -> Path:
    """A 4-step tiny aligner-12 run without FID, its one checkpoint at step 4."""
    return trained_stage2(assets, run_dir)[0]


def trained_stage2(assets: Path, run_dir: Path) -> tuple[Path, RecipeResult]:
    """finished_stage2's run, with its result (which holds the conditioner it trained)."""
    config = tiny_config(assets, "aligner-12", steps=4, checkpoint_every=4, eval_every=4)
    config = replace(config, fid=replace(config.fid, enabled=False))
    result = run_recipe(config, run_dir, run_dir / "cache", RecordingTracker(), progress=False)
    (run_dir / "config.json").write_text(json.dumps({"config": asdict(config)}))
    return run_dir, result
