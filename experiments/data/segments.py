"""An entity's two images as stage-3 data stores them, made the way (code) scripts/convert_openimage.py
makes them from a segmentation mask over the (square) image:

1. the mask binarized (> threshold, 0.3 there), grown by a grey dilation of size image_side // 100;
2. only its largest connected component kept, "largest" measured as the official code measures it:
   the mask pixels inside the component's bounding box;
3. a square of side max(box height, box width), centred on the box and shifted to lie inside the
   image;
4. that crop as is (background kept) and with every pixel outside the mask white, both resized
   to `size` (512 there) with PIL's default, bicubic, resampling.

Training shows one of the two per entity (background kept with p = 0.5: stage3_examples.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import find_objects, grey_dilation, label

WHITE = 255


@dataclass(frozen=True)
class SegmentImages:
    with_background: Image.Image
    on_white: Image.Image


def entity_mask(probabilities: np.ndarray, threshold: float) -> np.ndarray | None:
    """Steps 1 and 2 on a (side, side) map of mask probabilities: the boolean mask of the largest
    dilated component, or None when nothing is over the threshold."""
    mask = probabilities > threshold
    if not mask.any():
        return None
    dilation = mask.shape[0] // 100  # (code) image_size // 100: 0 and 1 leave the mask as is
    mask = grey_dilation(mask, size=(dilation, dilation))
    components, _ = label(mask)
    boxes = find_objects(components)
    largest = int(np.argmax([mask[box].sum() for box in boxes]))
    return components == largest + 1


def square_box(mask: np.ndarray) -> tuple[int, int, int]:
    """Step 3: (top, left, side) of the square around the mask's bounding box."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y_start, y_stop, x_start, x_stop = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    side = int(max(y_stop - y_start, x_stop - x_start))
    top = _inside((y_start + y_stop) // 2 - side // 2, side, mask.shape[0])
    left = _inside((x_start + x_stop) // 2 - side // 2, side, mask.shape[1])
    return top, left, side


def _inside(start: int, side: int, limit: int) -> int:
    """A square's start moved so that [start, start + side) lies in [0, limit)."""
    return int(min(max(start, 0), limit - side))


def entity_images(
    image: Image.Image, probabilities: np.ndarray, threshold: float, size: int
) -> SegmentImages | None:
    """Steps 1 to 4 for a square RGB `image` and its entity's mask probabilities (same size)."""
    if image.width != image.height or probabilities.shape != (image.height, image.width):
        raise ValueError(f"a {probabilities.shape} mask for a {image.width}x{image.height} image; "
                         "both are the image's central square")
    mask = entity_mask(probabilities, threshold)
    if mask is None:
        return None
    top, left, side = square_box(mask)
    crop = np.asarray(image.convert("RGB"))[top:top + side, left:left + side]
    white = crop.copy()
    white[~mask[top:top + side, left:left + side]] = WHITE
    resize = (size, size)
    return SegmentImages(
        Image.fromarray(crop).resize(resize, Image.Resampling.BICUBIC),
        Image.fromarray(white).resize(resize, Image.Resampling.BICUBIC),
    )


def central_square(image: Image.Image) -> tuple[int, int, int]:
    """(top, left, side) of the image's central square: (code) the official build crops every
    Open Images photo to it before captioning and segmenting, left = (width - side) // 2."""
    side = min(image.size)
    return (image.height - side) // 2, (image.width - side) // 2, side
