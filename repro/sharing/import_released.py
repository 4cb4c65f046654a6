"""`repro import`: Kosmos-G's released checkpoint files (xichenpan/Kosmos-G) as folders the
harness reads: stage 1 as a Kosmos-2 folder for `models.mllm`, stage 2 and the final model as
exports (repro/sharing/export.py's format) for `repro generate` and evaluation recipes."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.released.stages import Stage
from repro.config.load import ConfigError

# What each file's import needs besides the file, as the command's option names.
NEEDS: dict[Stage, tuple[str, ...]] = {
    Stage.STAGE1: ("vocabulary",),
    Stage.STAGE2: ("base_mllm", "stable_diffusion"),
    Stage.FINAL: ("vocabulary", "stable_diffusion"),
}
DICT_FILE = "dict.txt"


def import_released(stage: Stage, checkpoint: Path, out: Path, *, vocabulary: Path | None = None,
                    base_mllm: Path | None = None, stable_diffusion: Path | None = None) -> Path:
    """vocabulary: the official repository's data/ folder (sentencepiece.bpe.model, dict.txt)."""
    from experiments.fixtures.xlmr_tokenizer import SPM_FILE
    from experiments.released.import_aligned import import_aligned
    from experiments.released.import_stage1 import import_stage1
    from experiments.released.provenance import RECORD
    from repro.sharing.released_card import released_card

    given = {"vocabulary": vocabulary, "base_mllm": base_mllm, "stable_diffusion": stable_diffusion}
    missing = [f"--{name.replace('_', '-')}" for name in NEEDS[stage] if given[name] is None]
    if missing:
        raise ConfigError(f"repro import {stage.value} needs {' and '.join(missing)}")
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: no such file")
    if out.exists() and any(out.iterdir()) and not (out / RECORD).is_file():
        raise ConfigError(f"--out {out}: a folder with other things in it; give an empty or new one")
    words = (vocabulary / SPM_FILE, vocabulary / DICT_FILE) if vocabulary else None
    for file in words or ():
        if not file.is_file():
            raise ConfigError(f"--vocabulary {vocabulary}: no {file.name} "
                              "(the official repository's data/ holds it)")
    try:
        if stage is Stage.STAGE1:
            if words is None:
                raise ConfigError("repro import stage1 needs --vocabulary")
            import_stage1(checkpoint, *words, out, stable_diffusion)
        else:
            if stable_diffusion is None:
                raise ConfigError(f"repro import {stage.value} needs --stable-diffusion")
            import_aligned(checkpoint, stage, stable_diffusion, out, base_mllm=base_mllm, vocabulary=words)
    except (KeyError, ValueError, FileNotFoundError) as bad:  # a refused pickle is a ValueError
        raise ConfigError(bad.args[0] if bad.args else repr(bad)) from None
    record = json.loads((out / RECORD).read_text())
    (out / "README.md").write_text(released_card(record, str(stable_diffusion) if stable_diffusion else None))
    return out
