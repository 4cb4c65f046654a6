"""The mini world's attribute classifier and attribute accuracy: training lowers the loss and is
seeded, a briefly trained classifier reads held-out real images far above chance (and shuffled
labels at chance), its features separate FID's distributions, and weights of another world
version are refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch_fidelity
from PIL import Image

from experiments.evaluation.attribute_accuracy import attribute_accuracy
from experiments.mini.attribute_classifier import AttributeClassifier, ClassifierConfig, load_classifier
from experiments.mini.captions import caption
from experiments.mini.feature_extractor import MINI_EXTRACTOR, register_mini_extractor
from experiments.mini.labelled_images import labelled_images
from experiments.mini.train_classifier import ClassifierTraining, train_classifier
from experiments.mini.world import WorldSizes, build_world
from repro.cli import main

SMALL = ClassifierConfig(width=16, features=128)
# Chance per attribute: 2 counts, 3 backgrounds, 4 shapes, 6 colours, 2 sizes, 5 positions.
CHANCE = {
    "count": 1 / 2,
    "background": 1 / 3,
    "shape": 1 / 4,
    "colour": 1 / 6,
    "size": 1 / 2,
    "position": 1 / 5,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sizes = WorldSizes(train_images=1024, heldout_images=256, photos_per_subject=1, stage3_rows=1)
    return build_world(tmp_path_factory.mktemp("mini"), seed=0, sizes=sizes)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """About 40 s of training on this 2-core box: enough to read the world well above chance."""
    training = ClassifierTraining(steps=500, batch_size=32, learning_rate=3e-3, config=SMALL)
    weights, _ = train_classifier(
        world.train_captions,
        world.train_images,
        tmp_path_factory.mktemp("clf"),
        training,
        "pytest",
        log=lambda line: None,
    )
    return weights


@pytest.fixture(scope="module")
def heldout(world):
    labelled = labelled_images(world.val_captions, world.val_images)
    return [item.rgb() for item in labelled], [item.scene for item in labelled]


def test_a_few_steps_lower_the_loss_and_the_seed_fixes_the_weights(world, tmp_path):
    training = ClassifierTraining(steps=100, batch_size=32, learning_rate=3e-3, config=SMALL)
    lines = []
    first, losses = train_classifier(
        world.train_captions, world.train_images, tmp_path / "a", training, "pytest", log=lines.append
    )
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
    assert [json.loads(line)["step"] for line in lines] == [25, 50, 75, 100]
    record = json.loads(first.with_suffix(".json").read_text())
    assert (record["command"], record["seed"], record["steps"]) == ("pytest", 0, 100)
    short = ClassifierTraining(steps=3, batch_size=16, config=SMALL)
    again = [
        train_classifier(
            world.train_captions, world.train_images, tmp_path / name, short, "pytest", log=lambda line: None
        )[0].read_bytes()
        for name in ("b", "c")
    ]
    assert again[0] == again[1]
    other_seed = ClassifierTraining(steps=3, batch_size=16, config=SMALL, seed=1)
    assert (
        train_classifier(
            world.train_captions,
            world.train_images,
            tmp_path / "d",
            other_seed,
            "pytest",
            log=lambda line: None,
        )[0].read_bytes()
        != again[0]
    )


def test_weights_of_another_world_version_are_refused(world, tmp_path):
    training = ClassifierTraining(steps=1, batch_size=4, config=SMALL)
    weights, _ = train_classifier(
        world.train_captions, world.train_images, tmp_path, training, "pytest", log=lambda line: None
    )
    record = json.loads(weights.with_suffix(".json").read_text())
    weights.with_suffix(".json").write_text(json.dumps({**record, "world_version": "0123456789ab"}))
    with pytest.raises(ValueError, match="version '0123456789ab'.*retrain it with `repro mini classifier`"):
        load_classifier(weights)


@pytest.mark.slow
def test_a_briefly_trained_classifier_reads_held_out_images_and_not_shuffled_labels(trained, heldout):
    images, scenes = heldout
    classifier = load_classifier(trained)
    own = attribute_accuracy(classifier, images, scenes)
    shuffled = scenes[:]
    random.Random(0).shuffle(shuffled)
    other = attribute_accuracy(classifier, images, shuffled)
    print("held-out attribute accuracy:", own, "shuffled:", other)
    for attribute, chance in CHANCE.items():
        assert own[attribute] > chance + 0.3 * (1 - chance), attribute
        # Against shuffled labels a reader can only score what the labels share by chance.
        assert other[attribute] == pytest.approx(_agreement(scenes, shuffled, attribute), abs=0.1), attribute
    assert own["overall"] > 0.2 > other["overall"]
    # A generator's larger images are scaled down to the world's size before they are read.
    larger = attribute_accuracy(
        classifier, [image.resize((64, 64), Image.NEAREST) for image in images], scenes
    )
    assert larger["overall"] == pytest.approx(own["overall"], abs=0.05)


def _agreement(scenes: list, others: list, attribute: str) -> float:
    """How often two label sets agree on an attribute, counted as attribute accuracy counts it."""
    if attribute in ("count", "background"):
        same = [_image_value(a, attribute) == _image_value(b, attribute) for a, b in zip(scenes, others)]
    else:
        same = [
            k < len(b.objects) and getattr(obj, attribute) == getattr(b.objects[k], attribute)
            for a, b in zip(scenes, others)
            for k, obj in enumerate(a.objects)
        ]
    return sum(same) / len(same)


def _image_value(scene, attribute: str) -> object:
    return len(scene.objects) if attribute == "count" else scene.background


def test_attribute_accuracy_reads_captions_and_names_a_length_mismatch(heldout):
    images, scenes = heldout
    classifier = AttributeClassifier(SMALL).eval()
    by_caption = attribute_accuracy(classifier, images[:16], [caption(scene, 1) for scene in scenes[:16]])
    assert by_caption == attribute_accuracy(classifier, images[:16], scenes[:16])
    with pytest.raises(ValueError, match="one caption per image"):
        attribute_accuracy(classifier, images[:3], scenes[:2])


@pytest.mark.slow
def test_its_features_put_fid_of_real_images_below_fid_of_a_wrong_world(trained, world, heldout, tmp_path):
    register_mini_extractor()
    images, _ = heldout
    real = tmp_path / "real"
    swapped = tmp_path / "swapped"
    for folder in (real, swapped):
        folder.mkdir()
    for index, image in enumerate(images):
        image.save(real / f"{index}.png")
        # The same scenes with red and blue channels swapped: colours outside the world.
        r, g, b = image.split()
        Image.merge("RGB", (b, g, r)).save(swapped / f"{index}.png")

    def fid(generated: Path) -> float:
        metrics = torch_fidelity.calculate_metrics(
            input1=str(generated),
            input2=str(world.train_images),
            fid=True,
            cuda=False,
            save_cpu_ram=True,
            feature_extractor=MINI_EXTRACTOR,
            feature_extractor_weights_path=str(trained),
            verbose=False,
        )
        return metrics[torch_fidelity.KEY_METRIC_FID]

    # Measured 328 against 117 (256 images against 1024, 128-d features).
    assert fid(swapped) > 2 * fid(real)


def test_repro_mini_classifier_trains_saves_and_scores(world, tmp_path, capsys):
    out = tmp_path / "clf"
    assert (
        main(
            [
                "mini",
                "classifier",
                "--world",
                str(world.root),
                "--out",
                str(out),
                "--steps",
                "2",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["step"] == 2 and json.loads(lines[0])["loss"] > 0
    assert set(json.loads(lines[1])["heldout_attribute_accuracy"]) >= set(CHANCE) | {"overall"}
    record = json.loads((out / "attribute_classifier.json").read_text())
    assert (
        record["command"]
        == f"repro mini classifier --world {world.root} --out {out} --seed 0 --steps 2 --batch-size 4"
    )
    assert main(["mini", "classifier", "--world", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "coco/captions_train.json; build it with `repro mini world`" in capsys.readouterr().err


def test_training_names_an_image_not_of_the_worlds_size(tmp_path):
    small = build_world(
        tmp_path / "w",
        sizes=WorldSizes(train_images=4, heldout_images=1, photos_per_subject=1, stage3_rows=1),
    )
    odd = sorted(small.train_images.iterdir())[2]
    Image.new("RGB", (64, 64)).save(odd)
    with pytest.raises(ValueError, match=f"{odd.name}: not 32 px square"):
        train_classifier(
            small.train_captions,
            small.train_images,
            tmp_path / "clf",
            ClassifierTraining(steps=1),
            "pytest",
            log=lambda line: None,
        )
