"""Model code shared by every recipe: plain torch / transformers / diffusers, no harness imports.

The public names are re-exported lazily (PEP 562): `import models.aligner` alone should not pay
for importing diffusers and transformers, which takes seconds on a CPU box.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "MLLMEncoder": "models.mllm",
    "MLLMInputs": "models.mllm",
    "ALIGNER_KINDS": "models.aligner_config",
    "Aligner": "models.aligner",
    "alignment_losses": "models.aligner",
    "build_aligner": "models.aligner",
    "official_state_dict_to_ours": "models.aligner_official",
    "ClipTextTarget": "models.text_target",
    "ImageDecoder": "models.image_decoder",
    "SAMPLERS": "models.image_decoder",
    "KosmosGConditioner": "models.conditioning",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    # `import X as X` marks a re-export for ruff and mypy, which cannot read the computed `__all__`.
    from models.aligner import Aligner as Aligner
    from models.aligner import alignment_losses as alignment_losses
    from models.aligner import build_aligner as build_aligner
    from models.aligner_config import ALIGNER_KINDS as ALIGNER_KINDS
    from models.aligner_official import official_state_dict_to_ours as official_state_dict_to_ours
    from models.conditioning import KosmosGConditioner as KosmosGConditioner
    from models.image_decoder import SAMPLERS as SAMPLERS
    from models.image_decoder import ImageDecoder as ImageDecoder
    from models.mllm import MLLMEncoder as MLLMEncoder
    from models.mllm import MLLMInputs as MLLMInputs
    from models.text_target import ClipTextTarget as ClipTextTarget


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
