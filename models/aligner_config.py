"""The aligner's configuration, owned beside the model (models/aligner.py builds from it) and
read by the harness as the run config's `aligner` section. Kept apart from aligner.py so that
loading a config does not import torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

AlignerKind = Literal["aligner", "decoder_only", "linear"]
ALIGNER_KINDS: tuple[AlignerKind, ...] = get_args(AlignerKind)


@dataclass(frozen=True)
class AlignerConfig:
    """AlignerNet and its ablations. Defaults: the paper's 12-layer AlignerNet."""

    kind: AlignerKind = "aligner"
    layers: int = 12  # per stack (encoder and decoder each)
    width: int = 768
    ffn: int = 3072
    heads: int = 12
    # (code) one table of learned positions and one bank of N's queries, 32768 rows each.
    max_source_len: int = 32768
    # torchscale's `dropout`, on the embedded inputs and on every attention and feed-forward
    # output; its attention and activation dropouts stay 0, as in the official configuration.
    dropout: float = 0.0
