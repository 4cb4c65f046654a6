"""Checks across a resolved RunConfig that no single field's type can express."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from experiments.config import MAX_IMAGE_PIXELS, RunConfig
from experiments.data.batches import accumulation_steps
from experiments.data.dreambench_layout import read_prompts_file, selected_subjects
from experiments.recipes.registry import recipe_named
from experiments.tiny.dreambench_subjects import ASSET_FOLDER, PROMPTS_FILE
from repro.config.fields import leaf_value
from repro.config.paths import ASSET_SOURCES, RUN_PREFIX

_AT_LEAST_ONE = (
    "aligner.layers",
    "aligner.width",
    "aligner.ffn",
    "aligner.heads",
    "aligner.max_source_len",
    "train.steps",
    "train.batch_size",
    "train.resolution",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "data.heldout_size",
    "train.max_caption_sp_tokens",
    "data.captioned_max_sp_tokens",
    "fid.num_captions",
    "fid.steps",
    "fid.generate_size",
    "fid.resolution",
    "fid.batch_size",
)

Rule = tuple[str, Callable[[Any], bool], str]

_RANGES: tuple[Rule, ...] = (
    *((key, lambda v: v >= 1, "must be >= 1") for key in _AT_LEAST_ONE),
    ("train.optim.lr", lambda v: v > 0, "must be > 0"),
    ("train.optim.eps", lambda v: v > 0, "must be > 0"),
    ("train.optim.grad_clip", lambda v: v > 0, "must be > 0"),
    ("train.optim.weight_decay", lambda v: v >= 0, "must be >= 0"),
    ("train.optim.warmup_steps", lambda v: v >= 0, "must be >= 0"),
    ("train.optim.betas", lambda v: all(0 <= b < 1 for b in v), "each beta must be in [0, 1)"),
    ("train.rec_weight", lambda v: v >= 0, "must be >= 0"),
    ("train.null_condition_prob", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("train.empty_caption_prob", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("train.divergence_threshold", lambda v: v > 0, "must be > 0"),
    # CLIP's 77 positions hold BOS and EOS around at most 75 caption tokens.
    ("train.max_caption_tokens", lambda v: 1 <= v <= 75, "must be in [1, 75]"),
    ("aligner.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("train.mllm_dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("data.captioned_min_image_side", lambda v: v >= 0, "must be >= 0 (0 keeps every image)"),
    ("fid.guidance", lambda v: v >= 1, "must be >= 1 (1 is no guidance)"),
    ("train.entity_drop_prob", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("train.edit_caption_drop_prob", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("train.background_keep_prob", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("train.trainable_vision_layers", lambda v: v >= 0, "must be >= 0"),
    ("train.micro_batch_size", lambda v: v is None or v >= 1, "must be >= 1"),
    ("data.num_workers", lambda v: v is None or v >= 0, "must be >= 0 (0 reads in the training process)"),
    ("data.mix", lambda v: all(w >= 0 for w in v) and sum(v) > 0, "weights must be >= 0, not all 0"),
    ("data.max_bad_fraction", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("data.max_image_pixels", lambda v: 1 <= v <= MAX_IMAGE_PIXELS,
     f"must be in [1, {MAX_IMAGE_PIXELS}] "
     "(PIL's own decompression-bomb limit, past which it warns or refuses)"),
    ("dreambench.images_per_prompt", lambda v: v >= 1, "must be >= 1"),
    ("dreambench.steps", lambda v: v >= 1, "must be >= 1"),
    ("dreambench.generate_size", lambda v: v >= 1, "must be >= 1"),
    ("dreambench.batch_size", lambda v: v >= 1, "must be >= 1"),
    ("dreambench.guidance", lambda v: v >= 1, "must be >= 1 (1 is no guidance)"),
    # DreamBench has 25 prompt templates per subject kind.
    ("dreambench.templates", lambda v: all(0 <= t < 25 for t in v), "template indices must be in 0..24"),
    # SD's VAE halves the image three times (the tiny tier's twice, and its U-Net once more),
    # so a side that is not a multiple of 8 cannot round-trip; found here, not after models load.
    *((key, lambda v: v % 8 == 0, "must be a multiple of 8 (the VAE and U-Net downsample 8x)")
      for key in ("train.resolution", "fid.generate_size", "dreambench.generate_size")),
)


def check_run(config: RunConfig) -> list[str]:
    recipe = recipe_named(config.recipe)
    trains = recipe.trains
    # A recipe that trains nothing (the baseline, the oracle) uses only its evaluation values.
    checked = [rule for rule in _RANGES if trains or rule[0].startswith(("fid.", "dreambench."))]
    problems = [
        f"{key}: {text}, got {leaf_value(config, key)!r}"
        for key, holds, text in checked
        if not holds(leaf_value(config, key))
    ]
    if recipe.generates and not recipe.takes_images and config.dreambench.enabled:
        problems.append(f"dreambench.enabled: DreamBench prompts carry the subject's photo, which the "
                        f"{recipe.name} recipe's conditioner cannot take; it runs FID only")
    if not trains:
        return problems
    problems += _image_folders(config, recipe.may_read)
    aligner = config.aligner
    if aligner.heads >= 1 and aligner.width % aligner.heads:
        problems.append(
            f"aligner.heads: {aligner.heads} heads do not divide aligner.width {aligner.width}"
        )
    optim, train = config.train.optim, config.train
    if optim.warmup_steps > train.steps:
        problems.append(
            f"train.optim.warmup_steps: {optim.warmup_steps} warm-up steps exceed "
            f"train.steps {train.steps}"
        )
    if train.cache_encoder_outputs and train.mllm_dropout > 0:
        problems.append(
            f"train.cache_encoder_outputs: the MLLM's outputs are not repeatable while "
            f"train.mllm_dropout = {train.mllm_dropout:g} runs it with dropout; turn one of them off"
        )
    if train.async_checkpoint and train.parallelism != "fsdp":
        problems.append('train.async_checkpoint: only sharded checkpoints are written asynchronously; '
                        'it needs train.parallelism = "fsdp"')
    return problems


def check_batch_split(config: RunConfig, world_size: int) -> list[str]:
    """A training run's global batch has to split evenly over its job's ranks (launch) and
    their micro-batches."""
    if not recipe_named(config.recipe).trains:
        return []
    try:
        accumulation_steps(config.train.batch_size, config.train.micro_batch_size, world_size)
    except ValueError as error:
        return [str(error)]
    return []


def check_subjects(config: RunConfig) -> list[str]:
    """`dreambench.subjects` against the subjects its prompts file lists, where that file can be
    read before anything runs: a user's file (resolve_paths found it), or the tiny tier's copy of
    the file experiments/ ships. Call it after resolve_paths, which blanks the prompts of a run
    that samples no DreamBench."""
    prompts, wanted = config.dreambench.prompts, config.dreambench.subjects
    if not (prompts and wanted):
        return []
    if prompts in {f"{prefix}{ASSET_FOLDER}/{PROMPTS_FILE.name}" for prefix in ASSET_SOURCES}:
        path = PROMPTS_FILE  # the tiny and mini worlds both write DreamBooth's own file
    elif prompts.startswith((*ASSET_SOURCES, RUN_PREFIX)):
        return []
    else:
        path = Path(prompts)
    try:
        listed = read_prompts_file(path)
    except OSError as bad:
        return [f"dreambench.prompts: cannot read {path}: {bad.strerror}"]
    except ValueError as bad:
        return [f"dreambench.prompts: {bad}"]
    try:
        selected_subjects(listed, wanted)
    except ValueError as bad:  # its message names dreambench.subjects and the file's subjects
        return [str(bad)]
    return []


# Formats that name their images by path instead of carrying them (experiments/data/shards.py).
_CAPTION_FILES = (".json", ".jsonl", ".tsv")


def _image_folders(config: RunConfig, may_read: frozenset[str]) -> list[str]:
    """A recipe that trains on images from a caption file needs the folder its paths point into."""
    problems = []
    for captions, folder in (("data.train", "data.train_images"), ("data.heldout", "data.heldout_images")):
        source = str(leaf_value(config, captions) or "")
        if folder in may_read and source.endswith(_CAPTION_FILES) and not leaf_value(config, folder):
            problems.append(f"{folder}: {captions} is a caption file, whose images the {config.recipe} "
                            f"recipe reads from this folder; set it, or name image shards in {captions}")
    return problems
