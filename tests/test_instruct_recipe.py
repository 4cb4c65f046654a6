"""Stage 3 on the tiny tier: from an aligned stage-2 run, MLLM + M learn with the diffusion loss
on the 2 : 2 : 1 mixture, skipped rows are counted, and the run ends with DreamBench and FID;
`repro generate` and the diffusers drop-in then use what it trained."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.config import STAGE3_KINDS
from experiments.data.batches import WHOLE
from experiments.recipes.instruct import InstructObjective
from experiments.recipes.run import run_recipe
from experiments.tiny.coco import SHAPES
from experiments.training.checkpoints import trained_weights
from experiments.training.tracker import RecordingTracker
from repro.cli import main as repro_main
from tests.support.runs import finished_stage2
from tests.support.tiny import stage3_config


@pytest.fixture(scope="module")
def stage2_dir(tiny_assets, tmp_path_factory) -> Path:
    """A finished (short) stage-2 run's directory, as the harness leaves it."""
    return finished_stage2(tiny_assets, tmp_path_factory.mktemp("stage2"))


def test_stage3_trains_the_mllm_and_m_only_and_evaluates_both_benchmarks(tiny_assets, stage2_dir, tmp_path):
    config = stage3_config(tiny_assets, stage2_dir)
    objective = InstructObjective(config)
    start = {k: v.clone() for k, v in objective.trainable.state_dict().items()}
    # The fixture's two broken rows (one in each of two 33-row manifests) and its one small
    # caption-only image, which (code) the tiny-sized 384-px rule refuses, are never trained on:
    # over one epoch of each kind, each is met once, skipped, counted and replaced.
    mixture = objective.stream.source
    skipped = Counter()
    for k, rows in enumerate(mixture.rows):
        if rows is None:
            continue
        convert = mixture.converter(k, random.Random(0))
        for position in range(rows.total):
            rows.usable(position, convert, skipped)
    assert skipped == {"edits_corrupt_image": 1, "compositional_entity_not_in_caption": 1,
                       "captioned_small_image": 1}
    assert all(len(mixture(step, WHOLE).items) == config.train.batch_size for step in range(3))
    stage2 = trained_weights(stage2_dir)
    assert all(torch.equal(start[f"aligner.{k}"], v) for k, v in stage2.items())  # starts aligned

    tracker = RecordingTracker()
    result = run_recipe(config, tmp_path, tmp_path / "cache", tracker, progress=False)
    assert result.failure is None
    assert len(tracker.series("train/loss")) == 6 and len(tracker.series("heldout/diffusion_loss")) == 2
    logged = {k.removeprefix("data/skipped_") for k in result.metrics if k.startswith("data/")}
    assert logged <= set(skipped)  # what the 6 steps met of them, if any, is logged by reason
    for name in ("eval/dino", "eval/clip_i", "eval/clip_t"):
        assert 0.0 <= result.metrics[name] <= 1.0, name
    assert result.params["eval/dreambench_images"] == 4 and result.metrics["eval/fid"] > 0
    assert tracker.params["eval/dreambench_images"] == 4 and "eval/dreambench_images" not in tracker.metrics
    assert {(i.name, i.context, i.rows) for i in tracker.inputs} >= {
        ("data.compositional", "training", 33), ("data.edits", "training", 33),  # their rows, broken ones too
        ("data.heldout", "heldout", len(objective.heldout_pairs[1])), ("fid.captions", "evaluation", 8)}
    assert [p.name for p, folder in tracker.artifacts if folder == "dreambench"] == ["dog.png"]

    trained = trained_weights(tmp_path)
    changed = {k for k, v in trained.items() if not torch.equal(v, start[k])}
    assert any(k.startswith("aligner.m.") for k in changed)
    assert any(k.startswith("mllm.model.text_model.") for k in changed)
    assert any(k.startswith("mllm.model.image_to_text_projection.") for k in changed)
    assert not any(k.startswith("aligner.n.") for k in changed)  # N is stage 2's alone
    layers = len(
        {k.split(".layers.")[1].split(".")[0] for k in trained if "vision_model.model.encoder.layers." in k}
    )
    last = f"mllm.model.vision_model.model.encoder.layers.{layers - 1}."
    vision = {k for k in changed if "vision_model" in k}
    assert vision and all(k.startswith(last) or "post_layernorm" in k for k in vision)


