"""The aligned MLLM as the U-Net's condition: a drop-in for Stable Diffusion's text encoder.

Its output has the shape of CLIP's last hidden state (B, 77, 768), so it goes wherever a
diffusers pipeline takes `prompt_embeds` / `negative_prompt_embeds`, including pipelines whose
U-Net carries a ControlNet or LoRA weights.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from models.aligner import Aligner
from models.mllm import MLLMEncoder


class KosmosGConditioner(nn.Module):
    def __init__(self, mllm: MLLMEncoder, aligner: Aligner) -> None:
        super().__init__()
        self.mllm = mllm
        self.aligner = aligner

    @property
    def device(self) -> torch.device:
        return next(self.aligner.parameters()).device

    def forward(self, prompts: list[str], images: list[list[Image.Image]] | None = None) -> torch.Tensor:
        source, mask = self.mllm(self.mllm.tokenize(prompts, images).to(self.device))
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
