"""(l) How well a mini CLIP knows the side an object stands on, which the mini SD can only learn
through its text tower: how often it prefers a held-out one-object image's own caption over the
same caption with the side swapped (left <-> right, top <-> bottom; chance 0.5), and how far its
text tower's state at the position word moves when only that word changes (mean squared
difference, per pair of words; the states have unit variance). docs/performance.md, "The mini
Stable Diffusion".

    python -m bench.mini_clip_sides [--clip DIR] [--images 200]
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import torch

from bench._common import CACHE, parse_args, report
from experiments.evaluation.similarity import ClipEncoder
from experiments.mini.assets import ensure_mini_assets
from experiments.mini.labelled_images import labelled_images
from experiments.mini.scenes import OPPOSITE, POSITIONS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, default=None, help="a mini CLIP folder (default: shipped)")
    parser.add_argument("--images", type=int, default=200, help="held-out one-object images read")
    args = parse_args(parser)
    load = os.getloadavg()
    world = ensure_mini_assets(CACHE / "mini-assets")
    clip = ClipEncoder.from_pretrained(str(args.clip or world / "clip"), torch.device("cpu"))
    heldout = labelled_images(world / "coco" / "captions_val.json", world / "coco" / "val")
    sided = [
        (item, caption) for item in heldout if len(item.scene.objects) == 1
        for caption in item.captions[:1] if item.scene.objects[0].position in OPPOSITE
    ][: args.images]  # fmt: skip
    own = clip.text_features([caption for _, caption in sided])
    side = [item.scene.objects[0].position for item, _ in sided]
    swapped = clip.text_features([caption.replace(s, OPPOSITE[s]) for (_, caption), s in zip(sided, side)])
    images = clip.image_features([item.rgb() for item, _ in sided])
    preferred = ((images * own).sum(1) > (images * swapped).sum(1)).float().mean().item()

    words = list(POSITIONS)
    states: dict[str, list[torch.Tensor]] = {word: [] for word in words}
    with torch.no_grad():
        for (_, caption), s in zip(sided, side):
            variants = [caption.replace(s, word) for word in words]
            ids = clip.processor(text=variants, return_tensors="pt", padding=True).input_ids
            hidden = clip.model.text_model(input_ids=ids).last_hidden_state
            at_word = (ids != ids[0]).any(0).nonzero()[0, 0]  # the one token the variants differ in
            for word, state in zip(words, hidden[:, at_word]):
                states[word].append(state)
    stacked = {word: torch.stack(rows) for word, rows in states.items()}
    pairs = itertools.combinations(words, 2)
    apart = {f"{a}/{b}": ((stacked[a] - stacked[b]) ** 2).mean().item() for a, b in pairs}
    report("mini_clip_sides", {
        "clip": str(args.clip or "shipped"), "images": len(sided),
        "own_caption_over_side_swapped": preferred, "state_difference_at_the_position_word": apart,
    }, load)


if __name__ == "__main__":
    main()
