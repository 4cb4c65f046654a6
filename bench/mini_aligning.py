"""(k) How learnable stage-2 aligning is on the mini world, without training an AlignerNet: the
shipped mini Kosmos-2 (dropout off) and the mini SD's CLIP text tower encode training and
held-out captions once, then the held-out MSE of predictors that bound what aligning can reach:
each position's mean CLIP state (what an aligner that ignores the caption scores), and ridge
regressions, closed form, from the flattened MLLM states and from their mean (a bag of words).
Beside them, the spectrum of the mean states, which says how slowly gradient descent reaches
the directions in which captions differ (docs/performance.md, "Why MSE-aligning is slow here").

    python -m bench.mini_aligning [--train 6000] [--heldout 512] [--positions 24] [--ridge 1.0]
"""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd
import torch

from bench._common import CACHE, parse_args, report
from experiments.mini.assets import ensure_mini_assets
from models.mllm import MLLMEncoder
from models.text_target import ClipTextTarget

BATCH = 256


def encode(mllm: MLLMEncoder, target: ClipTextTarget, captions: list[str], positions: int):
    """MLLM states cut or zero-padded to `positions` (pads zeroed), their mask, the CLIP states."""
    states, masks, targets = [], [], []
    with torch.no_grad():
        for start in range(0, len(captions), BATCH):
            batch = captions[start : start + BATCH]
            source, mask = mllm(mllm.tokenize(batch))
            pad = positions - source.shape[1]
            states.append(torch.nn.functional.pad(source * mask[..., None], (0, 0, 0, pad))[:, :positions])
            masks.append(torch.nn.functional.pad(mask, (0, pad))[:, :positions])
            targets.append(target(batch))
    return torch.cat(states), torch.cat(masks), torch.cat(targets)


def ridge_mse(features: torch.Tensor, targets: torch.Tensor, heldout_features: torch.Tensor,
              heldout_targets: torch.Tensor, strength: float) -> float:
    """Held-out MSE of a ridge regression fitted in closed form on centred features and targets."""
    x, hx = features.flatten(1).double(), heldout_features.flatten(1).double()
    y = targets.flatten(1).double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    x, hx, y = x - x_mean, hx - x_mean, y - y_mean
    weights = torch.linalg.solve(x.T @ x + strength * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    predicted = (hx @ weights + y_mean).float().view_as(heldout_targets)
    return ((heldout_targets - predicted) ** 2).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=6000, help="training captions (default: 6000)")
    parser.add_argument("--heldout", type=int, default=512, help="held-out captions (default: 512)")
    parser.add_argument("--positions", type=int, default=24, help="MLLM states kept per caption")
    parser.add_argument("--ridge", type=float, default=1.0, help="ridge strength")
    args = parse_args(parser)
    load = os.getloadavg()
    torch.manual_seed(0)
    world = ensure_mini_assets(CACHE / "mini-assets")
    mllm = MLLMEncoder.from_pretrained(str(world / "kosmos2")).eval()
    target = ClipTextTarget.from_pretrained(str(world / "sd"))
    train = pd.read_parquet(world / "laion").sample(frac=1, random_state=0)["TEXT"].tolist()[: args.train]
    heldout = json.loads((world / "coco" / "captions_val.json").read_text())["annotations"]
    heldout_captions = [annotation["caption"] for annotation in heldout][: args.heldout]
    source, mask, clip = encode(mllm, target, train, args.positions)
    heldout_source, heldout_mask, heldout_clip = encode(mllm, target, heldout_captions, args.positions)

    def pooled(states: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return states.sum(1) / real.sum(1, keepdim=True)

    mean_states = pooled(source, mask)
    second_moment = torch.linalg.eigvalsh(mean_states.T @ mean_states / len(train))[-1].item()
    spread = torch.linalg.eigvalsh(torch.cov(mean_states.T)).flip(0)
    report("mini_aligning", {
        "train_captions": len(train), "heldout_captions": len(heldout_captions),
        "heldout_mse": {
            "per_position_mean": ((heldout_clip - clip.mean(0)) ** 2).mean().item(),
            "ridge_flattened_states": ridge_mse(source, clip, heldout_source, heldout_clip, args.ridge),
            "ridge_mean_state": ridge_mse(
                mean_states, clip, pooled(heldout_source, heldout_mask), heldout_clip, args.ridge
            ),
        },
        "mean_state_second_moment_top": second_moment,
        "mean_state_variance_top10": spread[:10].tolist(),
        "mean_state_directions_over_0.01": int((spread > 0.01).sum()),
    }, load)


if __name__ == "__main__":
    main()
