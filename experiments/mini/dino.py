"""The mini DINO: a ViTModel at the world's sizes in the layout of facebook/dino-vits16 (no
pooler, ViTImageProcessor beside it), so the DINO score loads it through
experiments/evaluation/similarity.py's DinoEncoder as it loads the real one. Its training record
(experiments/mini/provenance.py) sits in the folder as RECORD_FILE."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import ViTConfig, ViTImageProcessor, ViTModel

from experiments.evaluation.similarity import DinoEncoder
from experiments.mini.provenance import read_record
from experiments.mini.scenes import IMAGE_SIZE

MODEL = "mini DINO"
RETRAIN = "repro mini dino"
RECORD_FILE = "provenance.json"


@dataclass(frozen=True)
class MiniDinoConfig:
    width: int = 64
    layers: int = 2
    heads: int = 4
    patch: int = 8  # 4x4 patches; 4-px ones (65 tokens, not 17) cost several times the time


def save_untrained_dino(path: Path, config: MiniDinoConfig) -> ViTModel:
    """Writes the image processor to `path` and returns the untrained model (saved once trained)."""
    vit = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=config.patch,
        hidden_size=config.width,
        intermediate_size=2 * config.width,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
    )
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(path)
    return ViTModel(vit, add_pooling_layer=False)


def load_mini_dino(path: Path, device: torch.device = torch.device("cpu")) -> DinoEncoder:
    """The trained mini DINO at `path` as the DINO score's encoder; refused if trained on another world."""
    read_record(Path(path) / RECORD_FILE, MODEL, Path(path) / "model.safetensors", RETRAIN)
    return DinoEncoder.from_pretrained(str(path), device)