def test_generate_writes_images_from_a_run_and_two_input_images(tiny_assets, stage2_dir, tmp_path, capsys):
    photos = sorted((tiny_assets / "dreambench" / "dog").glob("*.jpg"))
    out = tmp_path / "out"
    command = ["--workdir", str(tmp_path), "generate", "--checkpoint", str(stage2_dir),
               "--prompt", "<i> wearing <i> in the jungle", "-n", "3", "--steps", "2", "--size", "32"]
    assert repro_main([*command, "--image", str(photos[0]), "--image", str(photos[1]),
                       "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["0-0.png", "0-1.png", "0-2.png"]
    # One image too few for the prompt's placeholders: a clear error, nothing written.
    assert repro_main([*command, "--image", str(photos[0]), "--out", str(tmp_path / "none")]) == 2
    assert "2 '<i>' placeholders but 1 images" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_the_conditioner_drives_a_stock_diffusers_pipeline(tiny_assets, stage2_dir):
    from diffusers import StableDiffusionPipeline

    from experiments.recipes.generation import load_kosmos_g
    from repro.config.stored import stored_config

    conditioner, _ = load_kosmos_g(stored_config(stage2_dir), stage2_dir)
    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny_assets / "sd"), safety_checker=None, requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    photo = sorted((tiny_assets / "dreambench" / "dog").glob("*.jpg"))[0]
    from PIL import Image

    def generated(prompt: str, photos: list) -> np.ndarray:
        with torch.no_grad():
            embeds = conditioner.pipeline_embeds([prompt], [photos])
        return pipe(**embeds, num_inference_steps=2, height=32, width=32, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    images = generated("<i> on the beach", [Image.open(photo)])
    assert images.shape == (1, 32, 32, 3)
    # The same noise under another prompt gives another image: the embeddings steer the pipeline.
    assert np.abs(images - generated("a red car on the street", [])).max() > 0.01


def test_a_seeded_batch_drops_edit_captions_and_whole_entity_captions(tiny_assets, stage2_dir):
    """(code) --random-drop-caption-prob 0.5: counted on one seeded batch of 100 stage-3 rows,
    each drop replayed from the first draw of the (seed, step, position) stream the rows use."""
    config = stage3_config(tiny_assets, stage2_dir, batch_size=100)
    mixture = InstructObjective(config).stream.source
    kinds = [STAGE3_KINDS[kind] for kind, _ in mixture.places(0)]
    prompts = [prompt for _, prompt, _ in mixture(0, WHOLE).items]
    dropped = [random.Random(f"{config.seed}:0:{p}").random() < 0.5 for p in range(len(prompts))]

    edits = [p for p, kind in enumerate(kinds) if kind == "edits"]
    assert 0 < sum(dropped[p] for p in edits) < len(edits)
    # A dropped caption leaves "<i> instruction"; a kept one leads the prompt, where the row has one.
    assert all(prompts[p].startswith("<i>") for p in edits if dropped[p])
    assert any(not prompts[p].startswith("<i>") for p in edits if not dropped[p])

    def words_before_images(prompt: str) -> int:
        return sum(word in SHAPES for word in re.findall(r"(\S+) <i>", prompt))

    compositional = [p for p, kind in enumerate(kinds) if kind == "compositional"]
    words_left = Counter(words_before_images(prompts[p]) for p in compositional)
    assert set(words_left) == {0, 2}  # both entity words or neither: one draw per caption
    assert [p for p in compositional if words_before_images(prompts[p]) == 0] == [
        p for p in compositional if dropped[p]]
