"""A trained run as a self-contained folder in the Hugging Face style, for someone without this
harness's work directory (or with only `KosmosGConditioner` and diffusers).

The folder is what `KosmosGConditioner.save_pretrained` writes (config.json, the aligner's M in
safetensors, the MLLM under mllm/), plus the run's provenance in config.json and a README.md
model card. Nothing in it is a pickle. It is written aside and renamed into place, so a folder
at `out` is always a whole export.

A finished run writes it from the conditioner it holds in memory (repro/launch/run_job.py);
`repro export` (`export_run`) loads a run's from its directory; both through `write_export`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.config import RunConfig
from experiments.recipes.registry import recipe_named
from models.conditioning import saved_config
from repro.config.load import ConfigError
from repro.config.stored import stored_record
from repro.sharing.model_card import model_card

if TYPE_CHECKING:
    from models import KosmosGConditioner

# What config.json's "repro" table and the model card carry of the job's record.
_PROVENANCE = ("experiment", "table", "row", "tier", "seed", "config_hash")


def export_run(run_dir: Path, out: Path) -> Path:
    """`repro export`: the run's trained conditioner loaded from its directory (its newest
    checkpoint), with the MLLM copied in."""
    from experiments.recipes.generation import trained_conditioner

    _refuse_foreign(out)
    record, config = stored_record(run_dir)
    try:
        conditioner = trained_conditioner(config, run_dir)
    except (ValueError, FileNotFoundError) as bad:  # a recipe that trains none, a refused checkpoint
        raise ConfigError(str(bad)) from None
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return write_export(conditioner, config, record, metrics, out, copy_base_mllm=True)


def write_export(conditioner: KosmosGConditioner, config: RunConfig, record: dict[str, Any],
                 metrics: dict[str, float], out: Path, *, copy_base_mllm: bool) -> Path:
    """record: the job's config.json (its provenance keys and git commit). copy_base_mllm=False
    records where an MLLM the run did not train loads from instead of copying it (what each run
    logs to MLflow: stage 2 leaves Kosmos-2 as it was, and its copy would be GBs per run); stage
    3's trained MLLM is always copied."""
    _refuse_foreign(out)
    provenance = {key: record.get(key) for key in _PROVENANCE}
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


def _refuse_foreign(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and saved_config(out) is None:
        raise ConfigError(f"--out {out}: a folder with other things in it; give an empty or new one")
