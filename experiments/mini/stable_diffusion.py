"""The mini Stable Diffusion: SD v1.5's layout and scheduler at the mini world's sizes. Its text
encoder is the mini CLIP's text tower, frozen, as SD v1.5's is CLIP ViT-L/14's; its VAE and U-Net
are trained on the world (experiments/mini/train_stable_diffusion.py). The harness loads it through
the same `from_pretrained` calls as the real checkpoint (models/image_decoder.py,
models/text_target.py). Its training record sits in the folder as RECORD_FILE."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPModel, CLIPTextModel

from experiments.mini.provenance import read_record
from experiments.mini.scenes import IMAGE_SIZE
from experiments.tiny.models import write_pipeline_files

MODEL = "mini Stable Diffusion"
RETRAIN = "repro mini sd"
RECORD_FILE = "provenance.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class MiniSdConfig:
    vae_channels: tuple[int, ...] = (16, 32, 32)  # three levels: 32-px images, 8 x 8 latents
    # SD's 4 channels lose the small objects' shapes at 8 x 8: with 4, the classifier read 0.70 of
    # held-out reconstructions right; with 8, 0.92 (docs/performance.md, "The mini world").
    latent_channels: int = 8
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers_per_block: int = 1
    attention_head_dim: int = 8


def untrained_vae(config: MiniSdConfig) -> AutoencoderKL:
    levels = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=config.vae_channels,
        layers_per_block=1,
        latent_channels=config.latent_channels,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def untrained_unet(config: MiniSdConfig, cross_attention_dim: int, latent_size: int) -> UNet2DConditionModel:
    levels = len(config.unet_channels)
    # Cross-attention at every level: where an object stands is read from the caption at both.
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        block_out_channels=config.unet_channels,
        layers_per_block=config.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * levels,
        up_block_types=("CrossAttnUpBlock2D",) * levels,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=32,
    )


def save_text_encoder(clip: Path, out: Path) -> CLIPTextModel:
    """Copies the trained mini CLIP's tokenizer and text tower into `out`'s tokenizer/ and
    text_encoder/ folders; returns the text encoder."""
    clip, out = Path(clip), Path(out)
    # transformers 5's CLIPModel holds its text tower as a CLIPTextModel: SD's text_encoder class.
    text_encoder: CLIPTextModel = CLIPModel.from_pretrained(clip, local_files_only=True).text_model
    text_encoder.eval().save_pretrained(out / "text_encoder")
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (clip / name).is_file():
            shutil.copyfile(clip / name, out / "tokenizer" / name)
    write_pipeline_files(out)
    return text_encoder


def check_mini_sd(path: Path) -> None:
    """Refuses a mini SD trained on another world version (or with no record)."""
    read_record(Path(path) / RECORD_FILE, MODEL, Path(path) / "unet", RETRAIN)
