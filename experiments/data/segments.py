"""An entity's segmented image as stage-3 data stores it: an RGBA PNG cropped to the bounding box
of the entity's mask, RGB = the original pixels (background included), alpha = the binary mask.

One file serves both views the paper trains on (background kept with p = 0.5): the recipe asks
`segment_view` for the cut-out on white or for the crop with its background.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)


def cut_segment(image: Image.Image, mask: np.ndarray) -> Image.Image | None:
    """The RGBA segment of `image` under the boolean `mask` (height x width of the image), or
    None when the mask selects no pixel."""
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask of shape {mask.shape} for an image of {image.width}x{image.height}")
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    box = (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)
    segment = image.convert("RGB").crop(box)
    alpha = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).crop(box)
    segment.putalpha(alpha)
    return segment


def segment_view(segment: Image.Image, keep_background: bool) -> Image.Image:
    """The RGB image the model sees for `segment`: its crop as is, or the entity alone on white."""
    if segment.mode != "RGBA":
        raise ValueError(f"a segment is an RGBA image, got mode {segment.mode}")
    if keep_background:
        return segment.convert("RGB")
    view = Image.new("RGB", segment.size, WHITE)
    view.paste(segment.convert("RGB"), mask=segment.getchannel("A"))
    return view
