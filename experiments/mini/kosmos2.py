"""The mini Kosmos-2: Kosmos2ForConditionalGeneration at the world's sizes with a word-level
tokenizer over the world's words and a CLIP image processor, saved as the tiny tier's Kosmos-2
is, so models/mllm.py's MLLMEncoder loads it (as Kosmos2Model, the same files less the tied LM
head). Its training record (experiments/mini/provenance.py) sits in the folder as RECORD_FILE."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import CLIPImageProcessor, Kosmos2Config, Kosmos2ForConditionalGeneration

from experiments.mini.provenance import read_record
from experiments.mini.scenes import IMAGE_SIZE
from experiments.mini.vocabulary import MINI_WORDS
from experiments.tiny.models import kosmos2_word_tokenizer
from models.mllm import MLLMEncoder

MODEL = "mini Kosmos-2"
RETRAIN = "repro mini kosmos2"
RECORD_FILE = "provenance.json"


@dataclass(frozen=True)
class MiniKosmos2Config:
    width: int = 128  # the language model's
    layers: int = 4
    heads: int = 4
    vision_width: int = 128
    vision_layers: int = 2
    patch: int = 8
    latent_queries: int = 4  # image tokens per image in the prompt


def save_untrained_kosmos2(path: Path, config: MiniKosmos2Config) -> Kosmos2ForConditionalGeneration:
    """Writes the tokenizer and image processor to `path` and returns the untrained model (saved
    once trained)."""
    tokenizer = kosmos2_word_tokenizer(MINI_WORDS)
    model = Kosmos2ForConditionalGeneration(
        Kosmos2Config(
            text_config={
                "vocab_size": len(tokenizer),
                "embed_dim": config.width,
                "layers": config.layers,
                "ffn_dim": 2 * config.width,
                "attention_heads": config.heads,
                "max_position_embeddings": 128,
                "dropout": 0.0,
                "attention_dropout": 0.0,
            },
            vision_config={
                "hidden_size": config.vision_width,
                "intermediate_size": 2 * config.vision_width,
                "num_hidden_layers": config.vision_layers,
                "num_attention_heads": config.heads,
                "image_size": IMAGE_SIZE,
                "patch_size": config.patch,
            },
            latent_query_num=config.latent_queries,
        )
    )
    tokenizer.save_pretrained(path)
    square = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size=square).save_pretrained(path)
    return model


def load_mini_kosmos2(path: Path) -> MLLMEncoder:
    """The trained mini Kosmos-2 at `path` as the MLLM; refused if trained on another world."""
    read_record(Path(path) / RECORD_FILE, MODEL, Path(path) / "model.safetensors", RETRAIN)
    return MLLMEncoder.from_pretrained(str(path))
