"""The mini CLIP: CLIPModel text and image towers at the world's sizes, with a CLIP tokenizer over
the world's words, saved in the layout of openai/clip-vit-base-patch32 so CLIP-I and CLIP-T load
it through experiments/evaluation/similarity.py's ClipEncoder as they load the real one. Its
training record (experiments/mini/provenance.py) sits in the folder as RECORD_FILE."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from experiments.evaluation.similarity import ClipEncoder
from experiments.mini.provenance import read_record
from experiments.mini.scenes import IMAGE_SIZE
from experiments.mini.vocabulary import MINI_WORDS
from experiments.tiny.models import save_clip_tokenizer

MODEL = "mini CLIP"
RETRAIN = "repro mini clip"
RECORD_FILE = "provenance.json"


@dataclass(frozen=True)
class MiniClipConfig:
    width: int = 64  # both towers' hidden size
    layers: int = 2
    heads: int = 4
    patch: int = 8
    projection: int = 64


def save_untrained_clip(path: Path, config: MiniClipConfig) -> CLIPModel:
    """Writes the tokenizer and processor to `path` and returns the untrained model that goes with them
    (its weights are written by save_pretrained once trained)."""
    path = Path(path)
    vocab_size = save_clip_tokenizer(path, MINI_WORDS)
    towers = {
        "hidden_size": config.width,
        "intermediate_size": 2 * config.width,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
    }
    model = CLIPModel(
        CLIPConfig(
            text_config={
                **towers, "vocab_size": vocab_size, "max_position_embeddings": 77,
                "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1,
                "pad_token_id": vocab_size - 1,
            },
            vision_config={**towers, "image_size": IMAGE_SIZE, "patch_size": config.patch},
            projection_dim=config.projection,
        )
    )  # fmt: skip
    square = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size=square)
    tokenizer = CLIPTokenizer.from_pretrained(path)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    # transformers 5 nests the image processor in processor_config.json; the published folder has
    # it as preprocessor_config.json, which both versions read.
    image_processor.save_pretrained(path)
    return model


def load_mini_clip(path: Path, device: torch.device = torch.device("cpu")) -> ClipEncoder:
    """The trained mini CLIP at `path` as CLIP-I/CLIP-T's encoder; refused if trained on another world."""
    read_record(Path(path) / RECORD_FILE, MODEL, Path(path) / "model.safetensors", RETRAIN)
    return ClipEncoder.from_pretrained(str(path), device)
