"""Images that cannot crash a run: every way a decoder refuses an image (a decompression bomb, a
truncated JPEG, a pixel format with no conversion, an empty file, text saved as .jpg, a strip no
resize survives) is a skipped row counted by its reason, in E2E's webdataset stream, in stage 3's
manifests and in `repro data build`, while the usable rows (CMYK, 16-bit and palette images among
them) train; data.max_image_pixels refuses an image by its header, before decoding it."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.config import MAX_IMAGE_PIXELS
from experiments.data.batches import WHOLE
from experiments.data.dreambench_layout import open_photo
from experiments.data.items import CaptionItem, ImageCaptionItem
from experiments.data.shards import Record, open_shards
from experiments.data.stage3_examples import edit_example
from experiments.data.stage3_rows import PARSERS
from experiments.data.stage3_stream import MixedStepRows, Stage3Kind
from experiments.data.stream import Skip
from experiments.data.untrusted_images import UnusableImage
from experiments.recipes.e2e import E2EObjective
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from repro.cli import EXIT_DATA, main
from repro.config import ConfigError
from tests.support.tiny import tiny_config

SIDE = 32


def _encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height RGB pixels and holds a few bytes of them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(16)))
            + chunk(b"IEND", b""))


def _premultiplied_grey_tiff() -> bytes:
    """A TIFF whose alpha is marked premultiplied (ExtraSamples = 1): PIL opens it as mode "La",
    which converts to nothing. PIL writes ExtraSamples = 2, so the tag's value is patched."""
    data = _encoded(Image.new("LA", (SIDE, SIDE), (90, 200)), "TIFF")
    unassociated = struct.pack("<HHIH", 338, 3, 1, 2)
    assert data.count(unassociated) == 1
    return data.replace(unassociated, struct.pack("<HHIH", 338, 3, 1, 1))


def _noise() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))


