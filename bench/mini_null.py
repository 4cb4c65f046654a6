"""(n) What the null condition costs a stage-2 row on the mini world. A trained run's export (the
`export/` folder of a mini aligning run) draws held-out captions four ways: its own conditions and
the mini SD's CLIP states, each guided against the protocol's null (the aligned "<s>" prompt,
which the official stage 2 never trains: none of its captions is empty; the mini tier empties a
tenth, `train.empty_caption_prob`) and against the mini SD's own empty caption. Per way, the
attribute accuracy as the report logs it, and the held-out MSE between the two conditions and
between the two nulls.

    python -m bench.mini_null --export WORKDIR/runs/<run>/export [--captions 128] [--steps 15]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from bench._common import CACHE, parse_args, report
from experiments.evaluation.attribute_accuracy import attribute_accuracy
from experiments.mini.assets import ensure_mini_assets
from experiments.mini.attribute_classifier import load_classifier
from experiments.mini.sd_check import SHIPPED_CLASSIFIER, conditioned_images
from models.conditioning import KosmosGConditioner
from models.image_decoder import ImageDecoder
from models.text_target import ClipTextTarget

GUIDANCE = 3.0  # the mini tier's FID guidance, as the report's accuracy is measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True, help="a mini aligning run's export/ folder")
    parser.add_argument("--captions", type=int, default=128, help="held-out captions drawn")
    parser.add_argument("--steps", type=int, default=15, help="DDIM steps")
    args = parse_args(parser)
    load = os.getloadavg()
    world = ensure_mini_assets(CACHE / "mini-assets")
    annotations = json.loads((world / "coco" / "captions_val.json").read_text())["annotations"]
    captions = [annotation["caption"] for annotation in annotations][: args.captions]

    conditioner = KosmosGConditioner.from_pretrained(args.export).eval()
    target = ClipTextTarget.from_pretrained(str(world / "sd"))
    with torch.no_grad():
        conditions = {"aligned": conditioner(captions), "clip": target(captions)}
        nulls = {"aligned <s>": conditioner.null(1), "the SD's empty caption": target([""])}
    decoder = ImageDecoder.from_pretrained(str(world / "sd"))
    classifier = load_classifier(SHIPPED_CLASSIFIER)
    accuracy = {
        f"{condition} conditions, {null} null": {
            attribute: round(float(value), 3)
            for attribute, value in attribute_accuracy(
                classifier,
                conditioned_images(decoder, conditions[condition], nulls[null], guidance=GUIDANCE,
                                   steps=args.steps, seed=0),
                captions,
            ).items()
        }
        for condition in conditions
        for null in nulls
    }  # fmt: skip
    report("mini_null", {
        "export": str(args.export), "captions": len(captions), "ddim_steps": args.steps, "guidance": GUIDANCE,
        "mse_conditions": F.mse_loss(*conditions.values()).item(),
        "mse_nulls": F.mse_loss(*nulls.values()).item(),
        "attribute_accuracy": accuracy,
    }, load)


if __name__ == "__main__":
    main()
