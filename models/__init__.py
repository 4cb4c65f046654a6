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
    from models.aligner import Aligner, alignment_losses, build_aligner
    from models.aligner_config import ALIGNER_KINDS
    from models.aligner_official import official_state_dict_to_ours
    from models.conditioning import KosmosGConditioner
    from models.image_decoder import SAMPLERS, ImageDecoder
    from models.mllm import MLLMEncoder, MLLMInputs
    from models.text_target import ClipTextTarget


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
