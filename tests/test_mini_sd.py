"""The mini Stable Diffusion's training: a few steps lower the VAE's and the U-Net's losses; the folder
is SD v1.5's layout, loaded through the harness's own ImageDecoder and ClipTextTarget, with the
shipped mini CLIP's text tower as its text encoder; each save records the steps its weights hold;
weights of another world version are refused, naming the command that retrains them."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPModel

from experiments.mini.stable_diffusion import MiniSdConfig, check_mini_sd
from experiments.mini.train_stable_diffusion import SdTraining, train_stable_diffusion
from experiments.mini.world import WorldSizes, build_world
from models.image_decoder import ImageDecoder
from models.text_target import ClipTextTarget

pytestmark = pytest.mark.slow  # about a minute: two small trainings

SHIPPED_CLIP = Path(__file__).resolve().parents[1] / "experiments" / "mini" / "weights" / "clip"
SMALL = SdTraining(
    steps=30, batch_size=16, vae_steps=150, vae_batch_size=16, vae_learning_rate=3e-3, save_every=20,
    log_every=10,
    config=MiniSdConfig(vae_channels=(16, 32, 32), unet_channels=(32, 64)),
)  # fmt: skip


def quiet(line: str) -> None:
    pass


def recorded(training: SdTraining) -> str:
    return f"repro mini sd --steps {training.steps}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sizes = WorldSizes(train_images=64, heldout_images=8, photos_per_subject=1, stage3_rows=1)
    return build_world(tmp_path_factory.mktemp("mini"), sizes=sizes)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """The small run, with a copy of its U-Net as saved at step `save_every`."""
    out = tmp_path_factory.mktemp("sd")
    snapshot = tmp_path_factory.mktemp("snapshot") / "unet"

    def log(line: str) -> None:
        entry = json.loads(line)
        if entry["model"] == "unet" and entry["step"] == SMALL.save_every:
            shutil.copytree(out / "unet", snapshot)

    losses = train_stable_diffusion(
        world.train_captions, world.train_images, SHIPPED_CLIP, out, SMALL, recorded, log=log
    )
    return out, losses, snapshot


def test_a_few_steps_lower_both_losses(trained):
    _, (vae_losses, unet_losses), _ = trained
    assert sum(vae_losses[-5:]) < 0.8 * sum(vae_losses[:5])
    assert sum(unet_losses[-5:]) < 0.8 * sum(unet_losses[:5])


def test_the_folder_loads_as_sd_with_the_mini_clip_text_tower(trained):
    out, _, _ = trained
    decoder = ImageDecoder.from_pretrained(str(out))
    target = ClipTextTarget.from_pretrained(str(out))
    assert decoder.cross_attention_dim == target.hidden_size == 64
    clip = CLIPModel.from_pretrained(SHIPPED_CLIP, local_files_only=True)
    with torch.no_grad():
        ids = target.tokenize(["a small red circle on the left on a white background"])
        assert torch.equal(target.text_encoder(ids).last_hidden_state, clip.text_model(ids).last_hidden_state)
    # SD's scaling factor: latents of unit spread for the U-Net.
    assert decoder.vae.config.scaling_factor != 0.18215
    record = json.loads((out / "provenance.json").read_text())
    assert record["training"]["steps"] == SMALL.steps and record["command"] == recorded(SMALL)


def test_weights_of_another_world_version_are_refused(trained, tmp_path):
    out, _, _ = trained
    check_mini_sd(out)
    record = json.loads((out / "provenance.json").read_text())
    copy = tmp_path / "sd"
    (copy / "unet").mkdir(parents=True)
    (copy / "provenance.json").write_text(json.dumps({**record, "world_version": "0ld"}))
    with pytest.raises(ValueError, match="repro mini sd"):
        check_mini_sd(copy)


def test_the_weights_saved_at_step_n_are_those_n_steps_give(world, trained, tmp_path):
    """Nothing depends on the total step count, so a save mid-run is a shorter run's result."""
    _, _, snapshot = trained
    shorter = replace(SMALL, steps=SMALL.save_every)
    train_stable_diffusion(
        world.train_captions, world.train_images, SHIPPED_CLIP, tmp_path, shorter, recorded, log=quiet
    )
    assert json.loads((tmp_path / "provenance.json").read_text())["command"] == recorded(shorter)
    mid_run = load_file(snapshot / "diffusion_pytorch_model.safetensors")
    short = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    assert mid_run.keys() == short.keys()
    assert all(torch.equal(mid_run[k], short[k]) for k in short)
