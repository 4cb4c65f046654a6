"""What FID's and DreamBench's generation hand the decoder: each batch's conditions, then the null
one, and the guidance, sampler, steps and size of their config section (the sharding tests' stand-in
decoders ignore them all)."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.config import FidConfig
from experiments.data.dreambench_layout import benchmark_prompts, load_subjects, read_prompts_file
from experiments.evaluation.dreambench_generate import generate_dreambench_images
from experiments.evaluation.fid import evaluate_fid
from models.image_decoder import ImageDecoder
from tests.support.tiny import tiny_dreambench


class PromptConditioner:
    """Condition rows filled with their prompt's length, the null one with -1: each tells apart."""

    def __call__(self, prompts: list[str], images=None) -> torch.Tensor:
        return torch.tensor([float(len(p)) for p in prompts]).view(-1, 1, 1).expand(-1, 77, 32).clone()

    def null(self, batch_size: int) -> torch.Tensor:
        return torch.full((batch_size, 77, 32), -1.0)


class RecordingDecoder(ImageDecoder):
    """The tiny SD decoder, sampling for real, with each call's arguments kept."""

    calls: list

    def sample(self, condition, null_condition, **kwargs):
        self.calls.append((condition.clone(), null_condition.clone(), kwargs))
        return super().sample(condition, null_condition, **kwargs)


def test_fid_samples_the_conditions_against_the_null_with_the_fid_guidance(tiny_assets: Path, tmp_path: Path):
    coco = tiny_assets / "coco"
    fid = FidConfig(captions=str(coco / "captions_val.json"), images=str(coco / "val"), num_captions=4,
                    generate_size=32, resolution=32, batch_size=2, steps=2, sampler="dpm", guidance=4.5,
                    feature_extractor="tiny-random-conv")
    decoder = RecordingDecoder.from_pretrained(str(tiny_assets / "sd"))
    decoder.calls = []
    conditioner = PromptConditioner()
    metrics = evaluate_fid(conditioner, decoder, fid, seed=0, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                           progress=False)
    assert metrics["eval/num_images"] == 4 and len(decoder.calls) == 2
    for condition, null, kwargs in decoder.calls:
        assert (null == -1).all() and (condition > 0).all()  # condition first, then the null one
        assert kwargs["guidance"] == 4.5 and kwargs["sampler"] == "dpm" and kwargs["steps"] == 2
        assert kwargs["height"] == kwargs["width"] == 32


def test_dreambench_samples_each_images_prompt_against_the_null_with_its_guidance(tiny_assets: Path,
                                                                                   tmp_path: Path):
    cfg = tiny_dreambench(tiny_assets, subjects=("dog",), templates=(0, 20), generate_size=32, batch_size=2,
                          guidance=5.5, sampler="ddim", steps=2)
    prompts_file = read_prompts_file(cfg.prompts)
    prompts = benchmark_prompts(prompts_file, load_subjects(cfg, prompts_file), cfg.templates)
    decoder = RecordingDecoder.from_pretrained(str(tiny_assets / "sd"))
    decoder.calls = []
    generate_dreambench_images(PromptConditioner(), decoder, cfg, load_subjects(cfg, prompts_file), prompts,
                               seed=0, folder=tmp_path, progress=False)
    (condition, null, kwargs), = decoder.calls  # 2 prompts x 2 images in one batch
    # Image by image, its own prompt's condition (the batch repeats each prompt per image).
    lengths = [float(len(p.input_prompt)) for p in prompts for _ in range(cfg.images_per_prompt)]
    assert condition[:, 0, 0].tolist() == lengths and (null == -1).all()
    assert (kwargs["guidance"], kwargs["sampler"], kwargs["steps"]) == (5.5, "ddim", 2)
    assert kwargs["height"] == kwargs["width"] == 32
