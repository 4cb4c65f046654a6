"""The README.md of an export: what the model is, the table row it reproduces, its metrics,
where it came from and how to use it."""

from __future__ import annotations

from typing import Any


def model_card(provenance: dict[str, Any], metrics: dict[str, float], stable_diffusion: str) -> str:
    row, table = provenance.get("row") or provenance.get("experiment"), provenance.get("table")
    metric_rows = "\n".join(f"| `{name}` | {value:.6g} |" for name, value in sorted(metrics.items()))
    source = " | ".join(f"{provenance.get(key)}" for key in ("experiment", "recipe", "tier", "seed"))
    config_hash = provenance.get("config_hash")
    return f"""---
tags: [kosmos-g, text-to-image, subject-driven-generation, reproduction]
base_model: {stable_diffusion}
---

# Kosmos-G conditioner: {row}

A reproduction of Kosmos-G (Pan et al., arXiv 2310.02992): an aligned multimodal LLM whose output
replaces Stable Diffusion's text encoder, so that a prompt can interleave text and images
("<i> wearing <i> in the jungle").

| table | row | experiment | recipe | tier | seed |
| --- | --- | --- | --- | --- | --- |
| {table} | {row} | {source} |

## Metrics

| metric | value |
| --- | --- |
{metric_rows or "| (none logged) | |"}

## Provenance

- config hash: `{config_hash}` (the run's id in the harness and its MLflow tag `config_hash`)
- git commit: `{provenance.get("git_commit")}`
- Stable Diffusion the conditions are for: `{stable_diffusion}`

## Files

- `config.json`: how to build the aligner, where the MLLM and Stable Diffusion come from, this card's facts
- `aligner.safetensors`: AlignerNet's M, which maps the MLLM's states to the U-Net's (77, 768) conditions
- `mllm/`: the multimodal LLM (Kosmos-2 layout: model.safetensors, tokenizer, image processor); when
  absent, config.json's `base_mllm` names the unchanged pretrained MLLM to load instead

Every weight file is safetensors: loading this folder runs no code from it.

## How to use

With the harness: `repro generate --checkpoint THIS_FOLDER --prompt "<i> on the beach" --image dog.png`.

From Python, with any diffusers Stable Diffusion pipeline of the same base model:

```python
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from models import KosmosGConditioner

conditioner = KosmosGConditioner.from_pretrained("THIS_FOLDER")
pipe = StableDiffusionPipeline.from_pretrained("{stable_diffusion}", safety_checker=None)
with torch.no_grad():
    embeds = conditioner.pipeline_embeds(["<i> on the beach"], [[Image.open("dog.png")]])
image = pipe(**embeds, guidance_scale=7.5).images[0]
```
"""
