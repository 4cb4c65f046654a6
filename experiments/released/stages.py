"""The released Kosmos-G files, one per training stage (light: the CLI's choices read it)."""

from __future__ import annotations

import enum


class Stage(enum.Enum):
    """Each file's stage; the value is how `repro import` names it."""

    STAGE1 = "stage1"  # checkpoint_stage1.pt: the MLLM after stage 1
    STAGE2 = "stage2"  # checkpoint_stage2.pt: after image decoder aligning (M and N)
    FINAL = "final"  # checkpoint_final.pt: after instruction tuning (the MLLM and M)
