"""The README.md of a folder `repro import` made from a released Kosmos-G checkpoint."""

from __future__ import annotations

from typing import Any

_WHAT = {
    "stage1": "the multimodal LLM after Kosmos-G's stage 1, as a transformers Kosmos-2 folder "
              "(`Kosmos2Model`, tokenizer, processor): what `models.mllm` names",
    "stage2": "AlignerNet after image decoder aligning (stage 2): M in `aligner.safetensors`, N in "
              "`aligner_n.safetensors`; its MLLM is the imported stage 1 that config.json's "
              "`base_mllm` names",
    "final": "Kosmos-G after instruction tuning (stage 3): M in `aligner.safetensors` "
             "and the tuned MLLM in `mllm/`",
}


def released_card(record: dict[str, Any], stable_diffusion: str | None) -> str:
    source, official = record["imported_from"], record["official"]
    dropped = "\n".join(f"- `{key}`: {why}" for key, why in record["dropped_keys"].items()) or "- (none)"
    return f"""---
tags: [kosmos-g, released-checkpoint, import]
{f"base_model: {stable_diffusion}" if stable_diffusion else ""}
---

# Kosmos-G released checkpoint: {record["kind"]}

This folder is {_WHAT[record["kind"]]}.

## Where it came from

- file: `{source["file"]}`, sha256 `{source["sha256"]}`
- the official code its keys were read against: github.com/{official["repository"]} at `{official["commit"]}`
- Stable Diffusion its U-Net, VAE and CLIP text encoder (if the file had them) were checked equal to: \
`{stable_diffusion}`

The file was read once, by torch's weights_only unpickler with inert stand-ins for the trainer's
configuration objects (nothing it carried was run), and every weight here is safetensors.

## Keys not carried over

{dropped}
"""
