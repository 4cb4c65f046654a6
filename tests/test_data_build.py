from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from experiments.config import MAX_IMAGE_PIXELS
from experiments.data.batches import WHOLE
from experiments.data.build import build_compositional, find_span
from experiments.data.clipseg import ClipSegSegmenter
from experiments.data.manifest import ManifestError
from experiments.data.segments import entity_images
from experiments.data.shards import open_shards
from experiments.data.stage3_examples import compositional_example
from experiments.data.stage3_rows import PARSERS, load_compositional
from experiments.data.stage3_stream import MixedStepRows, Stage3Kind
from experiments.tiny.models import save_tiny_clipseg
from repro.cli import EXIT_DATA, main

THRESHOLD = 0.5  # the tiny random CLIPSeg's masks sit around 0.5
SEGMENT_SIZE = 16


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clipseg")
    save_tiny_clipseg(path)
    return path


@pytest.fixture(scope="module")
def segmenter(clipseg_dir: Path) -> ClipSegSegmenter:
    return ClipSegSegmenter.from_pretrained(clipseg_dir)


@pytest.fixture
def captioned(tmp_path: Path) -> Path:
    """Four non-square images; the last row names an entity its caption lacks."""
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    rows = [
        ("a red circle and a blue square", ["square", "circle"]),
        ("A dog next to a dog", ["dog", "dog"]),
        ("a cat on a table", ["cat"]),
        ("a ball in the grass", ["ball", "hat"]),
    ]
    for i, (caption, _) in enumerate(rows):
        image = Image.new("RGB", (40, 24), (30 * i, 200, 90))
        ImageDraw.Draw(image).ellipse((4 + i, 3, 20 + i, 19), fill=(250, 20, 20))
        image.save(source / "images" / f"{i}.png")
    lines = [{"image": f"images/{i}.png", "caption": caption, "entities": entities}
             for i, (caption, entities) in enumerate(rows)]
    (source / "entities.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return source / "entities.jsonl"


@pytest.mark.parametrize(
    "caption, word, taken, span",
    [
        ("a dog and a hot dog", "dog", [], (2, 5)),
        ("a dog and a hot dog", "DOG", [(2, 5)], (16, 19)),
        ("a dog and a hot dog", "dog", [(2, 5), (16, 19)], None),
        ("a category of cats", "cat", [], None),
        ("a teddy bear, brown", "teddy bear", [], (2, 12)),
        ("Sunglasses.", "sunglasses", [], (0, 10)),
    ],
)
def test_an_entity_is_the_first_free_whole_word_match(caption, word, taken, span) -> None:
    assert find_span(caption, word, taken) == span


class RecordingSegmenter:
    """Passes the calls on and keeps each mask by (image pixels, word) for the test to compare."""

    def __init__(self, segmenter: ClipSegSegmenter) -> None:
        self.segmenter = segmenter
        self.masks: dict[tuple[bytes, str], np.ndarray] = {}

    def __call__(self, image: Image.Image, words: list[str]) -> list[np.ndarray]:
        masks = self.segmenter(image, words)
        self.masks.update({(image.tobytes(), word): mask for word, mask in zip(words, masks)})
        return masks


def assert_segments_are_cut_from(entity, square: Image.Image, mask: np.ndarray, threshold: float) -> None:
    """The entity's two files are what the official construction makes of `mask` over `square`."""
    expected = entity_images(square, mask, threshold, SEGMENT_SIZE)
    written = ((entity.segment, expected.with_background), (entity.segment_white, expected.on_white))
    for path, image in written:
        with Image.open(path) as opened:
            assert opened.size == (SEGMENT_SIZE, SEGMENT_SIZE)
            assert np.array_equal(np.asarray(opened.convert("RGB")), np.asarray(image))


def test_clipseg_segments_the_central_square_into_both_segment_images(
    captioned: Path, segmenter, tmp_path: Path
) -> None:
    recorder = RecordingSegmenter(segmenter)
    stats = build_compositional(captioned, tmp_path / "out", recorder, THRESHOLD, SEGMENT_SIZE)
    assert stats.rows_read == 4 and stats.skipped_entities["entity_not_in_caption"] == 1
    assert stats.segments_written + stats.skipped_entities["empty_mask"] == 6
    assert stats.segments_written > 0
    loaded = load_compositional(stats.manifest)
    assert len(loaded.rows) == stats.rows_written and loaded.total_skipped == 0
    records = [json.loads(line) for line in stats.manifest.read_text().splitlines()]
    for row, record in zip(loaded.rows, records):
        assert row.image == tmp_path / "out" / record["image"]
        assert row.image.resolve().parent == captioned.parent / "images"
        with Image.open(row.image) as opened:
            square = opened.convert("RGB").crop((8, 0, 32, 24))  # (code) the central 24 x 24 of 40 x 24
        for entity in row.entities:
            assert row.caption[entity.start:entity.end] == entity.word
            mask = recorder.masks[square.tobytes(), entity.word.lower()]  # CLIPSeg saw the square
            assert mask.shape == (24, 24) and 0 <= mask.min() <= mask.max() <= 1
            assert_segments_are_cut_from(entity, square, mask, THRESHOLD)
    dogs = next(row for row in loaded.rows if row.caption.startswith("A dog"))
    assert [(e.word, e.start) for e in dogs.entities] == [("dog", 2), ("dog", 16)]


def test_given_masks_win_and_bad_or_empty_or_missing_masks_are_counted(
    captioned: Path, tmp_path: Path
) -> None:
    source = captioned.parent
    (source / "masks").mkdir()
    circle = Image.new("L", (40, 24), 0)
    ImageDraw.Draw(circle).ellipse((4, 3, 20, 19), fill=255)
    circle.save(source / "masks" / "circle.png")
    Image.new("L", (40, 24), 0).save(source / "masks" / "empty.png")
    Image.new("L", (8, 8), 255).save(source / "masks" / "small.png")
    lines = [json.loads(line) for line in captioned.read_text().splitlines()]
    lines[0]["masks"] = ["masks/empty.png", "masks/circle.png"]
    lines[1]["masks"] = ["masks/small.png", None]
    captioned.write_text("".join(json.dumps(line) + "\n" for line in lines))

    stats = build_compositional(captioned, tmp_path / "out", segmenter=None, segment_size=SEGMENT_SIZE)
    assert stats.skipped_entities == {
        "entity_not_in_caption": 1, "no_mask": 3, "bad_mask": 1, "empty_mask": 1
    }
    [row] = load_compositional(stats.manifest).rows
    [entity] = row.entities
    assert (entity.word, entity.start, entity.end) == ("circle", 6, 12)
    with Image.open(row.image) as opened:
        square = opened.convert("RGB").crop((8, 0, 32, 24))
    mask = np.asarray(circle.crop((8, 0, 32, 24)), dtype=np.float32) / 255.0
    assert_segments_are_cut_from(entity, square, mask, 0.3)  # the official threshold by default
    with Image.open(entity.segment_white) as white:
        assert white.getpixel((SEGMENT_SIZE - 1, 0)) == (255, 255, 255)  # outside the circle
    assert stats.rows_without_entities == 3


def test_input_without_one_usable_row_or_entity_is_an_error_naming_the_file(
    tmp_path: Path, captioned
) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"image": "nowhere.png", "caption": "a cat", "entities": ["cat"]}\n')
    with pytest.raises(ManifestError, match="broken.jsonl"):
        build_compositional(broken, tmp_path / "out", segmenter=None)
    with pytest.raises(ManifestError, match="entities.jsonl"):
        build_compositional(captioned, tmp_path / "out", segmenter=None)
    assert not (tmp_path / "out" / "compositional.jsonl").exists()


