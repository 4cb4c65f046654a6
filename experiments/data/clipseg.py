"""CLIPSeg as the segmenter of `build_compositional`: the paper segments each entity with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor


class ClipSegSegmenter:
    """CLIPSeg (transformers) prompted with each word, a `Segmenter` (experiments/data/build.py).
    The full tier loads CIDAS/clipseg-rd64-refined from a local directory, tests a random one
    saved by `save_tiny_clipseg`."""

    def __init__(self, model: CLIPSegForImageSegmentation, processor: CLIPSegProcessor, device: str) -> None:
        # transformers' stubs type `to` through a decorator that takes the model for the device.
        self.model = model.to(device).eval()  # type: ignore[arg-type]
        self.processor = processor
        self.device = device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> ClipSegSegmenter:
        model = CLIPSegForImageSegmentation.from_pretrained(path, local_files_only=True)
        return cls(model, CLIPSegProcessor.from_pretrained(path, local_files_only=True), device)

    def __call__(self, image: Image.Image, words: list[str]) -> list[np.ndarray]:
        if not words:
            return []
        image = image.convert("RGB")
        inputs = self.processor(text=words, images=[image] * len(words), padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**inputs.to(self.device)).logits
        # The processor squashes the image into the model's square; resizing the logits to the
        # image's own height and width undoes that, aspect ratio included.
        logits = torch.nn.functional.interpolate(
            logits.reshape(len(words), 1, *logits.shape[-2:]), size=(image.height, image.width),
            mode="bilinear",
        )
        return list(logits[:, 0].sigmoid().float().cpu().numpy())
