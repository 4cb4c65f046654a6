"""Generated images damaged after they were written (a truncated PNG, garbage bytes) are made
again before anything scores them, and only their batch is."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from experiments.evaluation.fid import generate_images


def _colour(caption: str) -> tuple[int, int, int]:
    return (int(caption.split()[1]) * 20, 0, 0)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_generated_image_is_made_again(tmp_path: Path, caplog, damage: str) -> None:
    captions = [f"caption {i}" for i in range(6)]
    calls: list[int] = []

    def generate(batch: list[str], batch_index: int) -> list[Image.Image]:
        calls.append(batch_index)
        return [Image.new("RGB", (16, 16), _colour(c)) for c in batch]

    out = tmp_path / "gen"
    generate_images(generate, captions, out, batch_size=2, resolution=16, progress=False, antialias=False)
    bad = out / "000003.png"
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a png" * 10, "empty": b""}[damage])

    calls.clear()
    with caplog.at_level(logging.WARNING):
        generate_images(generate, captions, out, batch_size=2, resolution=16, progress=False, antialias=False)
    assert calls == [1]  # the batch holding image 3, and no other
    assert str(bad) in caplog.text
    with Image.open(bad) as image:
        image.load()
        assert image.getpixel((8, 8)) == _colour("caption 3")
    assert not list(out.glob(".*.partial"))
