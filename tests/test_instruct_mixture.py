"""Stage 3's batches: the 2 : 2 : 1 mixture, parts that tile the global batch, and the prompts
built from compositional rows (entity words dropped, backgrounds kept or not)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from experiments.config import MAX_IMAGE_PIXELS
from experiments.data.batches import WHOLE, Part, split_counts
from experiments.data.shards import open_shards
from experiments.data.stage3_examples import (
    Example,
    captioned_example,
    compositional_example,
    edit_example,
)
from experiments.data.stage3_rows import CaptionedRow, CompositionalRow, EditRow, Entity
from experiments.data.stage3_stream import MixedStepRows, Stage3Kind


@pytest.mark.parametrize("total, weights, expect", [
    (1024, (2, 2, 1), [410, 409, 205]),
    (10, (2, 2, 1), [4, 4, 2]),
    (16, (2, 2, 1), [7, 6, 3]),
    (7, (0, 1, 0), [0, 7, 0]),
])
def test_split_counts_follow_the_weights_and_add_up(total, weights, expect):
    assert split_counts(total, weights) == expect


def mixed_rows(folder: Path, counts=(13, 11, 5), weights=(2, 2, 1), seed: int = 3) -> MixedStepRows:
    """Three kinds of `counts` rows each (JSONL manifests); an example's prompt is its row's id."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "target.png"
    Image.new("RGB", (8, 8), (0, 0, 255)).save(target)
    kinds = []
    for name, n in zip(("c", "e", "t"), counts):
        manifest = folder / f"{name}.jsonl"
        manifest.write_text("".join(json.dumps({"id": f"{name}{i}"}) + "\n" for i in range(n)))
        kinds.append(Stage3Kind(name, open_shards(str(manifest), whole_rows=True), _fields,
                                lambda fields, rng, target=target: Example(fields["id"], [], target))
                     if n else None)
    return MixedStepRows(kinds, weights, batch_size=10, seed=seed, resolution=8, max_pixels=MAX_IMAGE_PIXELS)


def _fields(fields: dict, folder: Path) -> dict:
    return fields


def prompts(made) -> list[str]:
    return [prompt for _, prompt, _ in made.items]


def test_every_step_mixes_the_kinds_in_proportion_and_is_reproducible(tmp_path):
    rows = mixed_rows(tmp_path)
    for step in range(6):
        drawn = prompts(rows(step, WHOLE))
        assert Counter(p[0] for p in drawn) == {"c": 4, "e": 4, "t": 2}
        assert drawn == prompts(mixed_rows(tmp_path / "again")(step, WHOLE))
    # Each kind walks through its own rows epoch by epoch: 13 compositional rows, 4 per step.
    seen = [p for step in range(3) for p in prompts(rows(step, WHOLE)) if p[0] == "c"]
    assert len(set(seen)) == 12


def test_parts_tile_the_global_batch(tmp_path):
    rows = mixed_rows(tmp_path, seed=0)
    assert [p for k in range(5) for p in prompts(rows(4, Part(k, 5)))] == prompts(rows(4, WHOLE))


def test_a_kind_with_a_share_but_no_rows_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"data kinds \[2\]"):
        mixed_rows(tmp_path, counts=(3, 3, 0))
    mixed_rows(tmp_path / "no-share", counts=(3, 3, 0), weights=(2, 2, 0))  # no share: fine


def segment_files(folder: Path) -> tuple[Path, Path]:
    """An entity's two segment images: red with its background, and the same on white."""
    red, white = folder / "seg.png", folder / "seg_white.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(red)
    Image.new("RGB", (8, 8), (255, 255, 255)).save(white)
    return red, white


def dog_in_a_hat(folder: Path) -> CompositionalRow:
    segment, white = segment_files(folder)
    return CompositionalRow("a dog wearing a hat in the snow", folder / "target.png", (
        Entity("dog", 2, 5, segment, white), Entity("hat", 16, 19, segment, white)))


def test_compositional_prompts_put_each_segment_after_its_word(tmp_path):
    row = dog_in_a_hat(tmp_path)
    kept = compositional_example(row, random.Random(0), entity_drop_prob=0.0, background_keep_prob=1.0,
                                 max_pixels=MAX_IMAGE_PIXELS)
    assert kept.prompt == "a dog <i> wearing a hat <i> in the snow"
    assert len(kept.images) == 2 and kept.target == row.image
    assert [image.getpixel((0, 0)) for image in kept.images] == [(200, 0, 0)] * 2  # backgrounds kept
    dropped = compositional_example(row, random.Random(0), entity_drop_prob=1.0, background_keep_prob=0.0,
                                    max_pixels=MAX_IMAGE_PIXELS)
    assert dropped.prompt == "a <i> wearing a <i> in the snow"
    assert [image.getpixel((0, 0)) for image in dropped.images] == [(255, 255, 255)] * 2  # on white


def test_entity_words_go_all_at_once_and_backgrounds_one_by_one(tmp_path):
    """(code) openimage_loader.py draws drop_object once per caption, the segment variant per entity."""
    row = dog_in_a_hat(tmp_path)
    examples = [compositional_example(row, random.Random(seed), 0.5, 0.5, MAX_IMAGE_PIXELS)
                for seed in range(300)]
    words = Counter(e.prompt.count("dog") + e.prompt.count("hat") for e in examples)
    assert set(words) == {0, 2} and 110 < words[0] < 190  # never one word without the other
    backgrounds = Counter(sum(image.getpixel((0, 0)) == (200, 0, 0) for image in e.images) for e in examples)
    assert backgrounds[1] > 100  # the two segments choose apart


def test_edit_rows_drop_their_caption_with_its_probability(tmp_path):
    source = tmp_path / "source.png"
    Image.new("RGB", (8, 8), (0, 0, 255)).save(source)
    row = EditRow(source, "make it red", tmp_path / "edited.png", "a blue square")
    edit = edit_example(row, random.Random(0), caption_drop_prob=0.0, max_pixels=MAX_IMAGE_PIXELS)
    assert edit.prompt == "a blue square <i> make it red" and edit.target == tmp_path / "edited.png"
    assert edit.images[0].getpixel((0, 0)) == (0, 0, 255)
    made = edit_example(row, random.Random(0), caption_drop_prob=1.0, max_pixels=MAX_IMAGE_PIXELS)
    assert made.prompt == "<i> make it red"
    uncaptioned = EditRow(source, "make it red", source, None)
    made = edit_example(uncaptioned, random.Random(0), caption_drop_prob=0.0, max_pixels=MAX_IMAGE_PIXELS)
    assert made.prompt == "<i> make it red"
    prompts = Counter(edit_example(row, random.Random(seed), 0.5, MAX_IMAGE_PIXELS).prompt
                      for seed in range(300))
    assert 110 < prompts["<i> make it red"] < 190
    plain = captioned_example(CaptionedRow(source, "a blue square", (8, 8)))
    assert (plain.prompt, plain.images) == ("a blue square", [])
