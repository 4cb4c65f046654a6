"""The image and text encoders DreamBench scores with, loaded from local directories.

Both return L2-normalised features, so the cosine of two items is the dot product of their rows.
- DINO: (code) eval/dino_score.py, the CLS feature of ViT-S/16 after the final norm, on images
  resized (bicubic) to 256, centre-cropped to 224 and ImageNet-normalised. As a transformers
  ViTModel, the CLS is row 0 of last_hidden_state; sizes follow the model's image_size so tiny
  models use the same recipe (crop = image_size, resize = crop * 256 / 224).
- CLIP: (code) eval/clip_score.py, ViT-B/32's projected image and text features with
  CLIPProcessor's own preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision import transforms
from transformers import CLIPModel, CLIPProcessor, ViTModel
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

BATCH_SIZE = 32  # images or texts per encoder forward


def _batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[start:start + size] for start in range(0, len(items), size)]


class DinoEncoder:
    def __init__(self, model: ViTModel) -> None:
        self.model = model.eval().requires_grad_(False)
        # transformers allows an (h, w) pair; DINO's ViT takes square images, one side.
        crop: int = model.config.image_size  # type: ignore[assignment]
        self.preprocess = transforms.Compose([
            transforms.Resize(round(crop * 256 / 224), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
        ])  # fmt: skip

    @classmethod
    def from_pretrained(cls, path: str, device: torch.device) -> DinoEncoder:
        # DINO was trained without ViTModel's pooler; skipping it avoids a randomly initialised head.
        model = ViTModel.from_pretrained(path, add_pooling_layer=False, local_files_only=True)
        # transformers' stubs type `to` through a decorator that takes the model for the device.
        return cls(model.to(device))  # type: ignore[arg-type]

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image]) -> Tensor:
        """(N, D) on the CPU, unit norm."""
        device = self.model.device
        features = []
        for batch in _batches(images, BATCH_SIZE):
            pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in batch]).to(device)
            cls = self.model(pixel_values=pixels).last_hidden_state[:, 0]
            features.append(F.normalize(cls.float(), dim=-1).cpu())
        return torch.cat(features)


class ClipEncoder:
    def __init__(self, model: CLIPModel, processor: CLIPProcessor) -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path: str, device: torch.device) -> ClipEncoder:
        model = CLIPModel.from_pretrained(path, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        return cls(model.to(device), processor)  # type: ignore[arg-type]  # as DinoEncoder's `to`

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image]) -> Tensor:
        """(N, D) on the CPU, unit norm."""
        features = []
        for batch in _batches(images, BATCH_SIZE):
            rgb = [image.convert("RGB") for image in batch]
            pixels = self.processor(images=rgb, return_tensors="pt").pixel_values.to(self.model.device)
            projected = self.model.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
            features.append(F.normalize(projected.float(), dim=-1).cpu())
        return torch.cat(features)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> Tensor:
        """(N, D) on the CPU, unit norm."""
        features = []
        for batch in _batches(texts, BATCH_SIZE):
            tokens = self.processor(text=list(batch), return_tensors="pt", padding=True, truncation=True)
            projected = self.model.get_text_features(
                input_ids=tokens.input_ids.to(self.model.device),
                attention_mask=tokens.attention_mask.to(self.model.device),
                return_dict=True,
            ).pooler_output
            features.append(F.normalize(projected.float(), dim=-1).cpu())
        return torch.cat(features)
