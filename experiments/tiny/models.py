"""Tiny random stand-ins for Kosmos-2, Stable Diffusion v1.5, CLIPSeg and the DreamBench scorers
(DINO, CLIP), written to disk.

The tiny tier loads these directories through exactly the `from_pretrained` calls the full tier
uses on the real checkpoints, so CI exercises the real loading code. Everything is built offline
(no hub access) and seeded, so two builds with the same seed give identical weights.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPSegConfig,
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    Kosmos2Config,
    Kosmos2Model,
    PreTrainedTokenizerFast,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

# Words of typical COCO / DreamBench captions; both tiny tokenizers are built from this list so
# test captions mostly tokenize into real pieces rather than <unk> or single characters.
CAPTION_WORDS: tuple[str, ...] = tuple(
    """a an the of in on at with and to is are two three some its their his her by near next from
    under over into for this that there while behind front top side small large big old young white
    black red blue green yellow brown orange purple pink gray grey wooden shiny wet cube shaped man
    woman person people boy girl child children men women dog dogs cat cats horse bird birds cow
    sheep elephant giraffe zebra bear teddy animal car bus truck train motorcycle bicycle bike boat
    plane airplane street road city building table plate food pizza sandwich cake banana apple
    bowl cup glass room kitchen bed couch chair window door field grass tree trees water beach ocean
    sky snow mountain park sign clock phone laptop computer tv umbrella kite surfboard skateboard
    skis ball frisbee tennis racket baseball bat player game sitting standing walking riding
    holding eating looking playing flying laying lying parked wearing jungle hat shirt jacket
    backpack sunglasses toy vase teapot boot sneaker can candle robot monster photo
    picture view group close up down inside outside""".split()
)

SD_V15_SCHEDULER = {
    # Stable Diffusion v1.5's scheduler/scheduler_config.json, so that DDPM/DDIM/DPM-Solver built
    # from it here behave as they do on the real checkpoint (clip_sample and set_alpha_to_one
    # off, scaled-linear betas).
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def _vocabulary(words: tuple[str, ...]) -> list[str]:
    return sorted(set(words) | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()"))


def kosmos2_word_tokenizer(words: tuple[str, ...] = CAPTION_WORDS) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` (plus single characters) for small Kosmos-2s."""
    # Special ids follow the real Kosmos-2 (XLM-R) layout: <s>=0, <pad>=1, </s>=2, <unk>=3.
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + _vocabulary(words) + ["<image>", "</image>"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<image>", "</image>"],
        model_max_length=2048,
    )


def save_tiny_kosmos2(path: Path, seed: int = 0) -> None:
    """Write a random Kosmos-2 (4 latent queries, 32-px images) with tokenizer and processor."""
    path = Path(path)
    tokenizer = kosmos2_word_tokenizer()
    config = Kosmos2Config(
        text_config={
            "vocab_size": len(tokenizer),
            "embed_dim": 32,
            "layers": 2,
            "ffn_dim": 64,
            "attention_heads": 4,
            "max_position_embeddings": 512,
            "dropout": 0.0,
            "attention_dropout": 0.0,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        latent_query_num=4,
    )
    torch.manual_seed(seed)
    Kosmos2Model(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(path)


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2/CLIP byte-to-printable-character table that byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _learn_bpe_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Textbook BPE: repeatedly merge the most frequent adjacent pair (ties broken by the pair)."""
    corpus = Counter(tuple(word[:-1]) + (word[-1] + "</w>",) for word in words)
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in corpus.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for symbols, count in corpus.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if symbols[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += count
        corpus = merged
    return merges


def save_clip_tokenizer(path: Path, words: tuple[str, ...] = CAPTION_WORDS) -> int:
    """Write a byte-level CLIP vocab.json + merges.txt (same layout as SD's) whose merges are
    learned from `words`; returns vocab size."""
    path.mkdir(parents=True, exist_ok=True)
    base = list(_bytes_to_unicode().values())
    merges = _learn_bpe_merges(list(words), num_merges=400)
    tokens = base + [b + "</w>" for b in base] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merge_lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (path / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return len(vocab)


def save_tiny_stable_diffusion(path: Path, seed: int = 0, cross_attention_dim: int = 32) -> None:
    """Write a random SD-v1.5-layout directory: 32-px images, 8x8x4 latents, 77-token text."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = save_clip_tokenizer(path / "tokenizer")
    torch.manual_seed(seed)
    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=16,
    ).save_pretrained(path / "unet")
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
        scaling_factor=0.18215,
    ).save_pretrained(path / "vae")
    CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=cross_attention_dim,
            intermediate_size=2 * cross_attention_dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    ).save_pretrained(path / "text_encoder")
    write_pipeline_files(path)


