"""A released checkpoint's `model` dict split by the official module each key belongs to."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from experiments.released.mllm_keys import MLLM_PREFIXES


class Part(enum.Enum):
    MLLM = MLLM_PREFIXES
    ALIGNER = ("aligner.",)
    UNET = ("diffusion_unet.unet.",)  # diffusers' UNet2DConditionModel under the official wrapper
    VAE = ("vae.vae.",)  # diffusers' AutoencoderKL likewise


def split_parts(model_state: Mapping[str, Tensor], source: Path) -> dict[Part, dict[str, Tensor]]:
    """Each part's keys (full official names); a key under no part's prefix is an error naming it."""
    parts: dict[Part, dict[str, Tensor]] = {part: {} for part in Part}
    unknown = []
    for key, value in model_state.items():
        part = next((part for part in Part if key.startswith(part.value)), None)
        if part is None:
            unknown.append(key)
        else:
            parts[part][key] = value
    if unknown:
        known = ", ".join(p for part in Part for p in part.value)
        raise KeyError(f"{source}: keys of no Kosmos-G module ({known}): "
                       f"{', '.join(sorted(unknown))}")
    return parts
