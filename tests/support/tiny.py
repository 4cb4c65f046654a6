"""Tiny-tier run configs for unit tests, resolved from the project's experiments.toml exactly as
`repro run --tier tiny` resolves them, then shrunk with `--set` overrides to a few seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from experiments.config import DreamBenchConfig, RunConfig
from repro.config import load_matrix
from tests.support.full_tier import EXPERIMENTS

# A unit test's run: a 2-layer aligner, 40 steps, no encoder cache unless asked, a quick FID on
# the tiny feature extractor.
QUICK: dict[str, object] = {
    "aligner.layers": 2,
    "train.steps": 40,
    "train.optim.warmup_steps": 4,
    "train.eval_every": 20,
    "train.checkpoint_every": 20,
    "train.cache_encoder_outputs": False,
    "fid.num_captions": 8,
    "fid.steps": 2,
    "fid.batch_size": 8,
    "fid.feature_extractor": "tiny-random-conv",
}


def tiny_config(
    assets: Path, experiment: str, sets: dict[str, object] | None = None, **train: object
) -> RunConfig:
    """Seed 0's run of `experiment` on the tiny tier built in `assets`, with QUICK, then `sets`
    (dotted keys), then `train` (train.* fields) applied, each checked as `--set` checks it."""
    values = {**QUICK, **(sets or {}), **{f"train.{key}": value for key, value in train.items()}}
    matrix = load_matrix(EXPERIMENTS, "tiny", only=experiment, seeds=[0], tiny_assets=assets, env={},
                         overrides=[f"{key}={_toml(value)}" for key, value in values.items()])
    (run,) = [run for run in matrix.runs if run.experiment == experiment]
    return run.config


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else repr(value)


def stage3_config(
    assets: Path, stage2_dir: Path, sets: dict[str, object] | None = None, **train_values
) -> RunConfig:
    """A short stage-3 run from the stage-2 run in `stage2_dir`, with a DreamBench of one subject;
    `sets` and `train_values` as tiny_config takes them."""
    values = dict(steps=6, batch_size=5, log_every=1, eval_every=3, checkpoint_every=3,
                  init_from=str(stage2_dir))
    values.update(train_values)
    config = tiny_config(assets, "kosmos-g", sets, **values)
    bench = replace(config.dreambench, subjects=("dog",), templates=(0, 20), steps=2, images_per_prompt=2,
                    batch_size=4)
    return replace(config, dreambench=bench)


def tiny_dreambench(assets: Path, **values: object) -> DreamBenchConfig:
    """The tiny tier's DreamBench section (Table 1's Kosmos-G row), 2 sampler steps and 2 images
    per prompt, `values` replaced."""
    tier = tiny_config(assets, "kosmos-g").dreambench
    return replace(tier, **{"steps": 2, "images_per_prompt": 2, **values})
