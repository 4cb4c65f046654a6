"""`checkpoint_stage1.pt` (the MLLM after Kosmos-G's stage 1) -> a transformers Kosmos-2 folder
that `models.mllm` names, with released.json saying where it came from. Written aside and
renamed into place; the pickle is read once, through experiments.released.fairseq_pickle."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from experiments.released.checkpoint_parts import Part, split_parts
from experiments.released.fairseq_pickle import read_fairseq_checkpoint
from experiments.released.frozen_parts import check_frozen_parts
from experiments.released.mllm_folder import decoder_heads, save_mllm_folder
from experiments.released.provenance import TRAINER_KEYS, unknown_trainer_keys, write_record


def import_stage1(checkpoint: Path, spm_file: Path, dict_file: Path, out: Path,
                  stable_diffusion: Path | None = None) -> Path:
    """stable_diffusion: the SD v1.5 folder the file's U-Net and VAE, if it has them, must equal."""
    checkpoint, out = Path(checkpoint), Path(out)
    state = read_fairseq_checkpoint(checkpoint)
    unknown_trainer_keys(state, checkpoint)
    parts = split_parts(state["model"], checkpoint)
    if parts[Part.ALIGNER]:
        raise ValueError(f"{checkpoint}: holds aligner.* weights, which stage 1 has not trained: "
                         "a stage-2 or final checkpoint is imported as such")
    frozen = check_frozen_parts(state["model"], stable_diffusion)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    renamed = save_mllm_folder(parts[Part.MLLM], decoder_heads(state, checkpoint), spm_file, dict_file,
                               partial)
    trainer = {key: TRAINER_KEYS[key] for key in state if key != "model"}
    write_record(partial, checkpoint, "stage1", renamed.dropped | frozen,
                 {"trainer_keys_not_imported": trainer})
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
    return out
