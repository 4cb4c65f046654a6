"""Bad rows are skipped and counted, never fatal, up to data.max_bad_fraction of the rows read
from one file; past it the run stops with an error naming the file and the count."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from experiments.config import MAX_IMAGE_PIXELS, DataConfig
from experiments.data.batches import WHOLE
from experiments.data.items import CaptionItem, ImageCaptionItem
from experiments.data.shards import DataError, Record, open_shards
from experiments.data.stream import BAD_FRACTION_MIN_ROWS, Skip, StepRows, StepStream


class WordTokenizer:
    """Stands in for CLIP's tokenizer: one token per word."""

    def __call__(self, text: str, **_: object) -> SimpleNamespace:
        return SimpleNamespace(input_ids=text.split())


def _caption(record: Record) -> str | Skip:
    return record.caption if record.caption else Skip("no_caption")


def _manifest(path: Path, rows: int, bad_every: int) -> Path:
    lines = ["{not json" if bad_every and i % bad_every == 0 else json.dumps({"caption": f"row {i}"})
             for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _steps(path: Path, max_bad_fraction: float) -> StepStream:
    rows = StepRows(open_shards(str(path)), _caption, batch_size=10, seed=0)
    return StepStream(rows, DataConfig(train=str(path), heldout="", num_workers=0,
                                       max_bad_fraction=max_bad_fraction), pin_memory=False)


def test_a_few_bad_lines_are_skipped_and_counted(tmp_path: Path):
    steps = _steps(_manifest(tmp_path / "captions.jsonl", 300, bad_every=10), max_bad_fraction=0.2)
    for step in range(30):  # every row, once
        assert len(steps.take(step, WHOLE)) == 10
    assert 0 < steps.counts()["skipped_no_caption"] <= 0.2 * 330


def test_past_the_threshold_the_error_names_the_file_and_the_count(tmp_path: Path):
    path = _manifest(tmp_path / "captions.jsonl", 300, bad_every=2)
    steps = _steps(path, max_bad_fraction=0.25)
    with pytest.raises(DataError) as broken:
        for step in range(30):
            steps.take(step, WHOLE)
    message = str(broken.value)
    assert message.startswith(f"{path}: ")
    read, bad = steps.sources[(str(path), "read")], steps.sources[(str(path), "bad")]
    assert read >= BAD_FRACTION_MIN_ROWS and f"{bad} of the {read} rows" in message
    assert "data.max_bad_fraction = 0.25" in message


def test_a_garbage_or_truncated_image_is_a_skipped_row(tmp_path: Path):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 0, 0)).save(buffer, format="PNG")
    png = buffer.getvalue()
    item = ImageCaptionItem(CaptionItem(WordTokenizer(), max_tokens=75), image_root=tmp_path, resolution=8,
                            max_pixels=MAX_IMAGE_PIXELS)
    (tmp_path / "garbage.png").write_bytes(b"\x00garbage" * 20)
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    for image in (b"not an image", png[: len(png) // 2], "garbage.png", "truncated.png"):
        assert item(Record("a red square", image)) == Skip("corrupt_image"), image
    assert item(Record("a red square", "missing.png")) == Skip("missing_image")
    tensor, caption = item(Record("a red square", png))
    assert tensor.shape == (3, 8, 8) and caption == "a red square"
