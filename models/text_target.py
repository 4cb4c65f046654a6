"""The frozen CLIP text encoder of the SD checkpoint: the target space T that M learns to hit."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import CLIPTextModel, CLIPTokenizer


class ClipTextTarget(nn.Module):
    """Captions -> the (B, 77, 768) last hidden state SD v1.5 is conditioned on. Never trained."""

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.max_length: int = tokenizer.model_max_length
        self.hidden_size: int = text_encoder.config.hidden_size

    @classmethod
    def from_pretrained(cls, sd_path: str, dtype: torch.dtype | None = None) -> ClipTextTarget:
        tokenizer = CLIPTokenizer.from_pretrained(sd_path, subfolder="tokenizer", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(
            sd_path, subfolder="text_encoder", dtype=dtype, local_files_only=True
        )
        return cls(tokenizer, text_encoder)

    def train(self, mode: bool = True) -> ClipTextTarget:
        # A recipe calling .train() on a parent module must not switch the frozen target's
        # dropout on: its output is the regression target.
        return super().train(False)

    def token_counts(self, captions: list[str]) -> list[int]:
        """CLIP tokens per caption without BOS/EOS, for the (code) drop-if-over-75 filter."""
        encoded = self.tokenizer(captions, add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded.input_ids]

    def tokenize(self, captions: list[str]) -> Tensor:
        """(B, max_length) ids, padded and truncated the way the SD pipeline does."""
        return self.tokenizer(
            captions, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        ).input_ids

    @torch.no_grad()
    def forward(self, captions: list[str]) -> Tensor:
        device = self.text_encoder.device
        return self.text_encoder(self.tokenize(captions).to(device)).last_hidden_state
