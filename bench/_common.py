"""What the benchmarks share: the tiny tier's real configs, the full-size random checkpoints (for a
GPU), and one JSON report per script that says which machine and how busy it was."""

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

from experiments.config import Precision, RunConfig
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
    """Kosmos-2 and SD v1.5 at their real sizes with random weights, in the published layouts
    (experiments/fixtures, as `repro fixtures full` builds them), saved once under .cache."""
    from experiments.fixtures.build import build_full_fixtures

    exports = build_full_fixtures(
        CACHE / "full-fixtures", parts=("kosmos-2-patch14-224", "stable-diffusion-v1-5")
    )
    return str(exports["KOSMOS_MLLM"]), str(exports["KOSMOS_SD"])


def full_config(batch_size: int, precision: Precision, **train: Any) -> RunConfig:
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