def test_repro_data_build_writes_a_manifest_that_loads(
    captioned, clipseg_dir, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert main(["data", "build", "--captioned", str(captioned), "--out", str(out), "--clipseg",
                 str(clipseg_dir), "--threshold", str(THRESHOLD), "--segment-size", "12"]) == 0
    printed = capsys.readouterr().out
    manifest = out / "part-00000" / "compositional.jsonl"
    assert "entity_not_in_caption=1" in printed and str(manifest) in printed
    loaded = load_compositional(manifest)
    assert loaded.total_skipped == 0
    with Image.open(loaded.rows[0].entities[0].segment) as segment:
        assert segment.size == (12, 12)
    assert main(["data", "check", str(manifest), "--kind", "compositional"]) == 0
    assert " 0 skipped" in capsys.readouterr().out


def test_repro_data_refuses_bad_input_with_a_message(captioned, tmp_path: Path, capsys) -> None:
    assert main(["data", "build", "--captioned", str(captioned), "--out", str(tmp_path), "--clipseg",
                 str(tmp_path / "no-such-model")]) == EXIT_DATA
    assert "no-such-model is not a directory" in capsys.readouterr().err
    assert main(["data", "build", "--captioned", str(tmp_path / "none.jsonl"), "--out", str(tmp_path),
                 "--masks"]) == EXIT_DATA
    assert "none.jsonl does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "build", "--captioned", str(captioned), "--out", str(tmp_path), "--masks",
              "--threshold", "1.5"])
    with pytest.raises(SystemExit):
        main(["data", "build", "--captioned", str(captioned), "--out", str(tmp_path), "--masks",
              "--segment-size", "0"])


def test_a_build_over_input_shards_runs_one_task_each_resumes_per_part_and_streams_back(
    captioned: Path, clipseg_dir: Path, tmp_path: Path, capsys
) -> None:
    lines = captioned.read_text().splitlines(keepends=True)
    for k in range(2):  # two input shards beside the images they name
        (captioned.parent / f"entities-{k}.jsonl").write_text("".join(lines[2 * k:2 * k + 2]))
    out = tmp_path / "built"
    command = ["--workdir", str(tmp_path), "data", "build", "--captioned",
               str(captioned.parent / "entities-*.jsonl"), "--out", str(out), "--clipseg", str(clipseg_dir),
               "--threshold", str(THRESHOLD),
               "--segment-size", str(SEGMENT_SIZE)]
    assert main([*command, "--executor", "debug"]) == 0
    parts = sorted(out.glob("part-*/compositional.jsonl"))
    assert [p.parent.name for p in parts] == ["part-00000", "part-00001"]
    capsys.readouterr()

    parts[1].unlink()  # a task that died: only its part is built again
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert f"{parts[0].parent}: already built, skipped" in printed and str(parts[1]) in printed

    shards = open_shards(str(out / "part-*" / "compositional.jsonl"), whole_rows=True)
    (kind,) = [Stage3Kind("compositional", shards,
                          partial(PARSERS["compositional"], max_pixels=MAX_IMAGE_PIXELS),
                          lambda row, rng: compositional_example(row, rng, 0.0, 1.0, MAX_IMAGE_PIXELS))]
    made = MixedStepRows([kind, None, None], (1, 0, 0), batch_size=4, seed=0, resolution=16,
                         max_pixels=MAX_IMAGE_PIXELS)(0, WHOLE)
    assert made.skipped == {} and len(made.items) == 4
    assert {prompt for _, prompt, _ in made.items} >= {"a cat <i> on a table"}  # segments found per part
