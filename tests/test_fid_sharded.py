"""FID generation split over torch.distributed ranks: each rank makes its share of the images
into one folder, rank 0 scores them, and the set equals a single process's image for image."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from experiments.config import FidConfig
from experiments.evaluation.fid import evaluate_fid


class NoiseDecoder:
    """Stands in for the SD decoder: an image that depends only on the generator's seed."""

    def sample(self, condition, null_condition, *, guidance, steps, sampler, height, width, generator):
        pixels = torch.randint(0, 256, (len(condition), height, width, 3), generator=generator,
                               dtype=torch.uint8)
        return [Image.fromarray(p.numpy()) for p in pixels]


class ZeroConditioner:
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        return torch.zeros(len(prompts), 77, 8)

    def null(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 77, 8)


def fid_config(assets: Path) -> FidConfig:
    coco = assets / "coco"
    return FidConfig(captions=str(coco / "captions_val.json"), images=str(coco / "val"), num_captions=10,
                     generate_size=32, resolution=32, batch_size=2, feature_extractor="tiny-random-conv")


def evaluate(run_dir: Path, assets: Path) -> dict[str, float]:
    return evaluate_fid(ZeroConditioner(), NoiseDecoder(), fid_config(assets), seed=3, run_dir=run_dir,
                        cache_dir=run_dir / "cache", progress=False)


def _rank(rank: int, world: int, folder: Path, assets: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank,
                            world_size=world)
    try:
        metrics = evaluate(folder / "sharded", assets)
        torch.save(metrics, folder / f"metrics-{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_make_the_single_process_set_and_score_it_once(tiny_assets, tmp_path):
    single = evaluate(tmp_path / "single", tiny_assets)
    mp.spawn(_rank, args=(2, tmp_path, tiny_assets), nprocs=2, join=True)

    rank0, rank1 = torch.load(tmp_path / "metrics-0.pt"), torch.load(tmp_path / "metrics-1.pt")
    assert rank1 == {}
    assert rank0["eval/fid"] == single["eval/fid"]
    made = sorted((tmp_path / "sharded" / "fid" / "generated").glob("*.png"))
    assert [p.name for p in made] == [f"{i:06d}.png" for i in range(10)]
    for path in made:
        assert path.read_bytes() == (tmp_path / "single" / "fid" / "generated" / path.name).read_bytes()
