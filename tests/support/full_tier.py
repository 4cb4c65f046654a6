"""Helpers for the config tests (no tests here): the real experiments.toml, a fake full tier."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments.toml"

# Every ${VAR} the full tier reads, and whether it names a folder (else a file).
FULL_TIER_ENV = {
    "KOSMOS_MLLM": True,
    "KOSMOS_SD": True,
    "KOSMOS_TRAIN_CAPTIONS": False,
    "KOSMOS_HELDOUT_CAPTIONS": False,
    "KOSMOS_TRAIN_SHARDS": True,
    "KOSMOS_HELDOUT_IMAGES": True,
    "KOSMOS_COCO_CAPTIONS": False,
    "KOSMOS_COCO_IMAGES": True,
    "KOSMOS_INCEPTION": False,
    "KOSMOS_COMPOSITIONAL": False,
    "KOSMOS_EDITS": False,
    "KOSMOS_CAPTIONED": False,
    "KOSMOS_DREAMBENCH": True,
    "KOSMOS_DINO": True,
    "KOSMOS_CLIP": True,
    "KOSMOS_RELEASED_STAGE2": True,
    "KOSMOS_RELEASED_FINAL": True,
}


def fake_full_env(root: Path) -> dict[str, str]:
    """Existing, empty stand-ins for every full-tier path."""
    env = {}
    for name, is_dir in FULL_TIER_ENV.items():
        path = root / name.lower()
        if is_dir:
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        env[name] = str(path)
    # DreamBooth ships its prompts file inside the dataset folder, which is where the full tier looks.
    (root / "kosmos_dreambench" / "prompts_and_classes.txt").write_text("")
    return env
