"""The tiny tier's released checkpoints: Kosmos-G's three files in the official layout (fairseq
pickles of official-named weights, experiments/fixtures/kosmos_g_official.py), made for a tiny
SD and imported by the code `repro import` runs, so the released rows sample the tiny tier
through the same folders the full tier's imports make.

The official aligner has 12 heads (a size its weights do not tell), so its width, and the SD the
files are made for, is 24 rather than the tiny tier's 32: these rows sample with that SD.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from experiments.fixtures.kosmos_g_official import (
    OfficialKosmosGMLLM,
    official_sd_parts,
    save_fairseq_checkpoint,
    save_official_vocabulary,
    scramble,
)
from experiments.released.aligner_weights import OFFICIAL_ALIGNER_HEADS
from experiments.released.import_aligned import import_aligned
from experiments.released.import_stage1 import import_stage1
from experiments.released.official_dictionary import official_vocabulary_size
from experiments.released.stages import Stage
from experiments.tiny.models import save_tiny_stable_diffusion
from models.aligner import build_aligner
from models.aligner_config import AlignerConfig
from models.aligner_official import our_state_dict_to_official

MLLM_WIDTH, MLLM_HEADS = 32, 2
ALIGNER_WIDTH = 2 * OFFICIAL_ALIGNER_HEADS
# M's only keys in the final file (the official Aligner_encoder); stage 2's N is the rest.
M_PREFIXES = ("aligner.encoder_proj", "aligner.encoder_query", "aligner.encoder.")


def build_released_fixture(root: Path) -> None:
    """root/sd, root/vocabulary (the official data/ folder's two files), root/files (the three
    checkpoint_*.pt) and their imports root/stage1, root/stage2, root/final."""
    sd = root / "sd"
    save_tiny_stable_diffusion(sd, cross_attention_dim=ALIGNER_WIDTH)
    vocabulary = save_official_vocabulary(root / "vocabulary")
    stage1 = scramble(OfficialKosmosGMLLM(
        vocabulary=official_vocabulary_size(*vocabulary), width=MLLM_WIDTH, layers=2, heads=MLLM_HEADS,
        ffn=64, vision_width=64, vision_layers=2, vision_heads=2, image_size=28, patch=14, queries=4), seed=0)
    torch.manual_seed(0)
    config = AlignerConfig(kind="aligner", layers=1, width=ALIGNER_WIDTH, ffn=2 * ALIGNER_WIDTH,
                           heads=OFFICIAL_ALIGNER_HEADS, max_source_len=128)
    aligner = build_aligner(config, MLLM_WIDTH, ALIGNER_WIDTH)
    aligner_keys = {f"aligner.{key}": value
                    for key, value in our_state_dict_to_official(aligner.state_dict()).items()}
    sd_parts = official_sd_parts(sd)
    files = root / "files"
    first = save_fairseq_checkpoint(stage1.state_dict(), MLLM_HEADS, files / "checkpoint_stage1.pt")
    second = save_fairseq_checkpoint({**stage1.state_dict(), **aligner_keys, **sd_parts}, MLLM_HEADS,
                                     files / "checkpoint_stage2.pt")
    tuned = scramble(copy.deepcopy(stage1), seed=1)  # stage 3 trains the MLLM
    m_only = {key: value for key, value in aligner_keys.items() if key.startswith(M_PREFIXES)}
    final = save_fairseq_checkpoint({**tuned.state_dict(), **m_only, **sd_parts}, MLLM_HEADS,
                                    files / "checkpoint_final.pt", with_optimizer=False)
    import_stage1(first, *vocabulary, root / "stage1")
    import_aligned(second, Stage.STAGE2, sd, root / "stage2", base_mllm=root / "stage1")
    import_aligned(final, Stage.FINAL, sd, root / "final", vocabulary=vocabulary)
