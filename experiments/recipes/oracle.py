"""Table 1's "Real images" row: DreamBench's real photos of each subject scored against each
other, the ceiling a generator's DINO and CLIP-I can reach. No model is built or trained."""

from __future__ import annotations

from pathlib import Path

from experiments.config import RunConfig
from experiments.evaluation.dreambench_scores import dreambench_oracle
from experiments.recipes.registry import Scores


def build(config: RunConfig, cache_dir: Path | None) -> Scores:
    return Scores(oracle_metrics)


def oracle_metrics(config: RunConfig) -> dict[str, float]:
    return dreambench_oracle(config.dreambench)
