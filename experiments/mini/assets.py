"""The mini tier's assets: the world, built on first use (about 10 s), and the trained weights
the repository ships in experiments/mini/weights/, linked beside it. The `@mini/` paths of
experiments.toml point here, as `@tiny/` ones point at the tiny tier's assets."""

from __future__ import annotations

import fcntl
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from experiments.mini import attribute_classifier, clip, dino, kosmos2, stable_diffusion
from experiments.mini.provenance import read_record
from experiments.mini.version import SHIPPED_WEIGHTS, WORLD_VERSION
from experiments.mini.world import build_world

log = logging.getLogger(__name__)

_MARKER = "COMPLETE"
_WORLD_PARTS = ("coco", "laion", "wds", "dreambench", "stage3", "WORLD_VERSION")


@dataclass(frozen=True)
class ShippedModel:
    """One trained model of experiments/mini/weights/: its folder there (and under the asset
    root), its record and weights inside that folder, and what names and retrains it."""

    folder: str
    record: str
    weights: str
    model: str
    retrain: str


SHIPPED_MODELS = (
    ShippedModel("classifier", "attribute_classifier.json", attribute_classifier.WEIGHTS_FILE,
                 attribute_classifier.MODEL, attribute_classifier.RETRAIN),
    ShippedModel("clip", clip.RECORD_FILE, "model.safetensors", clip.MODEL, clip.RETRAIN),
    ShippedModel("dino", dino.RECORD_FILE, "model.safetensors", dino.MODEL, dino.RETRAIN),
    ShippedModel("kosmos2", kosmos2.RECORD_FILE, "model.safetensors", kosmos2.MODEL, kosmos2.RETRAIN),
    ShippedModel("sd", stable_diffusion.RECORD_FILE, "unet", stable_diffusion.MODEL,
                 stable_diffusion.RETRAIN),
)


def check_shipped(weights: Path = SHIPPED_WEIGHTS) -> None:
    """Every shipped model is there and was trained on this world version; the error names the
    model and the command that (re)trains it."""
    for shipped in SHIPPED_MODELS:
        folder = weights / shipped.folder
        try:
            read_record(folder / shipped.record, shipped.model, folder / shipped.weights, shipped.retrain)
        except FileNotFoundError as missing:
            raise FileNotFoundError(
                f"{missing}; train it with `{shipped.retrain} --world DIR --out {folder}` "
                "(docs/mini-world.md)"
            ) from None


def ensure_mini_assets(root: Path, weights: Path = SHIPPED_WEIGHTS) -> Path:
    """Builds the world under `root` unless a complete build of this WORLD_VERSION is there,
    and links each shipped model's folder beside it. Safe to call from several processes at
    once: one builds, the others wait on the lock."""
    check_shipped(weights)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / _MARKER
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.is_file() and marker.read_text() == WORLD_VERSION):
            log.info("building the mini world in %s", root)
            for child in _WORLD_PARTS:
                path = root / child
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            build_world(root)
            marker.write_text(WORLD_VERSION)
        # Linked, not copied, on every call: retrained weights in the checkout are what runs read.
        for shipped in SHIPPED_MODELS:
            link = root / shipped.folder
            target = (weights / shipped.folder).resolve()
            if link.is_symlink() and link.resolve() == target:
                continue
            link.unlink(missing_ok=True)
            link.symlink_to(target, target_is_directory=True)
    return root
