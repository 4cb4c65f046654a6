"""(code) What the official loader of stage 3's caption-only rows drops beyond unusable rows
(unilm/data/vl/laion2b_loader.py, in its order): images under `min_image_side` px in width or
height (width_height_filter), then captions over `max_sp_tokens` SentencePiece tokens.

A refused row is a filter's choice, not a broken row: it is counted as
data/skipped_captioned_<reason> but not towards data.max_bad_fraction."""

from __future__ import annotations

from typing import Any

from experiments.data.items import token_count
from experiments.data.stage3_rows import CaptionedRow

# The reasons a filter refuses a caption-only row, in the order they are tested.
CAPTIONED_FILTER_REASONS = ("small_image", "long_caption")


class CaptionedFilter:
    """row -> the reason it is refused, or None to keep it. Holds a tokenizer only, so it
    pickles into the DataLoader workers."""

    def __init__(self, sp_tokenizer: Any, max_sp_tokens: int, min_image_side: int) -> None:
        self.sp_tokenizer = sp_tokenizer
        self.max_sp_tokens = max_sp_tokens
        self.min_image_side = min_image_side

    def __call__(self, row: CaptionedRow) -> str | None:
        if min(row.size) < self.min_image_side:
            return "small_image"
        if token_count(self.sp_tokenizer, row.caption) > self.max_sp_tokens:
            return "long_caption"
        return None
