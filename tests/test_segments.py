"""An entity's segment images as (code) scripts/convert_openimage.py cuts them: threshold,
dilation by image_side // 100, largest component, a square crop shifted inside the image, with its
background and on white."""

from __future__ import annotations

import numpy as np
from PIL import Image

from experiments.data.segments import WHITE, central_square, entity_images, entity_mask, square_box


def test_the_mask_is_thresholded_dilated_and_cut_to_its_largest_component() -> None:
    side = 300  # dilation 300 // 100 = 3
    probabilities = np.zeros((side, side), dtype=np.float32)
    probabilities[10, 10] = 0.31  # one pixel over 0.3: grows to 3 x 3
    probabilities[100:105, 200:205] = 0.9  # a 5 x 5 blob: grows to 7 x 7, the largest
    probabilities[250, 250] = 0.29  # under the threshold
    mask = entity_mask(probabilities, threshold=0.3)
    assert mask.sum() == 7 * 7
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1], columns[0], columns[-1]) == (99, 105, 199, 205)
    alone = entity_mask(np.where(probabilities < 0.5, probabilities, 0), threshold=0.3)
    assert alone.sum() == 9 and alone[9:12, 9:12].all()  # the single pixel, dilated
    assert entity_mask(np.full((side, side), 0.3, dtype=np.float32), threshold=0.3) is None


def test_small_images_are_not_dilated() -> None:
    probabilities = np.zeros((99, 99), dtype=np.float32)
    probabilities[5, 5] = 1.0
    assert entity_mask(probabilities, threshold=0.3).sum() == 1  # 99 // 100 = 0: no dilation


def test_the_square_is_centred_on_the_box_and_shifted_inside_the_image() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[4:14, 8:12] = True  # 10 tall, 4 wide: a 10-px square centred on (9, 10)
    assert square_box(mask) == (4, 5, 10)
    edge = np.zeros((20, 20), dtype=bool)
    edge[2:18, 0:3] = True  # 16 tall at the left edge: the square would start at x = -7
    assert square_box(edge) == (2, 0, 16)
    corner = np.zeros((20, 20), dtype=bool)
    corner[15:20, 12:20] = True  # 8 wide at the bottom right: shifted up and left into the image
    assert square_box(corner) == (12, 12, 8)


def test_both_images_are_the_square_crop_with_and_without_its_background() -> None:
    pixels = np.random.default_rng(0).integers(0, 200, (20, 20, 3), dtype=np.uint8)
    probabilities = np.zeros((20, 20), dtype=np.float32)
    probabilities[4:14, 8:12] = 1.0
    probabilities[6, 12] = 1.0  # still the same component, so inside the crop and kept
    images = entity_images(Image.fromarray(pixels), probabilities, threshold=0.3, size=10)
    crop = pixels[4:14, 5:15]
    assert np.array_equal(np.asarray(images.with_background), crop)  # 10 px resized to 10: as is
    white = np.asarray(images.on_white)
    inside = probabilities[4:14, 5:15] > 0.3
    assert np.array_equal(white[inside], crop[inside]) and (white[~inside] == WHITE).all()
    bigger = entity_images(Image.fromarray(pixels), probabilities, threshold=0.3, size=512)
    assert bigger.with_background.size == bigger.on_white.size == (512, 512)
    assert entity_images(Image.fromarray(pixels), np.zeros((20, 20)), threshold=0.3, size=10) is None


def test_the_central_square_is_the_official_crop() -> None:
    assert central_square(Image.new("RGB", (41, 24))) == (0, 8, 24)  # left = (41 - 24) // 2
    assert central_square(Image.new("RGB", (24, 41))) == (8, 0, 24)
