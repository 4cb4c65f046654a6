"""What a row becomes for training, decided per row in DataLoader workers: a caption that passes
the official filters, an image decoded and cropped beside its caption, or the reason it is
skipped. Each converter holds tokenizers and settings only, so it pickles into the workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import UnidentifiedImageError

from experiments.data.images import image_tensor
from experiments.data.shards import Record
from experiments.data.stream import Skip


class CaptionItem:
    """Stage 2's rows: the caption, unless it has none or (code) more than `max_tokens` CLIP
    tokens, BOS/EOS aside."""

    def __init__(self, clip_tokenizer: Any, max_tokens: int) -> None:
        self.tokenizer = clip_tokenizer
        self.max_tokens = max_tokens

    def __call__(self, record: Record) -> str | Skip:
        if not record.caption:
            return Skip("no_caption")
        ids = self.tokenizer(record.caption, add_special_tokens=False, truncation=False).input_ids
        return Skip("caption_too_long", broken=False) if len(ids) > self.max_tokens else record.caption


class ImageCaptionItem:
    """E2E's rows: (image as a (3, r, r) tensor in [-1, 1], caption). The image is the row's own
    bytes (tar and parquet shards) or a file under `image_root` (caption files)."""

    def __init__(self, captions: CaptionItem, image_root: Path | None, resolution: int) -> None:
        self.captions = captions
        self.image_root = image_root
        self.resolution = resolution

    def __call__(self, record: Record) -> tuple[torch.Tensor, str] | Skip:
        caption = self.captions(record)
        if isinstance(caption, Skip):
            return caption
        if record.image is None:
            return Skip("no_image")
        if isinstance(record.image, str):
            if self.image_root is None:
                raise ValueError(f"{record.key}: names image {record.image!r}, but data.train_images "
                                 "(their folder) is not set")
            source: Path | bytes = self.image_root / record.image
        else:
            source = record.image
        try:
            return image_tensor(source, self.resolution), caption
        except (OSError, UnidentifiedImageError, ValueError):  # missing, truncated or not an image
            return Skip("unreadable_image")
