"""Load an official Kosmos-G aligner checkpoint into models.aligner's AlignerNet.

The official `Aligner` (xichenpan/Kosmos-G, unilm/models/aligner.py) is made of torchscale
modules whose inner names models.aligner keeps, so the map is one prefix per module:

    official (Aligner attribute)          ours (AlignerNet)
    encoder_proj.embed_tokens.*           m.source_in.*           Linear 2048 -> 768
    encoder_proj.*                        m.encoder.*             positions, layers, layer_norm
    encoder_query                         m.decoder.queries       77 learned queries
    encoder.*                             m.decoder.*             M's query Decoder
    decoder_query                         n.decoder.queries       32768-row query bank
    decoder.*                             n.decoder.*             N's query Decoder
    decoder_proj.output_projection.*      n.source_out.*          Linear 768 -> 2048
    decoder_proj.*                        n.encoder.*             positions, layers, layer_norm

`clip_encoder.*` (the frozen CLIP text encoder that makes the targets) has no counterpart and is
dropped. The stage-3 model keeps only M (`Aligner_encoder`: encoder_proj, encoder_query,
encoder), which maps onto `m.*` alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

# Longer official prefixes come before the ones they extend.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("encoder_proj.embed_tokens.", "m.source_in."),
    ("encoder_proj.", "m.encoder."),
    ("encoder_query", "m.decoder.queries"),
    ("encoder.", "m.decoder."),
    ("decoder_query", "n.decoder.queries"),
    ("decoder.", "n.decoder."),
    ("decoder_proj.output_projection.", "n.source_out."),
    ("decoder_proj.", "n.encoder."),
)
_DROPPED = ("clip_encoder.",)
_MODEL_PREFIX = "aligner."  # the aligner's attribute name in KosmosGmodel (unilm/models/kosmosg.py)


def official_state_dict_to_ours(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official aligner weights -> a state dict for `build_aligner(AlignerConfig(...), 2048, 768)`.

    `state_dict` is either the official Aligner's (or Aligner_encoder's) own state dict or a
    whole Kosmos-G model's (`torch.load(checkpoint)["model"]`), whose aligner keys start with
    "aligner." and whose other keys (MLLM, U-Net, ...) are left out. Tensors are passed through
    unchanged: both sides store nn.Linear / nn.LayerNorm / nn.Embedding weights alike.

    A full Aligner loads with `aligner.load_state_dict(mapped)`; an Aligner_encoder (M only)
    with `strict=False`, leaving N as initialised. A key that maps nowhere raises KeyError.
    """
    if any(key.startswith(_MODEL_PREFIX) for key in state_dict):
        state_dict = {key.removeprefix(_MODEL_PREFIX): value for key, value in state_dict.items()
                      if key.startswith(_MODEL_PREFIX)}
    ours: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(_DROPPED):
            continue
        for official, mine in _PREFIXES:
            if key.startswith(official):
                ours[mine + key[len(official):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"official aligner keys with no counterpart: {', '.join(sorted(unknown))}")
    return ours


def our_state_dict_to_official(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """AlignerNet weights under the official Aligner's names (without the `aligner.` prefix), for
    writing a file in the released layout; the inverse of official_state_dict_to_ours."""
    # Longer of our prefixes first: "m.decoder.queries" before "m.decoder.".
    inverse = sorted(((mine, official) for official, mine in _PREFIXES), key=lambda pair: -len(pair[0]))
    official = {}
    for key, value in state_dict.items():
        match = next(((m, o) for m, o in inverse if key.startswith(m)), None)
        if match is None:
            raise KeyError(f"an AlignerNet key with no official counterpart: {key}")
        mine, theirs = match
        official[theirs + key[len(mine):]] = value
    return official
