"""The user's layers on top of experiments.toml: an override file and `--set key=value`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Iterable

from repro.config.fields import (
    LAYERED,
    BadValue,
    check_sections,
    coerce,
    leaf_type,
    unknown_key,
)


def read_overrides(
    assignments: Iterable[str], override_file: Path | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The user's layers, weakest first: the override file, then each `key=value` in order.

    A value is read as a TOML literal (`3e-4`, `[0.9, 0.99]`, `"x"`); anything that is not
    one is taken as a bare string, so `--set models.mllm=/ckpt/kosmos2` needs no quoting.
    """
    layers: list[dict[str, Any]] = []
    problems: list[str] = []
    if override_file is not None:
        try:
            raw = tomllib.loads(override_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as bad:
            return [], [f"{override_file}: cannot read: {bad}"]
        problems += [
            f"{override_file}: {key}: {unknown_key(key, LAYERED)}"
            for key in raw
            if key not in LAYERED
        ]
        layer, found = check_sections(raw, "")
        layers.append(layer)
        problems += [f"{override_file}: {problem}" for problem in found]
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep:
            problems.append(f"--set {assignment!r}: expected dotted.key=value")
            continue
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        try:
            layers.append(nest(key, coerce(value, leaf_type(key))))
        except BadValue as bad:
            problems.append(f"--set {assignment!r}: {key}: {bad}")
    return layers, problems


def nest(dotted: str, value: Any) -> dict[str, Any]:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value
