from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow
import pyarrow.parquet
import pytest
from PIL import Image

from experiments.data.manifest import ManifestError
from experiments.data.stage3_filters import CaptionedFilter
from experiments.data.stage3_rows import (
    CaptionedRow,
    CompositionalRow,
    EditRow,
    Entity,
    load_captioned,
    load_compositional,
    load_edits,
)
from experiments.tiny.stage3 import build_instruct_fixture

CAPTION = "a red circle and a blue square"
CIRCLE = {"word": "circle", "start": 6, "end": 12, "segment": "segments/circle.png",
          "segment_white": "segments/circle_white.png"}
SQUARE = {"word": "square", "start": 24, "end": 30, "segment": "segments/square.png",
          "segment_white": "segments/square_white.png"}
COMPOSITIONAL = {"caption": CAPTION, "image": "images/a.png", "entities": [SQUARE, CIRCLE]}
EDIT = {
    "source": "images/a.png", "instruction": "make the circle blue", "target": "images/b.png",
    "caption": CAPTION,
}
CAPTIONED = {"image": "images/b.png", "caption": "a small green triangle"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A manifest folder with two good images, two entities' segment images, and a corrupt
    file, a truncated PNG and a truncated JPEG."""
    (tmp_path / "images").mkdir()
    (tmp_path / "segments").mkdir()
    Image.new("RGB", (16, 12), (200, 0, 0)).save(tmp_path / "images" / "a.png")
    Image.new("RGB", (16, 12), (0, 0, 200)).save(tmp_path / "images" / "b.png")
    for name in ("circle", "square", "circle_white", "square_white"):
        Image.new("RGB", (5, 5), (1, 2, 3)).save(tmp_path / "segments" / f"{name}.png")
    (tmp_path / "images" / "corrupt.png").write_bytes(b"not an image at all")
    png = (tmp_path / "images" / "a.png").read_bytes()
    (tmp_path / "images" / "truncated.png").write_bytes(png[: len(png) // 2])
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "images" / "whole.jpg")
    jpeg = (tmp_path / "images" / "whole.jpg").read_bytes()
    (tmp_path / "images" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return tmp_path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_each_kind_loads_its_fields_with_paths_under_the_manifest_folder(folder: Path) -> None:
    compositional = load_compositional(write_jsonl(folder / "c.jsonl", [COMPOSITIONAL]))
    assert compositional.rows == (
        CompositionalRow(CAPTION, folder / "images/a.png", (
            # sorted into caption order
            Entity("circle", 6, 12, folder / "segments/circle.png", folder / "segments/circle_white.png"),
            Entity("square", 24, 30, folder / "segments/square.png", folder / "segments/square_white.png"),
        )),
    )
    edits = load_edits(
        write_jsonl(folder / "e.jsonl", [EDIT, {**EDIT, "caption": None}, {**EDIT, "caption": 1}])
    )
    assert edits.rows == (
        EditRow(folder / "images/a.png", "make the circle blue", folder / "images/b.png", CAPTION),
        EditRow(folder / "images/a.png", "make the circle blue", folder / "images/b.png", None),
    )
    assert edits.skipped["bad_field"] == 1
    captioned = load_captioned(write_jsonl(folder / "t.jsonl", [CAPTIONED]))
    assert captioned.rows == (CaptionedRow(folder / "images/b.png", "a small green triangle", (16, 12)),)
    assert captioned.total_skipped == 0


@pytest.mark.parametrize(
    "load, good, bad, reason",
    [
        (load_captioned, CAPTIONED, {**CAPTIONED, "image": "images/corrupt.png"}, "corrupt_image"),
        (load_captioned, CAPTIONED, {**CAPTIONED, "image": "images/truncated.png"}, "corrupt_image"),
        (load_captioned, {**CAPTIONED, "image": "images/whole.jpg"},
         {**CAPTIONED, "image": "images/truncated.jpg"}, "corrupt_image"),
        (load_captioned, CAPTIONED, {**CAPTIONED, "image": "images/gone.png"}, "missing_image"),
        (load_edits, EDIT, {**EDIT, "target": "images/corrupt.png"}, "corrupt_image"),
        (load_compositional, COMPOSITIONAL, {**COMPOSITIONAL, "image": "images/corrupt.png"},
         "corrupt_image"),
        (load_compositional, COMPOSITIONAL,
         {**COMPOSITIONAL, "entities": [CIRCLE, {**SQUARE, "segment_white": "images/corrupt.png"}]},
         "corrupt_image"),
        (load_compositional, COMPOSITIONAL,
         {**COMPOSITIONAL, "entities": [CIRCLE, {**SQUARE, "segment_white": None}]}, "missing_field"),
        (load_compositional, COMPOSITIONAL,
         {**COMPOSITIONAL, "entities": [CIRCLE, {**SQUARE, "word": "hexagon"}]}, "entity_not_in_caption"),
        (load_compositional, COMPOSITIONAL,
         {**COMPOSITIONAL, "entities": [{**CIRCLE, "start": 5, "end": 11}]}, "entity_not_in_caption"),
        (load_compositional, COMPOSITIONAL,
         {**COMPOSITIONAL, "entities": [{**SQUARE, "start": 24, "end": 99}]}, "entity_not_in_caption"),
        (load_compositional, COMPOSITIONAL, {**COMPOSITIONAL, "entities": [CIRCLE, CIRCLE]}, "bad_field"),
        (load_compositional, COMPOSITIONAL, {**COMPOSITIONAL, "entities": []}, "bad_field"),
        (load_compositional, COMPOSITIONAL, {**COMPOSITIONAL, "entities": [{**CIRCLE, "start": True}]},
         "bad_field"),
        (load_compositional, COMPOSITIONAL, {"caption": CAPTION, "image": "images/a.png"}, "missing_field"),
        (load_edits, EDIT, {**EDIT, "instruction": None}, "missing_field"),
        (load_edits, EDIT, {**EDIT, "instruction": "  "}, "bad_field"),
        (load_captioned, CAPTIONED, "{not json", "bad_json"),
        (load_captioned, CAPTIONED, '["a list"]', "bad_json"),
    ],
)
def test_a_bad_row_is_skipped_and_counted_by_reason(folder: Path, load, good, bad, reason, caplog) -> None:
    manifest = write_jsonl(folder / "m.jsonl", [good, bad, "", good])
    with caplog.at_level(logging.WARNING):
        loaded = load(manifest)
    assert len(loaded.rows) == 2
    assert loaded.skipped == {**dict.fromkeys(loaded.skipped, 0), reason: 1}
    assert loaded.first_skip[reason].startswith("line 2: ")
    assert f"{reason}=1" in caplog.text and str(manifest) in caplog.text


def test_parquet_and_jsonl_manifests_give_the_same_rows(folder: Path) -> None:
    for rows, load in (([COMPOSITIONAL], load_compositional), ([EDIT, {**EDIT, "caption": None}], load_edits),
                       ([CAPTIONED], load_captioned)):
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), folder / "m.parquet")
        from_parquet, from_jsonl = load(folder / "m.parquet"), load(write_jsonl(folder / "m.jsonl", rows))
        assert from_parquet.rows == from_jsonl.rows and from_parquet.skipped == from_jsonl.skipped


def test_a_parquet_row_is_skipped_and_counted_like_a_jsonl_line(folder: Path) -> None:
    rows = [CAPTIONED, {**CAPTIONED, "image": "images/corrupt.png"}]
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), folder / "m.parquet")
    loaded = load_captioned(folder / "m.parquet")
    assert len(loaded.rows) == 1 and loaded.skipped["corrupt_image"] == 1
    assert loaded.first_skip["corrupt_image"].startswith("row 2: ")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.jsonl", None, "does not exist"),
        ("m.jsonl", '{"image": "images/corrupt.png", "caption": "x"}\nnot json\n', "no usable row"),
        ("m.jsonl", "\n\n", "no usable row"),
        ("m.parquet", "not parquet", "cannot be read as Parquet"),
        ("m.csv", "image,caption\n", "unknown format"),
    ],
)
def test_an_unusable_manifest_is_an_error_naming_the_file(folder: Path, name, content, message) -> None:
    if content is not None:
        (folder / name).write_text(content)
    with pytest.raises(ManifestError, match=message) as error:
        load_captioned(folder / name)
    assert str(folder / name) in str(error.value)


def test_the_fixture_has_every_kind_and_one_broken_row_of_each_planted_sort(tmp_path: Path) -> None:
    fixture = build_instruct_fixture(tmp_path / "a", n_rows=8)
    compositional, edits = load_compositional(fixture.compositional), load_edits(fixture.edits)
    captioned = load_captioned(fixture.captioned)
    assert (len(compositional.rows), len(edits.rows), len(captioned.rows)) == (8, 8, 9)
    assert compositional.total_skipped == compositional.skipped["entity_not_in_caption"] == 1
    assert edits.total_skipped == edits.skipped["corrupt_image"] == 1
    assert captioned.total_skipped == 0
    # The one small caption-only image is a valid row, which the official size filter refuses.
    refuse = CaptionedFilter(WordTokenizer(), 128, 32)
    assert [refuse(row) for row in captioned.rows] == [None] * 8 + ["small_image"]
    whitened = []
    for row in compositional.rows:
        assert len(row.entities) == 2
        for entity in row.entities:
            with Image.open(entity.segment) as segment, Image.open(entity.segment_white) as white:
                assert segment.size == white.size == (32, 32)  # the tiny images' size
                whitened.append((np.asarray(white) == 255).sum() > (np.asarray(segment) == 255).sum())
    assert sum(whitened) > len(whitened) // 2  # all but the squares, whose crop is all shape
    assert any(row.caption is None for row in edits.rows) and any(row.caption for row in edits.rows)
    again = build_instruct_fixture(tmp_path / "b", n_rows=8)
    for first, second in ((fixture.compositional, again.compositional), (fixture.edits, again.edits)):
        assert first.read_text() == second.read_text()
    assert (compositional.rows[0].entities[0].segment.read_bytes()
            == load_compositional(again.compositional).rows[0].entities[0].segment.read_bytes())


class WordTokenizer:
    """Stands in for the MLLM's SentencePiece tokenizer: one token per word."""

    def __call__(self, text: str, **_: object) -> SimpleNamespace:
        return SimpleNamespace(input_ids=text.split())


def test_caption_only_rows_refuse_small_images_then_long_captions(tmp_path: Path) -> None:
    """(code) laion2b_loader.py: under 384 px on either side, then over 128 SentencePiece tokens;
    a row that fails both counts for the first."""
    rows = [
        CaptionedRow(tmp_path / "a.png", "a dog", (512, 512)),
        CaptionedRow(tmp_path / "b.png", "a dog", (512, 383)),
        CaptionedRow(tmp_path / "c.png", "word " * 129, (640, 480)),
        CaptionedRow(tmp_path / "d.png", "word " * 129, (300, 900)),
        CaptionedRow(tmp_path / "e.png", "word " * 128, (384, 384)),
    ]
    refuse = CaptionedFilter(WordTokenizer(), 128, 384)
    assert [refuse(row) for row in rows] == [None, "small_image", "long_caption", "small_image", None]
    assert [CaptionedFilter(WordTokenizer(), 200, 0)(row) for row in rows] == [None] * 5
