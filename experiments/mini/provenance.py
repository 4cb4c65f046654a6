"""What made a mini model's weights, kept beside them as JSON: the command that trained it, its
seed and the WORLD_VERSION of the world it learned. Every mini model writes and checks its record
here, so weights of another world version are refused with one message naming the model, both
versions and the command that retrains it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.mini.version import WORLD_VERSION


@dataclass(frozen=True)
class Provenance:
    """The record of a mini model whose settings are one frozen dataclass."""

    command: str
    seed: int
    world_version: str
    training: Any  # the trainer's settings, sizes included


def write_record(record_file: Path, record: Any) -> None:
    """`record`: a dataclass with at least `command`, `seed` and `world_version` fields."""
    Path(record_file).write_text(json.dumps(asdict(record), indent=1) + "\n")


def read_record(record_file: Path, model: str, weights: Path, retrain: str) -> dict[str, Any]:
    """The record of `model`'s `weights`; FileNotFoundError if either is missing, ValueError if
    they were trained on another world version than this code draws."""
    record_file = Path(record_file)
    if not Path(weights).exists() or not record_file.is_file():
        raise FileNotFoundError(f"no {model} at {weights} (needs it and {record_file.name} beside it)")
    record = json.loads(record_file.read_text())
    if record.get("world_version") != WORLD_VERSION:
        raise ValueError(
            f"the {model} at {weights} was trained on mini world version {record.get('world_version')!r}, "
            f"but this code draws version {WORLD_VERSION!r}: retrain it with `{retrain}` on a world "
            "rebuilt by `repro mini world`"
        )
    return record
