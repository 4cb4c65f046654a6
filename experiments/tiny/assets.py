"""The tiny tier's assets: random tiny models, a synthetic COCO-format set (also as LAION-style
parquet and webdataset shards), DreamBench and stage-3 sets, and imports of released-layout
checkpoints, built once on disk so the tiny tier loads them through the same `from_pretrained`
and file readers as the full tier loads the real ones."""

from __future__ import annotations

import fcntl
import logging
import shutil
from pathlib import Path

from experiments.tiny.coco import build_coco_fixture
from experiments.tiny.dreambench_subjects import ASSET_FOLDER, build_dreambench_fixture
from experiments.tiny.feature_extractor import save_random_inception
from experiments.tiny.models import (
    save_tiny_clip,
    save_tiny_dino,
    save_tiny_kosmos2,
    save_tiny_stable_diffusion,
)
from experiments.tiny.paper_formats import write_laion_parquet, write_webdataset
from experiments.tiny.released import build_released_fixture
from experiments.tiny.stage3 import build_instruct_fixture

log = logging.getLogger(__name__)

# Bump when a builder changes, so stale assets are rebuilt rather than silently reused.
ASSETS_VERSION = "6"
_MARKER = "COMPLETE"


def ensure_tiny_assets(root: Path) -> Path:
    """Builds the assets under `root` unless a complete build of this version is there. Safe
    to call from several processes at once: one builds, the others wait on the lock."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / _MARKER
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == ASSETS_VERSION:
            return root
        log.info("building tiny-tier assets in %s", root)
        for child in ("kosmos2", "sd", "coco", "laion", "wds", "inception-random.pth", ASSET_FOLDER, "dino",
                      "clip", "instruct", "released"):
            path = root / child
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        save_tiny_kosmos2(root / "kosmos2")
        save_tiny_stable_diffusion(root / "sd")
        coco = build_coco_fixture(root / "coco")
        write_laion_parquet(coco.train_captions, root / "laion")
        write_webdataset(coco.train_captions, coco.train_images, root / "wds")
        save_random_inception(root / "inception-random.pth")
        # Five photos a subject: the tiny subjects' official input photos go up to teapot's 04.jpg.
        build_dreambench_fixture(root / ASSET_FOLDER, photos_per_subject=5)
        save_tiny_dino(root / "dino")
        save_tiny_clip(root / "clip")
        build_instruct_fixture(root / "instruct")
        build_released_fixture(root / "released")
        marker.write_text(ASSETS_VERSION)
    return root
