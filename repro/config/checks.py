"""Small checks that the readers of experiments.toml share; each returns problem strings."""

from __future__ import annotations

from typing import Any, Iterable

from repro.config.fields import BadValue, coerce, suggest, unknown_key


def sub_tables(raw: Any, where: str, problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The sub-tables of `raw`, reporting anything that is not a table."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {raw!r}")
        return []
    found = [(key, value) for key, value in raw.items() if isinstance(value, dict)]
    problems += [
        f"{where}.{key}: expected a table" for key, value in raw.items() if not isinstance(value, dict)
    ]
    return found


def metric_values(raw: dict[str, Any], where: str) -> tuple[dict[str, float], list[str]]:
    values, problems = {}, []
    for metric, value in raw.items():
        try:
            values[metric] = coerce(value, float)
        except BadValue as bad:
            problems.append(f"{where}.{metric}: {bad}")
    return values, problems


def unknown_keys(table: dict[str, Any], allowed: Iterable[str], where: str) -> list[str]:
    allowed = set(allowed)
    prefix = f"{where}." if where else ""
    return [f"{prefix}{key}: {unknown_key(key, allowed)}" for key in table if key not in allowed]


def choices(word: str, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    return f" {word!r}{suggest(word, choices)}; choose from {', '.join(choices)}"
