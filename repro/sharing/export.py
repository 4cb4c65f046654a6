"""`repro export`: a trained run as a self-contained folder in the Hugging Face style, for
someone without this harness's work directory (or with only `KosmosGConditioner` and diffusers).

The folder is what `KosmosGConditioner.save_pretrained` writes (config.json, the aligner's M in
safetensors, the MLLM under mllm/), plus the run's provenance in config.json and a README.md
model card. Nothing in it is a pickle. It is written aside and renamed into place, so a folder
at `out` is always a whole export.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from repro.config.load import ConfigError
from repro.config.stored import stored_config
from repro.sharing.model_card import model_card


def export_run(run_dir: Path, out: Path, *, copy_base_mllm: bool = True) -> Path:
    """copy_base_mllm=False records where an MLLM the run did not train loads from instead of
    copying it (what each run logs to MLflow: stage 2 leaves Kosmos-2 as it was, and its copy
    would be GBs per run); stage 3's trained MLLM is always copied."""
    from experiments.recipes.generation import trained_conditioner
    from experiments.recipes.registry import recipe_named
    from models.conditioning import saved_config

    if out.exists() and any(out.iterdir()) and saved_config(out) is None:
        raise ConfigError(f"--out {out}: a folder with other things in it; give an empty or new one")
    record = json.loads((run_dir / "config.json").read_text())
    config = stored_config(run_dir)
    try:
        conditioner = trained_conditioner(config, run_dir)
    except (ValueError, FileNotFoundError) as bad:  # a recipe that trains none, a refused checkpoint
        raise ConfigError(str(bad)) from None
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    provenance = {
        key: record.get(key) for key in ("experiment", "table", "row", "tier", "seed", "config_hash")
    }
    provenance |= {"recipe": config.recipe, "git_commit": record.get("git_commit", "unknown")}
    trains_mllm = recipe_named(config.recipe).trains_mllm
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    conditioner.save_pretrained(
        partial, stable_diffusion=config.models.stable_diffusion,
        base_mllm=None if trains_mllm or copy_base_mllm else config.models.mllm,
        extra={"sample_size": config.fid.generate_size, "repro": provenance, "metrics": metrics},
    )
    (partial / "README.md").write_text(model_card(provenance, metrics, config.models.stable_diffusion))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
    return out
