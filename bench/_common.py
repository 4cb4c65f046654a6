"""What the benchmarks share: the tiny tier's real configs, full-size random checkpoints for a
GPU, and one JSON report per script that says which machine and how busy it was."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from experiments.config import RunConfig
from experiments.tiny.assets import ensure_tiny_assets
from repro.config import load_matrix
from repro.config.schema import RunSpec

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
TINY_ASSETS = CACHE / "tiny-assets"  # where `repro` keeps them too, so they are built once


def tiny_spec(experiment: str = "aligner-12", **train: Any) -> RunSpec:
    """The tiny tier's run of one experiment (seed 0) as `repro run` launches it, train fields
    replaced."""
    ensure_tiny_assets(TINY_ASSETS)
    matrix = load_matrix(ROOT / "experiments.toml", "tiny", only=experiment, seeds=[0],
                         tiny_assets=TINY_ASSETS, env={})
    spec = matrix.runs[0]
    return replace(spec, config=replace(spec.config, train=replace(spec.config.train, **train)))


def tiny_config(experiment: str = "aligner-12", **train: Any) -> RunConfig:
    return tiny_spec(experiment, **train).config


def full_random_checkpoints() -> tuple[str, str]:
    """Kosmos-2 and SD v1.5 at their real sizes with random weights, saved once under .cache, in
    the layouts the recipes load. Tokenizers, image processor and scheduler come from the tiny
    assets: they only decide token ids, which random weights do not care about."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, Kosmos2Config, Kosmos2Model

    ensure_tiny_assets(TINY_ASSETS)
    root = CACHE / "bench-full-random"
    mllm, sd = root / "kosmos2", root / "sd"
    if not (root / "COMPLETE").is_file():
        torch.manual_seed(0)
        Kosmos2Model(Kosmos2Config()).save_pretrained(mllm)
        for file in (TINY_ASSETS / "kosmos2").iterdir():
            if file.name not in ("config.json", "model.safetensors"):
                (mllm / file.name).write_bytes(file.read_bytes())
        # SD v1.5's CLIP ViT-L/14 text tower and U-Net / VAE (diffusers' defaults are SD v1's).
        clip = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                              projection_dim=768)
        CLIPTextModel(clip).save_pretrained(sd / "text_encoder")
        UNet2DConditionModel(sample_size=64, cross_attention_dim=768).save_pretrained(sd / "unet")
        AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2,
                      sample_size=512).save_pretrained(sd / "vae")
        for folder in ("tokenizer", "scheduler"):
            (sd / folder).mkdir(parents=True, exist_ok=True)
            for file in (TINY_ASSETS / "sd" / folder).iterdir():
                (sd / folder / file.name).write_bytes(file.read_bytes())
        (sd / "model_index.json").write_bytes((TINY_ASSETS / "sd" / "model_index.json").read_bytes())
        (root / "COMPLETE").write_text("1")
    return str(mllm), str(sd)


def full_config(batch_size: int, precision: str, **train: Any) -> RunConfig:
    """The paper's protocol (full tier, 12-layer AlignerNet) on the random full-size checkpoints,
    with the tiny tier's caption files."""
    mllm, sd = full_random_checkpoints()
    tiny = tiny_config()
    return replace(
        tiny,
        models=replace(tiny.models, mllm=mllm, stable_diffusion=sd),
        aligner=type(tiny.aligner)(),
        train=replace(type(tiny.train)(), batch_size=batch_size, precision=precision, **train),
    )


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Adds --threads (default 1: on a shared 2-core box, two torch threads spin in OpenMP
    barriers whenever another process holds a core, and steps get 5x slower and erratic)."""
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def report(bench: str, figures: dict[str, Any], started_load: tuple[float, float, float]) -> None:
    """One JSON object on stdout: the figures and the machine they were measured on."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    print(json.dumps({
        "bench": bench,
        "figures": figures,
        "machine": {
            "device": device, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": sys.version.split()[0],
            "load_avg_1m_before": round(started_load[0], 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
    }, indent=2))


def clock() -> float:
    """A timestamp that waits for queued GPU work first, so intervals cover the work itself."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()
