"""What FID's generation hands the decoder: each batch's conditions, then the null one, and the
guidance, sampler, steps and size of the fid section (a decoder that ignored them could not tell)."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.config import FidConfig
from experiments.evaluation.fid import evaluate_fid
from models.image_decoder import ImageDecoder


class PromptConditioner:
    """Condition rows filled with their prompt's length, the null one with -1: each tells apart."""

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([float(len(p)) for p in prompts]).view(-1, 1, 1).expand(-1, 77, 32).clone()

    def null(self, batch_size: int) -> torch.Tensor:
        return torch.full((batch_size, 77, 32), -1.0)


class RecordingDecoder(ImageDecoder):
    """The tiny SD decoder, sampling for real, with each call's arguments kept."""

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
