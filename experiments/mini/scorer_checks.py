"""Whether the mini scorers have learned the world, each as a share of comparisons won
(chance 0.5): CLIP prefers an image's own caption to another image's; DINO puts two photos of
one DreamBench subject closer than photos of two subjects."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import torch
from PIL import Image

from experiments.data.dreambench_layout import PHOTO_SUFFIXES
from experiments.evaluation.similarity import ClipEncoder, DinoEncoder
from experiments.mini.labelled_images import LabelledImage


def own_caption_preferred(encoder: ClipEncoder, items: list[LabelledImage]) -> float:
    """Share of images scoring higher (CLIP-T's cosine) with their first caption than with the next
    image's; the next image differs in some attribute almost always."""
    own = [item.captions[0] for item in items]
    other = own[1:] + own[:1]
    images = encoder.image_features([item.rgb() for item in items])
    preferred = (images * encoder.text_features(own)).sum(1) > (images * encoder.text_features(other)).sum(1)
    return preferred.float().mean().item()


def dreambench_photos(folder: Path) -> dict[str, list[Image.Image]]:
    """Each subject's photos in DreamBooth's layout, read whole."""
    photos = {}
    for subject in sorted(path for path in Path(folder).iterdir() if path.is_dir()):
        files = sorted(path for path in subject.iterdir() if path.suffix.lower() in PHOTO_SUFFIXES)
        photos[subject.name] = [_read(path) for path in files]
    return photos


def same_subject_closer(encoder: DinoEncoder, photos: dict[str, list[Image.Image]]) -> float:
    """Over every (photo, another photo of its subject, a photo of another subject): the share in
    which the photo of its own subject is the closer (DINO's cosine)."""
    owners = torch.tensor([k for k, subject in enumerate(photos) for _ in photos[subject]])
    features = encoder.image_features([image for subject in photos for image in photos[subject]])
    cosine = features @ features.T
    won, total = 0, 0
    for anchor, same in permutations(range(len(owners)), 2):
        if owners[anchor] != owners[same]:
            continue
        others = cosine[anchor][owners != owners[anchor]]
        won += int((cosine[anchor, same] > others).sum())
        total += len(others)
    return won / total


def _read(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
