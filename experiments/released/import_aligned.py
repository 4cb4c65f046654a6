"""`checkpoint_stage2.pt` and `checkpoint_final.pt` -> exports in the harness's own format
(models/conditioning.py's save_pretrained), which `repro generate` and the evaluation recipes read.

- stage 2 (image decoder aligning): AlignerNet's M and N; the MLLM, frozen in stage 2, must equal
  the imported stage 1 the export then names as its base (it is not copied);
- final (after instruction tuning): M, and the MLLM stage 3 trained, copied into the export.
The U-Net, VAE and CLIP text encoder a file carries are checked against the SD folder given
(experiments.released.frozen_parts), not copied.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from experiments.released.aligner_weights import official_aligner
from experiments.released.checkpoint_parts import Part, split_parts
from experiments.released.fairseq_pickle import read_fairseq_checkpoint
from experiments.released.frozen_parts import check_frozen_parts
from experiments.released.mllm_folder import EMBED, decoder_heads, save_mllm_folder
from experiments.released.mllm_keys import rename_mllm
from experiments.released.provenance import TRAINER_KEYS, unknown_trainer_keys, write_record
from experiments.released.stages import Stage
from models.conditioning import KosmosGConditioner
from models.mllm import MLLMEncoder

N_WEIGHTS = "aligner_n.safetensors"  # stage 2's N, beside the export's M: what going on with stage 2 needs


def native_size(stable_diffusion: Path) -> int:
    """The image side the U-Net was trained at (latent sample_size times the VAE's downsampling):
    the export's default for `repro generate`, 512 for SD v1.5."""
    unet = json.loads((Path(stable_diffusion) / "unet" / "config.json").read_text())["sample_size"]
    vae = json.loads((Path(stable_diffusion) / "vae" / "config.json").read_text())["block_out_channels"]
    return unet * 2 ** (len(vae) - 1)


def check_same_mllm(official: Mapping[str, Tensor], base_mllm: Path) -> None:
    """Stage 2 froze the MLLM: the file's must be the imported stage 1's, key by key."""
    renamed = rename_mllm(official).weights
    saved = {key: value for file in sorted(Path(base_mllm).glob("*.safetensors"))
             for key, value in load_file(file).items()}
    missing = sorted(set(saved) - set(renamed))
    if missing:
        raise KeyError(f"the file lacks {len(missing)} of {base_mllm}'s MLLM weights "
                       f"({', '.join(missing[:5])})")
    differ = []
    for key, value in renamed.items():
        base = saved.get(key)
        if key == EMBED and base is not None:
            base = base[: value.shape[0]]  # the rows past the official vocabulary are the import's zeros
        if base is None or base.shape != value.shape or not torch.equal(value.float(), base.float()):
            differ.append(key)
    if differ:
        raise ValueError(f"the file's MLLM is not {base_mllm}'s at {len(differ)} weights "
                         f"({', '.join(differ[:5])}): "
                         "stage 2 builds on the stage-1 MLLM it was trained from")


def import_aligned(checkpoint: Path, stage: Stage, stable_diffusion: Path, out: Path, *,
                   base_mllm: Path | None = None,
                   vocabulary: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """Writes the export at `out`; returns its released.json record. Stage 2 needs `base_mllm`
    (the imported stage 1); the final file needs `vocabulary` (sentencepiece model, dict.txt)."""
    checkpoint, out = Path(checkpoint), Path(out)
    state = read_fairseq_checkpoint(checkpoint)
    unknown_trainer_keys(state, checkpoint)
    parts = split_parts(state["model"], checkpoint)
    dropped = check_frozen_parts(state["model"], stable_diffusion)
    aligner_keys = {key: value for key, value in parts[Part.ALIGNER].items() if key not in dropped}
    aligner = official_aligner(aligner_keys)
    has_n = aligner.n is not None
    if has_n != (stage is Stage.STAGE2):
        raise KeyError(f"{checkpoint}: {'holds' if has_n else 'lacks'} AlignerNet N "
                       "(aligner.decoder*), which "
                       f"{'only stage 2 has' if has_n else 'stage 2 trains'}: is it the {stage.value} file?")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        if stage is Stage.STAGE2:
            if base_mllm is None:
                raise ValueError("a stage-2 import names its base MLLM: the imported checkpoint_stage1.pt")
            check_same_mllm(parts[Part.MLLM], base_mllm)
            mllm_folder = Path(base_mllm)
            mllm_dropped = {key: f"equal to the base MLLM {base_mllm}" for key in parts[Part.MLLM]}
        else:
            if vocabulary is None:
                raise ValueError("the final file's MLLM needs the official sentencepiece model and dict.txt")
            mllm_folder = Path(scratch) / "mllm"
            mllm_dropped = save_mllm_folder(parts[Part.MLLM], decoder_heads(state, checkpoint), *vocabulary,
                                            mllm_folder).dropped
        conditioner = KosmosGConditioner(MLLMEncoder.from_pretrained(str(mllm_folder)), aligner)
        record_keys = {"file": checkpoint.name, "stage": stage.value}
        conditioner.save_pretrained(
            partial, stable_diffusion=str(Path(stable_diffusion).resolve()),  # runs check it is theirs
            base_mllm=str(mllm_folder.resolve()) if stage is Stage.STAGE2 else None,
            extra={"released": record_keys, "sample_size": native_size(stable_diffusion)})
    if has_n:
        save_file({key: value.contiguous() for key, value in aligner.state_dict().items()
                   if key.startswith("n.")},
                  partial / N_WEIGHTS)
    trainer = {key: TRAINER_KEYS[key] for key in state if key != "model"}
    record_file = write_record(partial, checkpoint, stage.value, dropped | mllm_dropped,
                               {"trainer_keys_not_imported": trainer})
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
    return json.loads((out / record_file.name).read_text())
