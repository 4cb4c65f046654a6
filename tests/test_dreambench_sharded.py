"""DreamBench generation split over shards and torch.distributed ranks: each image is made once,
by one rank, and the set equals a single process's image for image; rank 0 alone scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from experiments.config import DreamBenchConfig
from experiments.data.dreambench_layout import (
    benchmark_prompts,
    load_subjects,
    read_prompts_file,
)
from experiments.evaluation.dreambench_generate import generate_dreambench_images
from experiments.evaluation.dreambench_scores import evaluate_dreambench
from tests.support.tiny import tiny_dreambench


class NoiseDecoder:
    """Stands in for the SD decoder: each image depends only on its own generator."""

    def __init__(self) -> None:
        self.made = 0

    def sample(self, condition, null_condition, *, guidance, steps, sampler, height, width, generator):
        self.made += len(generator)
        return [
            Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8).numpy())
            for g in generator
        ]


class PhotoCountingConditioner:
    def __call__(self, prompts: list[str], images: list[list[Image.Image]]) -> torch.Tensor:
        assert all(len(photos) == prompt.count("<i>") == 1 for prompt, photos in zip(prompts, images))
        return torch.zeros(len(prompts), 77, 8)

    def null(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 77, 8)


@pytest.fixture(scope="module")
def cfg(tiny_assets) -> DreamBenchConfig:
    return tiny_dreambench(tiny_assets, subjects=("backpack", "dog", "teapot"), templates=(0, 20, 24),
                           generate_size=16, batch_size=2)


def generate(cfg: DreamBenchConfig, folder: Path, shard: tuple[int, int]) -> int:
    prompts_file = read_prompts_file(cfg.prompts)
    subjects = load_subjects(cfg, prompts_file)
    decoder = NoiseDecoder()
    generate_dreambench_images(
        PhotoCountingConditioner(), decoder, cfg, subjects,
        benchmark_prompts(prompts_file, subjects, cfg.templates), seed=5, folder=folder, progress=False,
        shard=shard,
    )
    return decoder.made


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_shards_make_each_image_once_and_the_single_process_set(cfg, tmp_path):
    assert generate(cfg, tmp_path / "single", (0, 1)) == 18
    assert generate(cfg, tmp_path / "sharded", (0, 2)) + generate(cfg, tmp_path / "sharded", (1, 2)) == 18
    assert files(tmp_path / "sharded") == files(tmp_path / "single")
    assert generate(cfg, tmp_path / "sharded", (1, 2)) == 0


def evaluate(cfg: DreamBenchConfig, run_dir: Path) -> dict[str, float]:
    return evaluate_dreambench(PhotoCountingConditioner(), NoiseDecoder(), cfg, seed=5, run_dir=run_dir,
                               progress=False)


def _rank(rank: int, world: int, folder: Path, cfg: DreamBenchConfig) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank,
                            world_size=world)
    try:
        torch.save(evaluate(cfg, folder / "sharded"), folder / f"metrics-{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_make_the_single_process_set_and_rank_0_scores_it(cfg, tmp_path):
    single = evaluate(cfg, tmp_path / "single")
    mp.spawn(_rank, args=(2, tmp_path, cfg), nprocs=2, join=True)

    rank0, rank1 = torch.load(tmp_path / "metrics-0.pt"), torch.load(tmp_path / "metrics-1.pt")
    assert rank1 == {}
    assert {k: v for k, v in rank0.items() if k != "eval/dreambench_seconds"} == {
        k: v for k, v in single.items() if k != "eval/dreambench_seconds"
    }
    generated = Path("dreambench") / "generated"
    assert files(tmp_path / "sharded" / generated) == files(tmp_path / "single" / generated)
