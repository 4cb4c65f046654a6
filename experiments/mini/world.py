"""`build_world`: the mini world on disk in every format the full tier reads, through the tiny
tier's writers where they fit.

    coco/captions_{train,val}.json, coco/{train,val}/   COCO captions (FID, held-out losses); each
                                                        entry of "images" also holds its scene's
                                                        "labels" (experiments/mini/scenes.py)
    laion/part-*.snappy.parquet                         LAION-style metadata (stage 2)
    wds/NNNNN.tar                                       img2dataset webdataset shards (E2E)
    dreambench/<subject>/NN.jpg, prompts_and_classes.txt  DreamBooth's layout, its real prompts file
    stage3/{compositional,edits,captioned}/*.jsonl      stage-3 manifests
    WORLD_VERSION                                       the version the files were drawn under

Same arguments, same bytes: every part draws from its own stream of the seed.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from experiments.data.build import build_compositional
from experiments.data.dreambench_layout import read_prompts_file
from experiments.mini.captions import EDIT_TEMPLATES, caption, captions_of
from experiments.mini.scenes import (
    BACKGROUNDS,
    IMAGE_SIZE,
    OBJECT_COLOURS,
    POSITIONS,
    Scene,
    WorldObject,
    random_scene,
    render,
)
from experiments.mini.subjects import assign_subjects, texture
from experiments.mini.version import WORLD_VERSION
from experiments.tiny.coco import VAL_ID_OFFSET
from experiments.tiny.dreambench_subjects import PROMPTS_FILE
from experiments.tiny.paper_formats import write_laion_parquet, write_webdataset

CAPTIONS_PER_IMAGE = (2, 4)  # fewest, most


@dataclass(frozen=True)
class WorldSizes:
    train_images: int = 4096
    heldout_images: int = 512
    photos_per_subject: int = 4
    stage3_rows: int = 256  # per kind


@dataclass(frozen=True)
class MiniWorld:
    root: Path
    train_captions: Path
    val_captions: Path
    train_images: Path
    val_images: Path
    laion: Path
    webdataset: Path
    dreambench: Path
    compositional: Path
    edits: Path
    captioned: Path


def build_world(root: Path, seed: int = 0, sizes: WorldSizes = WorldSizes()) -> MiniWorld:
    root = Path(root)
    size = IMAGE_SIZE  # part of WORLD_VERSION: weights trained at one size are refused at another
    coco = root / "coco"
    world = MiniWorld(
        root,
        coco / "captions_train.json",
        coco / "captions_val.json",
        coco / "train",
        coco / "val",
        root / "laion",
        root / "wds",
        root / "dreambench",
        root / "stage3" / "compositional" / "compositional.jsonl",
        root / "stage3" / "edits" / "edits.jsonl",
        root / "stage3" / "captioned" / "captioned.jsonl",
    )

    def rng(part: str) -> random.Random:
        return random.Random(f"{seed}/{part}")

    _write_coco_split(world.train_images, world.train_captions, sizes.train_images, size, rng("train"), 0)
    _write_coco_split(
        world.val_images, world.val_captions, sizes.heldout_images, size, rng("val"), VAL_ID_OFFSET
    )
    write_laion_parquet(world.train_captions, world.laion, size=size)
    write_webdataset(world.train_captions, world.train_images, world.webdataset)
    _write_dreambench(world.dreambench, sizes.photos_per_subject, size, seed)
    _write_compositional(world.compositional.parent, sizes.stage3_rows, size, rng("compositional"))
    _write_edits(world.edits, sizes.stage3_rows, size, rng("edits"))
    _write_captioned(world.captioned, sizes.stage3_rows, size, rng("captioned"))
    (root / "WORLD_VERSION").write_text(WORLD_VERSION + "\n")
    return world


def _write_coco_split(
    folder: Path, captions_file: Path, n: int, size: int, rng: random.Random, first_id: int
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for image_id in range(first_id, first_id + n):
        scene = random_scene(rng)
        file_name = f"{image_id:012d}.png"
        render(scene, size, rng)[0].save(folder / file_name)
        images.append(
            {"id": image_id, "file_name": file_name, "width": size, "height": size, "labels": scene.labels()}
        )
        for text in captions_of(scene, rng, rng.randint(*CAPTIONS_PER_IMAGE)):
            annotations.append({"image_id": image_id, "id": first_id + len(annotations), "caption": text})
    info = {"description": "mini world (experiments/mini/world.py)", "world_version": WORLD_VERSION}
    captions_file.write_text(json.dumps({"info": info, "images": images, "annotations": annotations}))


def _write_dreambench(folder: Path, photos: int, size: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROMPTS_FILE, folder / PROMPTS_FILE.name)
    for subject in assign_subjects(sorted(read_prompts_file(PROMPTS_FILE).classes), seed):
        (folder / subject.name).mkdir(exist_ok=True)
        # One stream per subject: adding a subject leaves the others' photos unchanged.
        rng = random.Random(f"{seed}/dreambench/{subject.name}")
        for index in range(photos):
            # Large, so the pattern shows; placement and background vary as a subject's photos do.
            obj = WorldObject(subject.shape, subject.colour, "large", rng.choice(sorted(POSITIONS)))
            scene = Scene((obj,), rng.choice(sorted(BACKGROUNDS)))
            image, _ = render(scene, size, rng, fills={0: texture(subject, size, rng)})
            image.save(folder / subject.name / f"{index:02d}.jpg", quality=95)


def _write_compositional(folder: Path, n: int, size: int, rng: random.Random) -> None:
    source = folder / "source"
    (source / "images").mkdir(parents=True, exist_ok=True)
    (source / "masks").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        scene = random_scene(rng, count=2)
        image, masks = render(scene, size, rng)
        image.save(source / "images" / f"{i}.png")
        first = rng.randrange(2)
        # Entities in the order the caption names them, so each mask meets its own word's span
        # when both objects have the same shape.
        order = (first, 1 - first)
        for k in order:
            masks[k].save(source / "masks" / f"{i}_{k}.png")
        rows.append(
            {
                "image": f"images/{i}.png",
                "caption": caption(scene, rng.randrange(3), first),
                "entities": [scene.objects[k].shape for k in order],
                "masks": [f"masks/{i}_{k}.png" for k in order],
            }
        )
    _write_jsonl(source / "entities.jsonl", rows)
    # Segments at the images' own size: upscaled to the official 512 px they would only cost time.
    build_compositional(source / "entities.jsonl", folder, None, segment_size=size)


def _write_edits(manifest: Path, n: int, size: int, rng: random.Random) -> None:
    images = manifest.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        scene = random_scene(rng, count=1)
        (obj,) = scene.objects
        new_colour = rng.choice([c for c in sorted(OBJECT_COLOURS) if c != obj.colour])
        after = Scene((WorldObject(obj.shape, new_colour, obj.size, obj.position),), scene.background)
        placement = rng.random()  # the same jitter for both, so only the colour changes
        render(scene, size, random.Random(placement))[0].save(images / f"{i}_before.png")
        render(after, size, random.Random(placement))[0].save(images / f"{i}_after.png")
        instruction = rng.choice(EDIT_TEMPLATES).format(
            shape=obj.shape, colour=obj.colour, new_colour=new_colour
        )
        rows.append(
            {
                "source": f"images/{i}_before.png",
                "instruction": instruction,
                "target": f"images/{i}_after.png",
                "caption": caption(scene, rng.randrange(3)),
            }
        )
    _write_jsonl(manifest, rows)


def _write_captioned(manifest: Path, n: int, size: int, rng: random.Random) -> None:
    images = manifest.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        scene = random_scene(rng)
        render(scene, size, rng)[0].save(images / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "caption": captions_of(scene, rng, 1)[0]})
    _write_jsonl(manifest, rows)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
