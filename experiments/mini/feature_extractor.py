"""The attribute classifier's penultimate features as a torch-fidelity feature extractor, so that
FID on the mini world measures distances in a space that knows the world's attributes (Inception's
features of 32-px shapes say little). `feature_extractor_weights_path` names the classifier's
weights file, which is what fid.py hashes into its reference-statistics cache key."""

from __future__ import annotations

from pathlib import Path

import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from experiments.mini.attribute_classifier import load_classifier

MINI_EXTRACTOR = "mini-attribute-classifier"


class MiniFeatureExtractor(FeatureExtractorBase):
    FEATURE = "penultimate"

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: object,
    ) -> None:
        # torch-fidelity hands every calculate_metrics argument to the constructor; only the weights apply.
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(
                f"the {MINI_EXTRACTOR!r} FID feature extractor needs feature_extractor_weights_path: "
                "the attribute classifier's weights file"
            )
        self.classifier = load_classifier(Path(feature_extractor_weights_path))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.classifier.embed(x),)

    @staticmethod
    def get_provided_features_list() -> tuple[str]:
        return (MiniFeatureExtractor.FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return MiniFeatureExtractor.FEATURE

    @staticmethod
    def can_be_compiled() -> bool:
        return False


def register_mini_extractor() -> None:
    """Makes `fid.feature_extractor = "mini-attribute-classifier"` known to torch-fidelity."""
    if MINI_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:  # the registry refuses a second registration
        torch_fidelity.register_feature_extractor(MINI_EXTRACTOR, MiniFeatureExtractor)