def _unusable() -> dict[str, tuple[bytes, str]]:
    """name -> (encoded image, the reason it is skipped for)."""
    jpeg = _encoded(_noise(), "JPEG")
    return {
        "bomb": (_png_header(30_000, 30_000), "image_too_large"),
        "truncated": (jpeg[: len(jpeg) // 2], "corrupt_image"),
        "premultiplied": (_premultiplied_grey_tiff(), "unsupported_image_mode"),
        "empty": (b"", "corrupt_image"),
        "text": (b"a red circle on a white background", "corrupt_image"),
        "strip": (_encoded(Image.new("RGB", (1, 200)), "PNG"), "absurd_image_size"),
    }


def _usable() -> dict[str, bytes]:
    noise = _noise()
    return {
        "rgb": _encoded(noise, "JPEG"),
        "cmyk": _encoded(noise.convert("CMYK"), "JPEG"),
        "sixteen_bit": _encoded(Image.fromarray(np.full((SIDE, SIDE), 40_000, dtype=np.uint16)), "PNG"),
        "palette": _encoded(noise.convert("P"), "PNG"),
        "grey": _encoded(noise.convert("L"), "PNG"),
        "rgba": _encoded(noise.convert("RGBA"), "PNG"),
    }


def _samples() -> list[tuple[str, bytes]]:
    """Unusable and usable images in turn: a skipped row is replaced by the next row in file
    order, so each unusable one is met, and counted, once a pass."""
    usable, unusable = list(_usable().items()), [(name, data) for name, (data, _) in _unusable().items()]
    return [sample for pair in zip(unusable, usable) for sample in pair]


def _expected_skips(prefix: str = "") -> dict[str, int]:
    return dict(Counter(f"{prefix}{reason}" for _, reason in _unusable().values()))


def _write_images(folder: Path) -> dict[str, str]:
    """Every image as a .jpg file (decoders go by content); name -> its path under `folder`."""
    (folder / "images").mkdir(parents=True)
    files = {}
    for name, data in _samples():
        files[name] = f"images/{name}.jpg"
        (folder / files[name]).write_bytes(data)
    return files


def test_e2e_trains_on_the_usable_rows_of_a_shard_and_counts_the_rest_by_reason(tiny_assets, tmp_path):
    samples = _samples()
    shard = tmp_path / "00000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, (name, data) in enumerate(samples):
            for extension, content in (("jpg", data), ("txt", f"a red {name}".encode())):
                info = tarfile.TarInfo(f"{key:04d}.{extension}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    # One step is one pass over the shard, so each row is met once a step.
    config = tiny_config(tiny_assets, "e2e-linear", {"data.train": str(shard), "data.num_workers": 0,
                                                     "train.optim.warmup_steps": 1},
                         steps=2, batch_size=len(samples), log_every=1, eval_every=100, checkpoint_every=100)
    objective = E2EObjective(config)
    images, captions = zip(*objective.stream.source(0, WHOLE).items)  # not counted: the training below counts
    assert set(captions) == {f"a red {name}" for name in _usable()}
    assert all(image.shape == (3, config.train.resolution, config.train.resolution) for image in images)

    tracker = RecordingTracker()
    outcome = train(objective, config.train, tmp_path / "run", tracker, progress=False)
    assert outcome.failure is None and all(np.isfinite(tracker.series("train/loss")))
    for reason, count in _expected_skips().items():
        assert tracker.series(f"data/skipped_{reason}") == [count, 2 * count], reason


def test_stage3_edits_skip_each_unusable_image_by_reason_and_keep_the_rest(tmp_path):
    files = _write_images(tmp_path)
    Image.new("RGB", (SIDE, SIDE), (0, 0, 200)).save(tmp_path / "source.png")
    rows = [{"source": "source.png", "instruction": f"edit {name}", "target": file}
            for name, file in files.items()]
    (tmp_path / "edits.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    edits = Stage3Kind("edits", open_shards(str(tmp_path / "edits.jsonl"), whole_rows=True),
                       partial(PARSERS["edits"], max_pixels=MAX_IMAGE_PIXELS),
                       partial(edit_example, caption_drop_prob=0.0, max_pixels=MAX_IMAGE_PIXELS))
    made = MixedStepRows([None, edits, None], (0, 1, 0), batch_size=len(rows), seed=0, resolution=8,
                         max_pixels=MAX_IMAGE_PIXELS)(0, WHOLE)
    assert made.skipped == _expected_skips("edits_")
    assert {prompt for _, prompt, _ in made.items} == {f"<i> edit {name}" for name in _usable()}
    assert all(target.shape == (3, 8, 8) and torch.isfinite(target).all() for target, _, _ in made.items)


def test_data_build_skips_each_unusable_input_image_by_reason(tmp_path, capsys):
    files = _write_images(tmp_path)
    (tmp_path / "masks").mkdir()
    Image.new("L", (SIDE, SIDE), 255).save(tmp_path / "masks" / "all.png")
    rows = [{"image": file, "caption": "a red circle", "entities": ["circle"], "masks": ["masks/all.png"]}
            for file in files.values()]
    (tmp_path / "captioned.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = ["--workdir", str(tmp_path / "work"), "data", "build",
               "--captioned", str(tmp_path / "captioned.jsonl"),
               "--masks", "--segment-size", "8"]

    assert main([*command, "--out", str(tmp_path / "built")]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {len(_usable())} row(s)" in printed
    for reason, count in _expected_skips().items():
        assert f"{reason}={count}" in printed, printed

    # Under this limit every 32 x 32 image (or one claiming more) is refused by its header; the
    # empty file, the text and the 1 x 200 strip are refused for what they are.
    too_few = ["--max-image-pixels", str(SIDE * SIDE - 1)]
    assert main([*command, "--out", str(tmp_path / "none"), *too_few]) == EXIT_DATA
    assert f"image_too_large={len(files) - 3}" in capsys.readouterr().err


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_the_pixel_limit_reads_the_header_and_a_bomb_warning_is_a_skip_too(tmp_path):
    item = partial(ImageCaptionItem, CaptionItem(_Words(), 75), None, 8)
    image = _usable()["rgb"]
    assert item(SIDE * SIDE - 1)(Record("a red square", image)) == Skip("image_too_large")
    assert item(SIDE * SIDE)(Record("a red square", image))[1] == "a red square"
    # Past PIL's own limit, PIL warns as it opens the file (here, an error) before any check of ours.
    huge = Record("a red square", _png_header(10_000, 10_000))
    assert item(MAX_IMAGE_PIXELS)(huge) == Skip("image_too_large")
    # A DreamBench photo is not a row to skip: it is an error naming the file.
    (tmp_path / "bomb.jpg").write_bytes(_png_header(30_000, 30_000))
    with pytest.raises(UnusableImage, match="bomb.jpg"):
        open_photo(tmp_path / "bomb.jpg")


def test_max_image_pixels_is_validated_up_to_pils_limit(tiny_assets):
    for bad in (0, MAX_IMAGE_PIXELS + 1):
        with pytest.raises(ConfigError, match="data.max_image_pixels"):
            tiny_config(tiny_assets, "e2e-linear", {"data.max_image_pixels": bad})


class _Words:
    """A tokenizer of whitespace words, enough for the caption filter."""

    def __call__(self, text: str, **_: object):
        class Encoded:
            input_ids = text.split()

        return Encoded()
