"""The aligned MLLM as the U-Net's condition: a drop-in for Stable Diffusion's text encoder.

Its output has the shape of CLIP's last hidden state (B, 77, 768), so it goes wherever a
diffusers pipeline takes `prompt_embeds` / `negative_prompt_embeds`, including pipelines whose
U-Net carries a ControlNet or LoRA weights.

Saved in the Hugging Face style (`save_pretrained` / `from_pretrained`), a folder holds
- `config.json`: how to build the aligner again, how prompts are tokenized (`append_eos`), where
  the MLLM comes from, the Stable Diffusion checkpoint whose U-Net the conditions are for, and
  whatever the saver adds (provenance);
- `aligner.safetensors`: AlignerNet's M (N only serves stage 2's reconstruction loss);
- `mllm/`: the MLLM, tokenizer and image processor (transformers' own safetensors layout), unless
  the MLLM is the untouched pretrained one and config.json names where that loads from instead.
Nothing in it is a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from models.aligner import Aligner, rebuilt_aligner
from models.mllm import MLLMEncoder

MODEL_TYPE = "kosmos-g"
CONFIG = "config.json"
ALIGNER_WEIGHTS = "aligner.safetensors"
MLLM_FOLDER = "mllm"


def saved_config(folder: Path) -> dict[str, Any] | None:
    """config.json of a folder `save_pretrained` wrote; None for any other folder."""
    try:
        config = json.loads((Path(folder) / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("model_type") == MODEL_TYPE else None


class KosmosGConditioner(nn.Module):
    def __init__(self, mllm: MLLMEncoder, aligner: Aligner, append_eos: bool = False) -> None:
        """append_eos: end every prompt with `</s>`; (code) the official model never does, and a
        conditioner has to tokenize the way its aligner was trained."""
        super().__init__()
        self.mllm = mllm
        self.aligner = aligner
        self.append_eos = append_eos

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: torch.dtype | None = None) -> KosmosGConditioner:
        """A conditioner from a folder `save_pretrained` wrote, in eval mode. Its aligner has M only:
        it generates, it does not go on with stage 2."""
        folder = Path(folder)
        config = saved_config(folder)
        if config is None:
            raise ValueError(
                f"{folder}: no {CONFIG} with model_type {MODEL_TYPE!r}; not a saved Kosmos-G conditioner"
            )
        mllm_source = folder / MLLM_FOLDER if (folder / MLLM_FOLDER).is_dir() else config["base_mllm"]
        mllm = MLLMEncoder.from_pretrained(str(mllm_source), dtype=dtype)
        aligner = rebuilt_aligner(config["aligner"])
        aligner.n = None
        aligner.load_state_dict(load_file(folder / ALIGNER_WEIGHTS))
        # Folders written before the key existed tokenized without `</s>`, as the official code does.
        append_eos = bool(config.get("append_eos", False))
        return cls(mllm, aligner.to(dtype) if dtype else aligner, append_eos).eval()

    def save_pretrained(
        self, folder: str | Path, *, stable_diffusion: str, base_mllm: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Writes the folder `from_pretrained` reads. base_mllm: where this (unchanged) MLLM loads
        from, recorded instead of a copy; None copies it into mllm/. extra: more config.json keys."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        m = {key: value.detach().cpu().contiguous() for key, value in self.aligner.state_dict().items()
             if key.startswith("m.")}
        save_file(m, folder / ALIGNER_WEIGHTS)
        if base_mllm is None:
            target = folder / MLLM_FOLDER
            self.mllm.model.save_pretrained(target)
            self.mllm.tokenizer.save_pretrained(target)
            self.mllm.image_processor.save_pretrained(target)
        config = {
            "model_type": MODEL_TYPE, "architectures": [type(self).__name__],
            "aligner": self.aligner.build_arguments,
            "condition_shape": [self.aligner.target_len, self.aligner.build_arguments["target_dim"]],
            "append_eos": self.append_eos,
            "stable_diffusion": stable_diffusion, "base_mllm": base_mllm, **(extra or {}),
        }
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        return folder

    @property
    def device(self) -> torch.device:
        return next(self.aligner.parameters()).device

    def forward(self, prompts: list[str], images: list[list[Image.Image]] | None = None) -> torch.Tensor:
        inputs = self.mllm.tokenize(prompts, images, append_eos=self.append_eos)
        source, mask = self.mllm(inputs.to(self.device))
        return self.aligner(source, mask)

    def pipeline_embeds(
        self, prompts: list[str], images: list[list[Image.Image]] | None = None
    ) -> dict[str, torch.Tensor]:
        """Keyword arguments for any diffusers Stable Diffusion pipeline (plain, ControlNet,
        with LoRA weights...): `pipe(**conditioner.pipeline_embeds(prompts, images), ...)`."""
        condition = self(prompts, images)
        return {"prompt_embeds": condition, "negative_prompt_embeds": self.null(len(prompts))}

    def null(self, batch_size: int) -> torch.Tensor:
        """The unconditional embedding for classifier-free guidance: the aligned "<s>" prompt
        (official code), learned during training through the 10% null conditions."""
        source, mask = self.mllm(self.mllm.null_inputs(batch_size).to(self.device))
        return self.aligner(source, mask)
