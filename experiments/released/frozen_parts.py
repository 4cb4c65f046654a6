"""The frozen Stable Diffusion parts a released checkpoint may carry, checked against the SD
v1.5 folder the harness is given rather than copied: Kosmos-G never trains them, so a file
whose U-Net, VAE or CLIP text encoder differs from that folder's was made for another one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from experiments.released.checkpoint_parts import Part


@dataclass(frozen=True)
class FrozenPart:
    prefix: str  # the official module's keys
    subfolder: str  # its diffusers / transformers folder in the SD checkpoint
    renames: tuple[tuple[str, str], ...] = ()  # (pattern, replacement): older names of the same weight
    ignored: str | None = None  # a pattern of keys an older library saved but the folder does not hold


FROZEN_PARTS: tuple[FrozenPart, ...] = (
    FrozenPart(Part.UNET.value[0], "unet"),
    # Older diffusers (its deprecated AttentionBlock) named the VAE's attention query/key/value/proj_attn.
    FrozenPart(Part.VAE.value[0], "vae", renames=((r"\.query\.", ".to_q."), (r"\.key\.", ".to_k."),
                                                  (r"\.value\.", ".to_v."),
                                                  (r"\.proj_attn\.", ".to_out.0."))),
    # transformers before 4.31 saved the position ids, a buffer of 0..76.
    FrozenPart(f"{Part.ALIGNER.value[0]}clip_encoder.", "text_encoder",
               ignored=r"text_model\.embeddings\.position_ids"),
)


def _folder_weights(folder: Path) -> dict[str, Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights to check the released file's against")
    return {key: value for file in files for key, value in load_file(file).items()}


def check_frozen_part(part: FrozenPart, official: Mapping[str, Tensor], stable_diffusion: Path) -> list[str]:
    """Compares the official keys under part.prefix with the SD folder's; returns the keys it
    ignored. Differences are errors naming the keys: missing, extra, or other values (the folder's
    weights rounded to the file's dtype)."""
    theirs: dict[str, Tensor] = {}
    ignored = []
    for key, value in official.items():
        name = key[len(part.prefix):]
        if part.ignored and re.fullmatch(part.ignored, name):
            ignored.append(key)
            continue
        for pattern, replacement in part.renames:
            name = re.sub(pattern, replacement, name)
        theirs[name] = value
    ours = _folder_weights(Path(stable_diffusion) / part.subfolder)
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra:
        raise KeyError(f"{part.prefix}* against {stable_diffusion}/{part.subfolder}: "
                       f"missing {missing[:5] or 'none'}, "
                       f"not in the folder {extra[:5] or 'none'} ({len(missing)} and {len(extra)} keys)")
    differ = [key for key, value in theirs.items()
              if value.shape != ours[key].shape or not torch.equal(value, ours[key].to(value.dtype))]
    if differ:
        raise ValueError(f"{part.prefix}* differs from {stable_diffusion}/{part.subfolder} "
                         f"at {len(differ)} keys "
                         f"({', '.join(differ[:5])}): the file was made with another Stable Diffusion")
    return ignored


def check_frozen_parts(model_state: Mapping[str, Tensor], stable_diffusion: Path | None) -> dict[str, str]:
    """Every frozen part the file carries checked; returns its keys, each with why it is dropped."""
    dropped: dict[str, str] = {}
    for part in FROZEN_PARTS:
        keys = {key: value for key, value in model_state.items() if key.startswith(part.prefix)}
        if not keys:
            continue
        if stable_diffusion is None:
            raise ValueError(f"the file carries {part.prefix}* weights: give the SD v1.5 folder "
                             "to check them against")
        ignored = check_frozen_part(part, keys, stable_diffusion)
        why = f"equal to {stable_diffusion}/{part.subfolder}, which the import names instead"
        dropped |= {key: why for key in keys} | {key: "a buffer older libraries saved" for key in ignored}
    return dropped
