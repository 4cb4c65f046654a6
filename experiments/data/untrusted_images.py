"""Opening an image that came with the data: at the paper's scale some files are empty, cut
short, text saved as .jpg, in a pixel format nothing converts, or decompression bombs (a small
file whose header claims 30,000 x 30,000 pixels). Every reader of data images opens them here, so
each of those is an `UnusableImage` naming its reason, which the readers count as a skipped row,
and none is decoded beyond its header when its size alone rules it out (PIL's `Image.open` reads
the header only; the pixels come at `load`)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# Every reason an image is refused; a reader counts a refused row under its reason.
UNUSABLE_IMAGE_REASONS = (
    "missing_image",  # no such file (or no bytes where the row should hold them)
    "corrupt_image",  # does not decode: an empty file, text saved as .jpg, data cut short or broken
    "image_too_large",  # more pixels than data.max_image_pixels (or PIL's own bomb limit)
    "absurd_image_size",  # a side of 0, or a shape no resize to the training size survives
    "unsupported_image_mode",  # a pixel format PIL cannot convert to the one asked for
)
# Long side over short side. Training scales the short side to its resolution (512) before the
# centre crop: a 1 x 80,000,000 strip, under any pixel limit, would become 512 x 41 billion.
MAX_ASPECT_RATIO = 100
# What PIL's decoders raise for data they cannot make sense of, besides OSError (a truncated
# file): a broken PNG chunk (SyntaxError), a bad table (ValueError, IndexError, struct.error),
# a bad zlib stream, an early end (EOFError).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, IndexError, EOFError, struct.error, zlib.error)


class UnusableImage(ValueError):
    """Why an image cannot be used: `reason` is one of UNUSABLE_IMAGE_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in UNUSABLE_IMAGE_REASONS:
            raise ValueError(f"unknown unusable-image reason {reason!r}")
        super().__init__(message)
        self.reason = reason


def open_untrusted_image(source: Path | bytes, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """The image in `source` (a file, or its encoded bytes) decoded and converted to `mode`, or
    UnusableImage."""
    with _header_checked(source, max_pixels) as image:
        _decode(image, source)
        return _converted(image, mode, source)


def checked_image_size(source: Path | bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) of the image in `source` after checking that every byte of it decodes
    and that it converts to RGB, or UnusableImage: what open_untrusted_image will refuse, found
    at a fraction of its cost. A JPEG decodes at 1/8 scale, which still reads its whole stream
    (verify() alone would pass a truncated one)."""
    with _header_checked(source, max_pixels) as image:
        size = image.size
        image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
        _decode(image, source)
        _converted(image, "RGB", source)
        return size


@contextmanager
def _header_checked(source: Path | bytes, max_pixels: int) -> Iterator[Image.Image]:
    """The image opened lazily (its header read, no pixel decoded), its size within bounds."""
    name = _name(source)
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (FileNotFoundError, IsADirectoryError):
        raise UnusableImage("missing_image", f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise UnusableImage("corrupt_image", f"{name}: not an image any decoder knows") from None
    # PIL refuses past twice its own limit, and warns past it (an error where warnings are).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnusableImage("image_too_large", f"{name}: {error}") from None
    except _DECODER_ERRORS as error:
        raise UnusableImage("corrupt_image", f"{name}: the header does not decode ({error})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise UnusableImage("image_too_large", f"{name}: {width} x {height} pixels, more than "
                                f"data.max_image_pixels = {max_pixels}")
        if min(width, height) < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            raise UnusableImage("absurd_image_size", f"{name}: {width} x {height} pixels")
        yield image


def _decode(image: Image.Image, source: Path | bytes) -> None:
    try:
        image.load()
    except _DECODER_ERRORS as error:
        raise UnusableImage("corrupt_image", f"{_name(source)}: does not decode ({error})") from None


def _converted(image: Image.Image, mode: str, source: Path | bytes) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError as error:  # "conversion from La to L not supported", say
        raise UnusableImage("unsupported_image_mode", f"{_name(source)}: {error}") from None


def _name(source: Path | bytes) -> str:
    return f"an embedded image of {len(source)} bytes" if isinstance(source, bytes) else str(source)
