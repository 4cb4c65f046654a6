"""Table 1's "Real images" row: DreamBench's real photos of each subject scored against each
other, the ceiling a generator's DINO and CLIP-I can reach. No model is built or trained."""

from __future__ import annotations

from experiments.config import RunConfig
from experiments.evaluation.dreambench_scores import dreambench_oracle


def oracle_metrics(config: RunConfig) -> dict[str, float]:
    return dreambench_oracle(config.dreambench)
