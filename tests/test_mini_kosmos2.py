"""The mini Kosmos-2: a few steps of multimodal language modelling lower its loss and the seed
fixes the weights; words of its training text are doubled at the configured rate; the trained
folder loads through models/mllm.py's MLLMEncoder as the tiny one does and encodes an interleaved
prompt; weights of another world version are refused; `repro mini kosmos2` trains and records its
command."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from experiments.mini.kosmos2 import load_mini_kosmos2
from experiments.mini.train_kosmos2 import Kosmos2Training, train_kosmos2, with_repeated_words
from experiments.mini.world import WorldSizes, build_world
from models.mllm import MLLMEncoder
from repro.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sizes = WorldSizes(train_images=128, heldout_images=4, photos_per_subject=1, stage3_rows=1)
    return build_world(tmp_path_factory.mktemp("mini"), seed=0, sizes=sizes)


def quiet(line: str) -> None:
    pass


def _losses(training, world, out):
    return train_kosmos2(world.train_captions, world.train_images, out, training, "pytest", log=quiet)


def _weights(training, world, out):
    _losses(training, world, out)
    return load_file(out / "model.safetensors")


def test_a_few_steps_lower_the_loss_and_it_loads_as_the_harness_mllm(world, tmp_path):
    losses = _losses(Kosmos2Training(steps=30, batch_size=32, learning_rate=2e-3), world, tmp_path)
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])
    encoder = MLLMEncoder.from_pretrained(str(tmp_path))
    assert isinstance(load_mini_kosmos2(tmp_path), MLLMEncoder)
    image = Image.new("RGB", (32, 32), "white")
    inputs = encoder.tokenize(["<i> a small red circle on the left"], [[image]])
    hidden, mask = encoder(inputs)
    assert hidden.shape == (1, mask.shape[1], 128) and bool(mask.all())
    assert encoder.tokenizer.unk_token_id not in inputs.input_ids


def test_words_of_the_training_text_are_doubled_at_the_given_rate_and_the_seed_fixes_which():
    caption = "a small red circle left of a large blue square, on a white background"
    words = caption.split()

    def doubled(probability, seed):
        return with_repeated_words(caption, probability, torch.Generator().manual_seed(seed))

    assert doubled(0.0, 0) == caption
    assert doubled(1.0, 0).split() == [word for word in words for _ in (0, 1)]
    assert doubled(0.5, 3) == doubled(0.5, 3) != doubled(0.5, 4)
    long = " ".join(["red"] * 4000)
    share = len(with_repeated_words(long, 0.25, torch.Generator().manual_seed(0)).split()) / 4000 - 1
    assert 0.22 < share < 0.28


def test_the_seed_fixes_the_weights_and_another_world_version_is_refused(world, tmp_path):
    short = Kosmos2Training(steps=2, batch_size=4)
    a, b = (_weights(short, world, tmp_path / name) for name in "ab")
    assert all((a[key] == b[key]).all() for key in a)
    record_file = tmp_path / "a" / "provenance.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "world_version": "0123456789ab"}))
    with pytest.raises(ValueError, match="mini Kosmos-2 .*version '0123456789ab'.*`repro mini kosmos2`"):
        load_mini_kosmos2(tmp_path / "a")


def test_repro_mini_kosmos2_trains_and_records_its_command(world, tmp_path, capsys):
    out = tmp_path / "k2"
    argv = ["mini", "kosmos2", "--world", str(world.root), "--out", str(out)]
    argv += ["--steps", "2", "--batch-size", "4"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["step"] == 2
    record = json.loads((out / "provenance.json").read_text())
    assert record["command"] == " ".join(["repro", *argv[:-4], "--seed", "0", *argv[-4:]])
