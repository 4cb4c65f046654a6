"""Where an imported checkpoint came from, written beside what the import made (released.json)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

OFFICIAL_REPOSITORY = "xichenpan/Kosmos-G"
# The commit whose code (unilm/models, torchscale, open_clip, data/dict.txt) the key rules follow.
OFFICIAL_COMMIT = "f5c0489320bb885f0454d69fa06e0b37aa88db88"
RECORD = "released.json"

# A fairseq trainer dict's top-level keys: the weights, and what only a resumed training reads.
TRAINER_KEYS: dict[str, str] = {
    "model": "the weights",
    "cfg": "read for decoder_attention_heads; the training's configuration",
    "args": "read for decoder_attention_heads (older fairseq); the training's arguments",
    "optimizer_history": "training state: not imported",
    "last_optimizer_state": "training state: not imported",
    "extra_state": "training state (data iterator, meters): not imported",
    "task_state": "training state: not imported",
    "criterion": "training state: not imported",
}


def unknown_trainer_keys(state: Mapping[str, Any], source: Path) -> None:
    unknown = sorted(set(state) - set(TRAINER_KEYS))
    if unknown:
        raise KeyError(f"{source}: top-level keys a fairseq trainer does not save: "
                       f"{', '.join(map(str, unknown))}")
    if "model" not in state:
        raise KeyError(f"{source}: no 'model' (the state dict) at the top level")


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        while chunk := stream.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def write_record(folder: Path, source: Path, kind: str, dropped: Mapping[str, str],
                 extra: Mapping[str, Any]) -> Path:
    record = {
        "imported_from": {"file": source.name, "sha256": sha256_of(source)},
        "official": {"repository": OFFICIAL_REPOSITORY, "commit": OFFICIAL_COMMIT},
        "kind": kind, "dropped_keys": dict(sorted(dropped.items())), **extra,
    }
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return folder / RECORD
