"""A released checkpoint's MLLM written as a transformers Kosmos-2 folder that `models.mllm`
loads: Kosmos2Model's config and safetensors, and Kosmos2Processor's files over the official
SentencePiece model.

Kosmos2Processor adds Kosmos-2's grounding tags and 1,024 patch-index tokens after the five
tags the official model has; their embedding rows, which Kosmos-G never trained, are zeros.
Weights are stored in float32 as the published Kosmos-2 is, so the harness loads either alike
(the fp16 values convert exactly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import Kosmos2Config, Kosmos2Model

from experiments.fixtures.kosmos2 import save_processor_over
from experiments.released.mllm_keys import RenamedMLLM, check_complete, check_tied, rename_mllm
from experiments.released.official_dictionary import OFFICIAL_TAGS, official_vocabulary_size

VISION_HEAD_WIDTH = 64  # open_clip's head_width for ViT-L/14 (its model config has no head count)
EMBED = "text_model.model.embed_tokens.weight"


def decoder_heads(checkpoint: Mapping[str, Any], source: Path) -> int:
    """decoder_attention_heads from the trainer's cfg (hydra, cfg.model) or args (older fairseq):
    the one architecture number the weights' shapes do not tell."""
    for section in ((checkpoint.get("cfg") or {}).get("model"), checkpoint.get("args")):
        if isinstance(section, Mapping) and isinstance(section.get("decoder_attention_heads"), int):
            return section["decoder_attention_heads"]
    raise KeyError(f"{source}: neither cfg.model nor args holds decoder_attention_heads")


def kosmos2_config(weights: Mapping[str, Tensor], heads: int, vocabulary: int) -> Kosmos2Config:
    """The architecture the renamed weights have (layer counts and widths read off their shapes)."""
    def count(prefix: str) -> int:
        return len({key[len(prefix):].split(".")[0] for key in weights if key.startswith(prefix)})

    text, vision = "text_model.model.", "vision_model.model."
    width = weights[f"{vision}embeddings.class_embedding"].shape[0]
    patch = weights[f"{vision}embeddings.patch_embedding.weight"].shape[-1]
    grid = math.isqrt(weights[f"{vision}embeddings.position_embedding.weight"].shape[0] - 1)
    return Kosmos2Config(
        text_config={
            "vocab_size": vocabulary, "embed_dim": weights[EMBED].shape[1], "layers": count(f"{text}layers."),
            "ffn_dim": weights[f"{text}layers.0.ffn.fc1.weight"].shape[0], "attention_heads": heads,
        },
        vision_config={
            "hidden_size": width, "num_hidden_layers": count(f"{vision}encoder.layers."),
            "intermediate_size": weights[f"{vision}encoder.layers.0.mlp.fc1.weight"].shape[0],
            "num_attention_heads": width // VISION_HEAD_WIDTH, "image_size": grid * patch,
            "patch_size": patch,
        },
        latent_query_num=weights["image_to_text_projection.latent_query"].shape[0],
    )


def save_mllm_folder(model_state: Mapping[str, Tensor], heads: int, spm_file: Path, dict_file: Path,
                     out: Path) -> RenamedMLLM:
    """Writes `out` (model, tokenizer, processor) from the official MLLM keys in `model_state`."""
    rows = official_vocabulary_size(spm_file, dict_file)
    renamed = rename_mllm(model_state)
    check_tied(model_state)
    embed = renamed.weights[EMBED]
    if embed.shape[0] != rows:
        raise ValueError(f"gpt_model.decoder.embed_tokens.weight has {embed.shape[0]} rows; {dict_file} "
                         f"gives {rows} (4 specials, its pieces, <mask>, {' '.join(OFFICIAL_TAGS)})")
    processor = save_processor_over(spm_file, out)
    tokenizer = processor.tokenizer
    tag_ids = tokenizer.convert_tokens_to_ids(list(OFFICIAL_TAGS))
    if tag_ids != list(range(rows - len(OFFICIAL_TAGS), rows)):
        raise ValueError(f"the tokenizer puts {' '.join(OFFICIAL_TAGS)} at {tag_ids}, "
                         "not at the official rows")
    weights = {key: value.float() for key, value in renamed.weights.items()}
    padding = weights[EMBED].new_zeros(len(tokenizer) - rows, embed.shape[1])
    weights[EMBED] = torch.cat([weights[EMBED], padding])
    config = kosmos2_config(weights, heads, len(tokenizer))
    with torch.device("meta"):
        model = Kosmos2Model(config)
    check_complete(weights, model.state_dict())
    model.load_state_dict(weights, strict=True, assign=True)
    model.save_pretrained(out)
    return renamed
