from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from PIL import Image

from experiments.data.captions import Caption, load_captions, sample_captions
from experiments.tiny.coco import COLOURS, build_coco_fixture


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory):
    return build_coco_fixture(tmp_path_factory.mktemp("coco"), n_train=40, n_val=20)


def test_loads_every_caption_annotation_of_a_coco_file(fixture) -> None:
    data = json.loads(fixture.val_captions.read_text())
    captions = load_captions(fixture.val_captions)
    assert len(captions) == len(data["annotations"]) > len(data["images"])
    files = {image["id"]: image["file_name"] for image in data["images"]}
    for caption, annotation in zip(captions, data["annotations"]):
        image_id = annotation["image_id"]
        assert caption == Caption(image_id, annotation["caption"], files[image_id])
        assert (fixture.val_images / caption.image_file).is_file()


def test_loads_a_jsonl_manifest_with_and_without_images(tmp_path: Path) -> None:
    manifest = tmp_path / "data.jsonl"
    lines = [
        {"caption": " a cat \n", "image": "a.png"},
        {"caption": "a dog"},
        {"caption": "a cat again", "image": "a.png"},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    captions = load_captions(manifest)
    assert [c.caption for c in captions] == ["a cat", "a dog", "a cat again"]
    assert [c.image_file for c in captions] == ["a.png", None, "a.png"]
    assert captions[0].image_id == captions[2].image_id != captions[1].image_id


IMAGES = [{"id": 1, "file_name": "a.png"}]
GOOD = {"image_id": 1, "caption": "a cat"}
ORPHAN = {"image_id": 7, "caption": "an annotation of an image the file does not list"}


@pytest.mark.parametrize(
    "suffix, content, where",
    [
        (".json", {"images": IMAGES, "annotations": [{"image_id": 1, "id": 5}]}, "annotations[0]"),
        (".json", {"images": IMAGES, "annotations": [GOOD, ORPHAN]}, "annotations[1]"),
        (".json", {"images": [{"file_name": "a.png"}], "annotations": []}, "images[0]"),
        (".json", {"annotations": []}, "'images'"),
        (".json", "{not json", "not valid JSON"),
        (".jsonl", '{"caption": "fine"}\n{"caption": "broken"\n', ":2:"),
        (".jsonl", '{"caption": "fine"}\n{"image": "a.png"}\n', ":2:"),
        (".csv", "caption\n", "unknown caption format"),
    ],
)
def test_rejects_a_malformed_file_naming_file_and_entry(tmp_path: Path, suffix: str, content, where: str):
    path = tmp_path / f"captions{suffix}"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError) as err:
        load_captions(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_sample_is_the_official_random_sample_over_all_annotations(fixture) -> None:
    captions = load_captions(fixture.train_captions)
    random.seed(0)  # the official code: random.seed(0); random.sample(annotations, n)
    assert sample_captions(captions, 30, seed=0) == random.sample(captions, 30)
    assert sample_captions(captions, 30, seed=0) == sample_captions(captions, 30, seed=0)
    assert sample_captions(captions, 30, seed=0) != sample_captions(captions, 30, seed=1)
    everything = sample_captions(captions, len(captions), seed=3)
    assert sorted(everything, key=captions.index) == captions  # each annotation once, none missing
    # Drawn over annotations, not images: images come back once per caption.
    assert len({c.image_id for c in everything}) < len(everything)


def test_sample_larger_than_the_data_is_capped_with_a_warning(fixture, caplog: pytest.LogCaptureFixture):
    captions = load_captions(fixture.val_captions)
    with caplog.at_level(logging.WARNING, logger="experiments.data.captions"):
        sample = sample_captions(captions, len(captions) + 10, seed=0)
    assert len(sample) == len(captions)
    assert "only" in caplog.text


def test_fixture_is_deterministic_and_its_captions_describe_its_images(tmp_path: Path, fixture) -> None:
    again = build_coco_fixture(tmp_path, n_train=40, n_val=20)
    for a, b in [(fixture.train_captions, again.train_captions), (fixture.val_captions, again.val_captions)]:
        assert a.read_bytes() == b.read_bytes()
    first = sorted(fixture.train_images.iterdir())
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in sorted(again.train_images.iterdir())]
    captions = load_captions(fixture.train_captions)
    per_image: dict[int, list[str]] = {}
    for c in captions:
        per_image.setdefault(c.image_id, []).append(c.caption)
    assert len(per_image) == 40 and all(2 <= len(texts) <= 5 for texts in per_image.values())
    for c in captions:
        if " on a " in c.caption:  # "a {colour} {shape} on a {background} background"
            colour, background = c.caption.split()[1], c.caption.split(" on a ")[1].split()[0]
            with Image.open(fixture.train_images / c.image_file) as img:
                assert img.size == (32, 32)
                present = {rgb for _, rgb in img.getcolors()}
            assert {COLOURS[colour], COLOURS[background]} <= present
    val_ids = {c.image_id for c in load_captions(fixture.val_captions)}
    assert not val_ids & set(per_image)
