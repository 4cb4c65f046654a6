"""What a row becomes for training, decided per row in DataLoader workers: a caption that passes
the official filters, an image decoded and cropped beside its caption, or the reason it is
skipped. Each converter holds tokenizers and settings only, so it pickles into the workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from experiments.data.images import image_tensor
from experiments.data.shards import Record
from experiments.data.stream import Skip
from experiments.data.untrusted_images import UnusableImage


class CaptionItem:
    """Stage 2's rows: the caption, unless it has none or, (code) BOS/EOS aside, more than
    `max_tokens` CLIP tokens or, given the MLLM's tokenizer, more than `max_sp_tokens` of its
    SentencePiece tokens (laion2b_loader.py's length filter; CLIP's limit is tested first)."""

    def __init__(self, clip_tokenizer: Any, max_tokens: int, sp_tokenizer: Any = None,
                 max_sp_tokens: int | None = None) -> None:
        if (sp_tokenizer is None) != (max_sp_tokens is None):
            raise ValueError("the SentencePiece filter needs both the MLLM's tokenizer and its limit")
        self.tokenizer = clip_tokenizer
        self.max_tokens = max_tokens
        self.sp_tokenizer = sp_tokenizer
        self.max_sp_tokens = max_sp_tokens

    def __call__(self, record: Record) -> str | Skip:
        if not record.caption:
            return Skip("no_caption")
        if token_count(self.tokenizer, record.caption) > self.max_tokens:
            return Skip("caption_too_long", broken=False)
        if self.sp_tokenizer is not None and self.max_sp_tokens is not None:
            if token_count(self.sp_tokenizer, record.caption) > self.max_sp_tokens:
                return Skip("caption_too_long_sp", broken=False)
        return record.caption


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens of `text` without BOS/EOS: for the MLLM's tokenizer what (code) the official
    caption filters count, len(text_transform(caption)) in laion2b_loader.py."""
    return len(tokenizer(text, add_special_tokens=False, truncation=False).input_ids)


class ImageCaptionItem:
    """E2E's rows: (image as a (3, r, r) tensor in [-1, 1], caption). The image is the row's own
    bytes (tar and parquet shards) or a file under `image_root` (caption files); one that cannot
    be used is skipped under its reason (experiments/data/untrusted_images.py)."""

    def __init__(self, captions: CaptionItem, image_root: Path | None, resolution: int,
                 max_pixels: int) -> None:
        self.captions = captions
        self.image_root = image_root
        self.resolution = resolution
        self.max_pixels = max_pixels

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
            return image_tensor(source, self.resolution, self.max_pixels), caption
        except UnusableImage as error:
            return Skip(error.reason)
