"""The mini world: its files open through the readers the full tier uses, their captions name the
images' labels, and a seed decides every byte."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from PIL import Image

from experiments.data.captions import load_captions
from experiments.data.dreambench_layout import read_prompts_file, subject_photos
from experiments.data.shards import open_shards
from experiments.data.stage3_rows import load_captioned, load_compositional, load_edits
from experiments.mini.captions import caption, scene_of
from experiments.mini.labelled_images import labelled_images
from experiments.mini.scenes import SHAPES, random_scene
from experiments.mini.world import WorldSizes, build_world
from repro.cli import main

SIZES = WorldSizes(train_images=48, heldout_images=16, photos_per_subject=2, stage3_rows=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("mini"), seed=0, sizes=SIZES)


def _scenes_by_file(captions_file: Path, images: Path) -> dict[str, object]:
    return {item.path.name: item.scene for item in labelled_images(captions_file, images)}


def test_every_template_names_every_label():
    rng = random.Random(0)
    for _ in range(200):
        scene = random_scene(rng)
        for template in range(3):
            for first in range(len(scene.objects)):
                assert scene_of(caption(scene, template, first)) == scene


def test_a_caption_outside_the_world_is_refused_by_what_it_lacks():
    with pytest.raises(ValueError, match="COLOUR background"):
        scene_of("a small red circle on the left")
    with pytest.raises(ValueError, match="left of"):
        scene_of("a small red circle near a large blue square on a white background")


def test_coco_captions_name_their_images_labels(world):
    scenes = _scenes_by_file(world.train_captions, world.train_images)
    assert len(scenes) == SIZES.train_images
    assert {len(scene.objects) for scene in scenes.values()} == {1, 2}
    captions = load_captions(world.val_captions)
    held_out = _scenes_by_file(world.val_captions, world.val_images)
    assert {c.image_file for c in captions} == set(held_out)
    for c in captions:
        assert scene_of(c.caption) == held_out[c.image_file]
        with Image.open(world.val_images / c.image_file) as image:
            assert image.size == (32, 32)


def test_parquet_and_webdataset_read_through_open_shards(world):
    scenes = _scenes_by_file(world.train_captions, world.train_images)
    texts = {c.caption for c in load_captions(world.train_captions)}
    parquet = [
        r
        for shard in open_shards(str(world.laion), text_column="TEXT")
        for g in range(len(shard.group_sizes()))
        for r in shard.read_group(g)
    ]
    assert sorted(r.caption for r in parquet) == sorted(
        c.caption for c in load_captions(world.train_captions)
    )
    samples = [
        r
        for shard in open_shards(str(world.webdataset))
        for g in range(len(shard.group_sizes()))
        for r in shard.read_group(g)
    ]
    assert len(samples) == len(scenes)
    for record in samples:
        assert record.caption in texts
        with Image.open(io.BytesIO(record.image)) as image:
            assert image.size == (32, 32)
    # The sample's caption names the labels of the image it travels with.
    by_caption = {c.caption: scenes[c.image_file] for c in load_captions(world.train_captions)}
    assert all(scene_of(r.caption) == by_caption[r.caption] for r in samples)


def test_stage3_manifests_read_through_stage3_rows(world):
    compositional = load_compositional(world.compositional)
    assert len(compositional.rows) == SIZES.stage3_rows and compositional.total_skipped == 0
    for row in compositional.rows:
        assert sorted(e.word for e in row.entities) == sorted(
            obj.shape for obj in scene_of(row.caption).objects
        )
        assert all(e.word in SHAPES and e.segment.is_file() for e in row.entities)
    edits = load_edits(world.edits)
    assert len(edits.rows) == SIZES.stage3_rows and edits.total_skipped == 0
    for row in edits.rows:
        new_colour = row.instruction.split()[-1]
        assert scene_of(row.caption).objects[0].colour != new_colour
        assert Path(row.source).read_bytes() != Path(row.target).read_bytes()
    captioned = load_captioned(world.captioned)
    assert len(captioned.rows) == SIZES.stage3_rows
    assert all(row.size == (32, 32) and scene_of(row.caption) for row in captioned.rows)


def test_dreambench_has_every_subject_of_the_real_prompts_file(world):
    prompts = read_prompts_file(world.dreambench / "prompts_and_classes.txt")
    assert len(prompts.classes) == 30
    for name in prompts.classes:
        assert len(subject_photos(world.dreambench, name)) == SIZES.photos_per_subject


def test_same_seed_same_bytes_and_another_seed_other_images(tmp_path, world):
    again = build_world(tmp_path / "again", seed=0, sizes=SIZES)
    files = sorted(p.relative_to(world.root) for p in world.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.root) for p in again.root.rglob("*") if p.is_file())
    assert all((world.root / f).read_bytes() == (again.root / f).read_bytes() for f in files)
    other = build_world(tmp_path / "other", seed=1, sizes=SIZES)
    assert other.val_captions.read_bytes() != world.val_captions.read_bytes()


def test_labels_of_another_world_version_are_refused(tmp_path, world):
    data = json.loads(world.val_captions.read_text())
    data["info"]["world_version"] = "0123456789ab"
    stale = tmp_path / "captions_val.json"
    stale.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="version '0123456789ab'.*repro mini world"):
        labelled_images(stale, world.val_images)


def test_repro_mini_world_writes_the_world(tmp_path, capsys):
    assert (
        main(["mini", "world", "--out", str(tmp_path / "w"), "--train-images", "4", "--heldout-images", "2"])
        == 0
    )
    assert len(load_captions(tmp_path / "w" / "coco" / "captions_train.json")) >= 8
    assert "wrote the mini world" in capsys.readouterr().out
