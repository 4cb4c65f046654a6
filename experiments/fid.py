"""The MS-COCO zero-shot FID protocol (shared/PAPER.md, "Evaluation protocols") on torch-fidelity.

Real and generated images go through the same `center_crop_resize` and are stored as PNG, so
both sets reach the feature extractor in the same form. The reference set is prepared once per
(file list, resolution) and its Inception statistics are cached by torch-fidelity under a name
that changes whenever the reference images or the extractor weights change.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from PIL import Image
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from tqdm import tqdm

from experiments.coco import load_captions
from experiments.config import FidConfig

log = logging.getLogger(__name__)

INCEPTION = "inception-v3-compat"
TINY_EXTRACTOR = "tiny-random-conv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what torch-fidelity picks up from a folder


def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Short side to `resolution` (bicubic), then the central square; rounding as torchvision's
    Resize + CenterCrop, which the official evaluation uses."""
    width, height = img.size
    if width <= height:
        size = (resolution, int(resolution * height / width))
    else:
        size = (int(resolution * width / height), resolution)
    img = img.resize(size, Image.Resampling.BICUBIC)
    left = int(round((size[0] - resolution) / 2.0))
    top = int(round((size[1] - resolution) / 2.0))
    return img.crop((left, top, left + resolution, top + resolution))


def prepare_reference(fid: FidConfig, cache_dir: Path) -> Path:
    """The reference images, resized and cropped, in cache_dir/reference-<hash>/ (made once)."""
    sources = _reference_sources(fid)
    digest = _fingerprint(Path(fid.images), sources, extra=f"resolution={fid.resolution}")
    target = Path(cache_dir) / f"reference-{digest}"
    if target.is_dir():
        return target
    log.info("preparing %d reference images at %dpx in %s", len(sources), fid.resolution, target)
    # Built aside and renamed into place: a killed run or a concurrent one never sees half a set.
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)

    def write(indexed: tuple[int, Path]) -> None:
        index, source = indexed
        with Image.open(source) as img:
            _save_png(center_crop_resize(img.convert("RGB"), fid.resolution), _png(partial, index))

    # PIL releases the GIL while decoding, resizing and encoding, so threads scale here.
    with ThreadPoolExecutor() as pool:
        list(pool.map(write, enumerate(sources)))  # list(): re-raises a worker's error here
    try:
        partial.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(partial)  # another process finished the same set first
    return target


