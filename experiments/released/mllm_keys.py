"""The MLLM in a released Kosmos-G checkpoint, renamed onto transformers' `Kosmos2Model`.

The official model (xichenpan/Kosmos-G, unilm/models/kosmosg.py) is Kosmos-2's architecture
under fairseq names: `gpt_model.decoder` (torchscale's Decoder, sub-LN), `img_model.visual`
(open_clip's ViT with torchscale attention `ts_attn`), `img_connector` (XConnector: dense and 64
latent queries attending over the image tokens and themselves). Each official key is renamed or
dropped by one rule below; a key no rule names, or a Kosmos2Model weight no key fills, is an error
naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

_PROJECTIONS = r"(?:[qkv]|out)_proj"


@dataclass(frozen=True)
class KeyRule:
    official: str  # a regular expression the whole official key matches
    target: str | None  # the Kosmos2Model key (with the match's groups); None: dropped
    why: str = ""  # for a dropped key: why nothing reads it


MLLM_RULES: tuple[KeyRule, ...] = (
    KeyRule(r"gpt_model\.decoder\.embed_tokens\.weight", "text_model.model.embed_tokens.weight"),
    KeyRule(rf"gpt_model\.decoder\.layers\.(\d+)\.(self_attn\.{_PROJECTIONS}|self_attn\.inner_attn_ln|"
            r"self_attn_layer_norm|ffn\.fc[12]|ffn\.ffn_layernorm|final_layer_norm)\.(weight|bias)",
            r"text_model.model.layers.\1.\2.\3"),
    KeyRule(r"gpt_model\.decoder\.layer_norm\.(weight|bias)", r"text_model.model.layer_norm.\1"),
    KeyRule(r"gpt_model\.decoder\.output_projection\.weight", None,
            "tied to embed_tokens (share_decoder_input_output_embed); checked equal"),
    KeyRule(r"gpt_model\.decoder\.embed_positions\._float_tensor", None,
            "fairseq's sinusoidal positions keep it for its device and dtype only; "
            "the positions are computed"),
    KeyRule(r"gpt_model\.decoder\.self_attn_sope\.scale", None,
            "xPos's scale buffer: built (sope_rel_pos) but LMDecoder.forward (unilm/models/gpt.py) passes it "
            "to no layer"),
    KeyRule(r"img_model\.visual\.class_embedding", "vision_model.model.embeddings.class_embedding"),
    KeyRule(r"img_model\.visual\.conv1\.weight", "vision_model.model.embeddings.patch_embedding.weight"),
    KeyRule(r"img_model\.visual\.positional_embedding",
            "vision_model.model.embeddings.position_embedding.weight"),
    KeyRule(r"img_model\.visual\.ln_pre\.(weight|bias)", r"vision_model.model.pre_layrnorm.\1"),
    KeyRule(r"img_model\.visual\.ln_post\.(weight|bias)", r"vision_model.model.post_layernorm.\1"),
    KeyRule(rf"img_model\.visual\.transformer\.resblocks\.(\d+)\.ts_attn\.({_PROJECTIONS})\.(weight|bias)",
            r"vision_model.model.encoder.layers.\1.self_attn.\2.\3"),
    KeyRule(r"img_model\.visual\.transformer\.resblocks\.(\d+)\.ln_1\.(weight|bias)",
            r"vision_model.model.encoder.layers.\1.layer_norm1.\2"),
    KeyRule(r"img_model\.visual\.transformer\.resblocks\.(\d+)\.ln_2\.(weight|bias)",
            r"vision_model.model.encoder.layers.\1.layer_norm2.\2"),
    KeyRule(r"img_model\.visual\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(weight|bias)",
            r"vision_model.model.encoder.layers.\1.mlp.fc1.\2"),
    KeyRule(r"img_model\.visual\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(weight|bias)",
            r"vision_model.model.encoder.layers.\1.mlp.fc2.\2"),
    KeyRule(r"img_model\.visual\.transformer\.resblocks\.\d+\.attn\.(in_proj_weight|in_proj_bias|out_proj\.\w+)",
            None, "open_clip's nn.MultiheadAttention, copied into ts_attn when built; "
            "the forward reads ts_attn"),
    KeyRule(r"img_connector\.dense\.(weight|bias)", r"image_to_text_projection.dense.\1"),
    KeyRule(r"img_connector\.latent_query", "image_to_text_projection.latent_query"),
    KeyRule(rf"img_connector\.x_attn\.({_PROJECTIONS})\.(weight|bias)",
            r"image_to_text_projection.x_attn.\1.\2"),
)
MLLM_PREFIXES = ("gpt_model.", "img_model.", "img_connector.")
_TIED = ("gpt_model.decoder.output_projection.weight", "gpt_model.decoder.embed_tokens.weight")


@dataclass(frozen=True)
class RenamedMLLM:
    weights: dict[str, Tensor]  # Kosmos2Model keys
    dropped: dict[str, str]  # official key -> why


def rename_mllm(official: Mapping[str, Tensor]) -> RenamedMLLM:
    """The official MLLM keys (those under MLLM_PREFIXES) as Kosmos2Model's."""
    weights: dict[str, Tensor] = {}
    dropped: dict[str, str] = {}
    unknown = []
    for key, value in official.items():
        found = next(((rule, m) for rule in MLLM_RULES if (m := re.fullmatch(rule.official, key))), None)
        if found is None:
            unknown.append(key)
            continue
        rule, match = found
        if rule.target is None:
            dropped[key] = rule.why
        else:
            weights[match.expand(rule.target)] = value
    if unknown:
        raise KeyError(f"MLLM keys no rule names: {', '.join(sorted(unknown))}")
    return RenamedMLLM(weights, dropped)


def check_tied(official: Mapping[str, Tensor]) -> None:
    """The dropped output projection must be the embedding it is tied to."""
    output, embed = (official.get(key) for key in _TIED)
    if output is None:
        return
    if embed is None:
        raise KeyError(f"{_TIED[0]} without the {_TIED[1]} it is tied to")
    if not torch.equal(output, embed):
        raise ValueError(f"{_TIED[0]} differs from {_TIED[1]}: the output projection is not tied")


def check_complete(weights: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    """Every Kosmos2Model weight filled, at its shape; errors name the keys that are not."""
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise KeyError(f"Kosmos2Model weights no official key fills: {missing or 'none'}; "
                       f"renamed keys Kosmos2Model lacks: {extra or 'none'}")
    wrong = [f"{key} {tuple(weights[key].shape)} != {tuple(value.shape)}"
             for key, value in expected.items() if weights[key].shape != value.shape]
    if wrong:
        raise ValueError(f"official weights of the wrong shape: {'; '.join(wrong)}")
