"""The tiny tier's FID feature extractors: random Inception weights in torch-fidelity's format,
and a small random conv net registered with torch-fidelity for fast unit tests."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

TINY_EXTRACTOR = "tiny-random-conv"


def save_random_inception(path: Path, seed: int = 0) -> Path:
    """A state dict for torch-fidelity's Inception (its `feature_extractor_weights_path` format)
    with kaiming-initialised convolutions: an offline stand-in for the real weights whose FID
    still separates distributions (default-initialised weights collapse the features to ~0 FID)."""
    # Imported here: only the tiny tier needs torchvision's copy of the architecture, whose
    # parameter names match torch-fidelity's FeatureExtractorInceptionV3.
    from torchvision.models import inception_v3

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the throwaway default init must not move the global RNG
        model = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


class TinyFeatureExtractor(FeatureExtractorBase):
    """A fixed random three-layer conv net with a 64-d pooled feature: for unit tests, where
    Inception at 299px (~0.2-0.3 s per image on this CPU) is too slow. Its numbers are not FID."""

    FEATURE = "64"

    def __init__(self, name: str, features_list: list[str], **kwargs: object) -> None:
        # torch-fidelity hands every calculate_metrics argument to the constructor; none apply.
        super().__init__(name, features_list)
        generator = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        for module in self.net:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = F.interpolate(x.float(), size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return (self.net((x - 128) / 128),)

    @staticmethod
    def get_provided_features_list() -> tuple[str]:
        return (TinyFeatureExtractor.FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return TinyFeatureExtractor.FEATURE

    @staticmethod
    def can_be_compiled() -> bool:
        return False


def register_tiny_extractor() -> None:
    """Makes `fid.feature_extractor = "tiny-random-conv"` known to torch-fidelity."""
    if TINY_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:  # the registry refuses a second registration
        torch_fidelity.register_feature_extractor(TINY_EXTRACTOR, TinyFeatureExtractor)