def generate_images(
    generate: Callable[[list[str], int], list[Image.Image]],
    captions: list[str],
    out_dir: Path,
    batch_size: int,
    resolution: int,
    progress: bool,
    shard: tuple[int, int] = (0, 1),
) -> Path:
    """out_dir/{index:06d}.png for every caption, made batch by batch with
    generate(batch_captions, batch_index) and cropped like the reference. Batches already on
    disk are skipped, so a killed evaluation resumes where it stopped; the batch index lets
    `generate` seed per batch, so a resumed set equals an uninterrupted one.

    shard = (i, n): this process makes only every n-th batch, starting at batch i, so n ranks or
    array tasks writing into the same folder make the set between them, each image exactly once.
    """
    shard_index, shard_count = shard
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard {shard_index} of {shard_count} does not exist")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _pin_captions(out_dir / "captions.txt", captions)
    n = len(captions)
    batches = [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    mine = [b for b in range(len(batches)) if b % shard_count == shard_index]
    pending = [b for b in mine if not all(_png(out_dir, i).exists() for i in batches[b])]
    total = sum(len(batches[b]) for b in mine)
    done = total - sum(len(batches[b]) for b in pending)
    with tqdm(total=total, initial=done, unit="img", desc="generating", disable=not progress) as bar:
        for b in pending:
            indices = batches[b]
            images = generate([captions[i] for i in indices], b)
            if len(images) != len(indices):
                raise ValueError(f"generate gave {len(images)} images for {len(indices)} captions, batch {b}")
            for img, index in zip(images, indices):
                _save_png(center_crop_resize(img.convert("RGB"), resolution), _png(out_dir, index))
            bar.update(len(indices))
    return out_dir


def compute_fid(
    generated_dir: Path,
    reference_dir: Path,
    fid: FidConfig,
    cache_dir: Path,
) -> float:
    """FID between two prepared image folders. The reference statistics are cached in cache_dir
    (keyed by the reference files, the resolution and the extractor weights); the generated set
    is always extracted afresh."""
    feature_extractor = fid.feature_extractor
    weights = fid.inception_weights if feature_extractor == INCEPTION else None
    if feature_extractor == INCEPTION:
        if weights is None:
            raise ValueError(
                "fid.inception_weights is not set, and torch-fidelity would download the Inception weights: "
                "point it at a local pt_inception-2015-12-05 file (tiny tier: one from save_random_inception)"
            )
        if not Path(weights).is_file():
            raise FileNotFoundError(f"fid.inception_weights: no such file {weights}")
    # torch-fidelity adds the extractor's name to the cache entry but not its weights: a real and a
    # random Inception would otherwise share one entry.
    weights_tag = _content_hash(Path(weights)) if weights is not None else "builtin"
    reference_tag = _fingerprint(Path(reference_dir), _image_files(Path(reference_dir)))
    metrics = torch_fidelity.calculate_metrics(
        input1=str(generated_dir),
        input2=str(reference_dir),
        fid=True,
        cuda=torch.cuda.is_available(),
        # Data-loader worker processes pay off feeding a GPU; on a CPU box they only compete
        # with the extractor for the same cores.
        save_cpu_ram=not torch.cuda.is_available(),
        feature_extractor=feature_extractor,
        feature_extractor_weights_path=weights,
        cache=True,
        cache_root=str(cache_dir),
        input2_cache_name=f"reference-{reference_tag}-{fid.resolution}px-weights-{weights_tag}",
        verbose=False,
    )
    return float(metrics[torch_fidelity.KEY_METRIC_FID])


def save_random_inception(path: Path, seed: int = 0) -> Path:
    """A state dict for torch-fidelity's Inception (its `feature_extractor_weights_path` format)
    with kaiming-initialised convolutions: an offline stand-in for the real weights whose FID
    still separates distributions (default-initialised weights collapse the features to ~0 FID)."""
    # Imported here: only the tiny tier needs torchvision's copy of the architecture, whose
    # parameter names match torch-fidelity's FeatureExtractorInceptionV3.
    from torchvision.models import inception_v3

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the throwaway default init must not move the global RNG
        model = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


class TinyFeatureExtractor(FeatureExtractorBase):
    """A fixed random three-layer conv net with a 64-d pooled feature: for unit tests, where
    Inception at 299px (~0.2-0.3 s per image on this CPU) is too slow. Its numbers are not FID."""

    FEATURE = "64"

    def __init__(self, name: str, features_list: list[str], **kwargs: object) -> None:
        # torch-fidelity hands every calculate_metrics argument to the constructor; none apply.
        super().__init__(name, features_list)
        generator = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        for module in self.net:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = F.interpolate(x.float(), size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return (self.net((x - 128) / 128),)

    @staticmethod
    def get_provided_features_list() -> tuple[str]:
        return (TinyFeatureExtractor.FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return TinyFeatureExtractor.FEATURE

    @staticmethod
    def can_be_compiled() -> bool:
        return False


if TINY_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:  # the registry refuses a second registration
    torch_fidelity.register_feature_extractor(TINY_EXTRACTOR, TinyFeatureExtractor)


def _reference_sources(fid: FidConfig) -> list[Path]:
    images = Path(fid.images)
    files = sorted({c.image_file for c in load_captions(fid.captions) if c.image_file is not None})
    if not files:  # a caption-only manifest: the whole folder is the reference
        return _image_files(images)
    missing = [f for f in files if not (images / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{fid.captions} names {len(missing)} images missing from fid.images={images}, e.g. {missing[0]}"
        )
    return [images / f for f in files]


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _fingerprint(root: Path, files: Iterable[Path], extra: str = "") -> str:
    """A short hash of the files' paths under `root`, sizes and mtimes (cheap for 40k images)."""
    digest = hashlib.sha256(f"{extra}\n".encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _content_hash(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def _pin_captions(path: Path, captions: list[str]) -> None:
    """Records which captions a folder was generated for; resuming with others is refused, since
    the existing images would silently be scored against the wrong prompts."""
    text = "\n".join(c.replace("\n", " ") for c in captions) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise ValueError(f"{path.parent} holds images for other captions; use a fresh output folder")
    # Written aside and renamed: shards of one evaluation all pin the same file at once.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _png(folder: Path, index: int) -> Path:
    return folder / f"{index:06d}.png"


def _save_png(img: Image.Image, path: Path) -> None:
    # Written aside and renamed, so a file that exists is always a complete image (resume relies on it).
    partial = path.with_name(f".{path.name}.partial")
    img.save(partial, format="PNG")
    partial.replace(path)
