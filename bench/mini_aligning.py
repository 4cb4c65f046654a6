"""(k) How learnable stage-2 aligning is on the mini world (experiments/mini/aligning_probe.py): the
shipped mini Kosmos-2 (dropout off) and the mini SD's CLIP text tower encode training and
held-out captions once. Then:

- held-out MSE of predictors that bound what aligning can reach: each position's mean CLIP state
  (an aligner that ignores the caption) and ridge regressions, closed form, from the flattened
  MLLM states and from their mean (a bag of words);
- the mini SD's attribute accuracy on held-out captions drawn from CLIP's own states, from the
  flattened ridge's and from the per-position mean: how close to CLIP an aligner must come;
- the mini tier's 12-layer AlignerNet, trained with the tier's optimiser, batch and steps (from
  experiments.toml) on three sources for the same captions: the MLLM's states as they are, the
  same states whitened, and a random embedding of each token. Held-out MSE along the way;
- how far each encoding moves when one attribute word of a held-out caption changes ("red" to
  "blue"), against how far captions lie apart: the MLLM's states barely move where CLIP's do;
- the spectrum of the mean states, which says how slowly gradient descent reaches the
  directions in which captions differ.

docs/performance.md, "Why MSE-aligning is slow here".

    python -m bench.mini_aligning [--train 6000] [--heldout 512] [--sd-captions 128] [--steps N] [--lr LR]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace

import pandas as pd
import torch

from bench._common import CACHE, ROOT, parse_args, report
from experiments.evaluation.attribute_accuracy import attribute_accuracy
from experiments.mini.aligning_probe import (
    EncodedCaptions,
    RidgeMap,
    encode_captions,
    heldout_mse,
    one_word_swapped,
    position_means,
    relative_change,
    short_aligner_run,
    token_embedded,
    whitened,
)
from experiments.mini.assets import ensure_mini_assets
from experiments.mini.attribute_classifier import load_classifier
from experiments.mini.scenes import OBJECT_COLOURS, SHAPES, SIZES
from experiments.mini.sd_check import SHIPPED_CLASSIFIER, conditioned_images
from models.aligner import build_aligner
from models.image_decoder import ImageDecoder
from models.mllm import MLLMEncoder
from models.text_target import ClipTextTarget
from repro.config import load_matrix
from repro.config.paths import MINI_PREFIX

POSITIONS = 24  # MLLM states kept per caption: the world's longest caption is 17 tokens with <s>, </s>


def mean_state(encoded: EncodedCaptions) -> EncodedCaptions:
    """Each caption's MLLM states averaged over its tokens: a bag of words, as one position."""
    pooled = encoded.states.sum(1, keepdim=True) / encoded.mask.sum(1, keepdim=True)[..., None]
    return replace(encoded, states=pooled)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=6000, help="training captions (default: 6000)")
    parser.add_argument("--heldout", type=int, default=512, help="held-out captions (default: 512)")
    parser.add_argument("--sd-captions", type=int, default=128, help="held-out captions the mini SD draws")
    parser.add_argument("--ridge", type=float, default=1.0, help="ridge strength")
    parser.add_argument("--steps", type=int, default=None, help="aligning steps (default: the mini tier's)")
    parser.add_argument("--lr", type=float, default=None, help="aligning peak lr (default: the mini tier's)")
    args = parse_args(parser)
    load = os.getloadavg()
    torch.manual_seed(0)
    world = ensure_mini_assets(CACHE / "mini-assets")
    mllm = MLLMEncoder.from_pretrained(str(world / "kosmos2")).eval()
    target = ClipTextTarget.from_pretrained(str(world / "sd"))
    captions = pd.read_parquet(world / "laion").sample(frac=1, random_state=0)["TEXT"].tolist()
    heldout_annotations = json.loads((world / "coco" / "captions_val.json").read_text())["annotations"]
    heldout_captions = [annotation["caption"] for annotation in heldout_annotations][: args.heldout]
    train = encode_captions(mllm, target, captions[: args.train], POSITIONS)
    heldout = encode_captions(mllm, target, heldout_captions, POSITIONS)

    ridge = RidgeMap.fit(train, args.ridge)
    means = position_means(train, len(heldout))
    predictors = {"clip_states": heldout.targets, "ridge_flattened_states": ridge(heldout),
                  "per_position_mean": means}

    decoder = ImageDecoder.from_pretrained(str(world / "sd"))
    classifier = load_classifier(SHIPPED_CLASSIFIER)
    drawn = slice(0, args.sd_captions)
    with torch.no_grad():
        null = target([""])
    sd_accuracy = {
        name: attribute_accuracy(
            classifier, conditioned_images(decoder, conditions[drawn], null, guidance=3.0, steps=15, seed=0),
            heldout_captions[drawn],
        )
        for name, conditions in predictors.items()
    }  # fmt: skip

    config = load_matrix(ROOT / "experiments.toml", "mini", only="aligner-12", seeds=[0],
                         assets={MINI_PREFIX: world}, env={}).runs[0].config  # fmt: skip
    optim = replace(config.train.optim, lr=args.lr or config.train.optim.lr)
    steps = args.steps or config.train.steps
    sources = {
        "mllm_states": (train, heldout),
        "whitened_mllm_states": (whitened(train, train), whitened(heldout, train)),
        "token_embedding": (token_embedded(train, train.states.shape[-1], seed=0),
                            token_embedded(heldout, train.states.shape[-1], seed=0)),
    }  # fmt: skip
    aligner_curves = {}
    for name, (source, heldout_source) in sources.items():
        torch.manual_seed(0)
        aligner = build_aligner(
            config.aligner, source.states.shape[-1], source.targets.shape[-1], source.targets.shape[1]
        )
        aligner_curves[name] = short_aligner_run(
            aligner, optim, source, heldout_source, steps=steps, batch_size=config.train.batch_size, seed=0,
            every=max(1, steps // 4),
        )  # fmt: skip

    word_swaps = {}
    for attribute, words in (("colour", sorted(OBJECT_COLOURS)), ("shape", SHAPES), ("size", sorted(SIZES))):
        pairs = one_word_swapped(heldout_captions, words, seed=0)
        before, after = (encode_captions(mllm, target, texts, POSITIONS) for texts in pairs)
        word_swaps[attribute] = {
            "captions": len(before),
            "mllm_states": relative_change(before.states, after.states),
            "clip_states": relative_change(before.targets, after.targets),
        }

    mean_states = mean_state(train).states[:, 0]
    second_moment = torch.linalg.eigvalsh(mean_states.T @ mean_states / len(train))[-1].item()
    spread = torch.linalg.eigvalsh(torch.cov(mean_states.T)).flip(0)
    aligned_mse = {name: heldout_mse(predicted, heldout) for name, predicted in predictors.items()}
    bag_of_words = RidgeMap.fit(mean_state(train), args.ridge)(mean_state(heldout))
    report("mini_aligning", {
        "train_captions": len(train), "heldout_captions": len(heldout),
        "heldout_mse": {
            **{name: mse for name, mse in aligned_mse.items() if name != "clip_states"},
            "ridge_mean_state": heldout_mse(bag_of_words, heldout),
        },
        "sd_attribute_accuracy": {"captions": args.sd_captions, **sd_accuracy},
        "one_word_swapped_relative_change": word_swaps,
        "aligner_12": {"steps": steps, "lr": optim.lr, "batch_size": config.train.batch_size,
                       "heldout_mse_by_step": aligner_curves},
        "mean_state_second_moment_top": second_moment,
        "mean_state_variance_top10": spread[:10].tolist(),
        "mean_state_directions_over_0.01": int((spread > 0.01).sum()),
    }, load)  # fmt: skip


if __name__ == "__main__":
    main()