def write_pipeline_files(path: Path) -> None:
    """The scheduler config and model_index.json of an SD-v1.5-layout folder without a feature
    extractor (its pipelines are built with safety_checker=None)."""
    (path / "scheduler").mkdir(exist_ok=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD_V15_SCHEDULER, indent=2))
    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (path / "model_index.json").write_text(json.dumps(model_index, indent=2))


def _tiny_clip_towers(vocab_size: int) -> dict[str, Any]:
    """The text and vision towers tiny CLIP-based models (CLIP, CLIPSeg) share: 32-px images
    in 8-px patches, 77-token text ending in the tokenizer's last two ids; the config's keyword
    arguments."""
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    return {
        "text_config": {
            **sizes, "vocab_size": vocab_size, "max_position_embeddings": 77,
            "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1,
        },
        "vision_config": {**sizes, "image_size": 32, "patch_size": 8},
    }


def save_tiny_clipseg(path: Path, seed: int = 0) -> None:
    """Write a random CLIPSeg (32-px images, 4x4 patches) with its CLIP tokenizer and processor,
    in the layout of CIDAS/clipseg-rd64-refined, for building compositional rows in tests."""
    path = Path(path)
    vocab_size = save_clip_tokenizer(path)
    config = CLIPSegConfig(
        **_tiny_clip_towers(vocab_size),
        projection_dim=32,
        extract_layers=(0, 1),
        reduce_dim=16,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=32,
    )
    torch.manual_seed(seed)
    CLIPSegForImageSegmentation(config).save_pretrained(path)
    # CLIPSeg's checkpoint normalises with ImageNet statistics, not CLIP's.
    image_processor = ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    )
    tokenizer = CLIPTokenizer.from_pretrained(path)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)


# Spread of the tiny scorers' random weights. At the usual 0.02 the CLS feature is mostly the
# learned class embedding, so every image scores ~1 against every other; at 0.2 photos of one
# fixture subject stay close while different subjects fall apart.
TINY_SCORER_INIT_STD = 0.2


def save_tiny_dino(path: Path, seed: int = 0) -> None:
    """Write a random ViTModel (32-px images, 8-px patches) in the layout of facebook/dino-vits16."""
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        initializer_range=TINY_SCORER_INIT_STD,
    )
    torch.manual_seed(seed)
    ViTModel(config, add_pooling_layer=False).save_pretrained(Path(path))


def save_tiny_clip(path: Path, seed: int = 0) -> None:
    """Write a random CLIPModel (32-px images, 8-px patches, 77-token text) with its processor,
    in the layout of openai/clip-vit-base-patch32."""
    path = Path(path)
    vocab_size = save_clip_tokenizer(path)
    config = CLIPConfig(
        **_tiny_clip_towers(vocab_size),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    # CLIPConfig's initializer_range does not reach the class embedding or the attention, so the
    # vision tower is re-drawn by hand (see TINY_SCORER_INIT_STD).
    vision = model.vision_model
    for module in [*vision.modules(), model.visual_projection]:
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)):
            torch.nn.init.normal_(module.weight, std=TINY_SCORER_INIT_STD)
    torch.nn.init.normal_(vision.embeddings.class_embedding, std=TINY_SCORER_INIT_STD)
    model.save_pretrained(path)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tokenizer = CLIPTokenizer.from_pretrained(path)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
