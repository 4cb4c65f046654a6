"""Type-checks TOML values against the RunConfig dataclasses, so the schema lives in one place.

The fields, their types and their allowed values (Literal) come from experiments/config.py (the
`aligner` section's from models/aligner_config.py, which it re-exports); adding a field there
makes it settable in experiments.toml with no change here.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

from experiments.config import RunConfig
from repro.config.launch import LaunchConfig

# RunConfig's own scalars (recipe, seed) come from the experiment and the seed list, not from
# a section, so only its dataclass-typed fields are sections.
SECTIONS: dict[str, type] = {
    name: hint
    for name, hint in get_type_hints(RunConfig).items()
    if isinstance(hint, type) and is_dataclass(hint)
}
# Every section a layer may set: the run's config plus the harness's own launch settings.
LAYERED: dict[str, type] = {**SECTIONS, "launch": LaunchConfig}


class BadValue(Exception):
    """A value that does not fit its field; the message says what was expected."""


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(key: str, allowed: typing.Iterable[str]) -> str:
    allowed = sorted(allowed)
    return f"unknown key{suggest(key, allowed)}; allowed: {', '.join(allowed)}"


def check_sections(table: dict[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """Check the config sections (models, aligner, ...) found in `table`; other keys are ignored.

    Returns the coerced sections and the problems, each prefixed by its key path.
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    for name, cls in LAYERED.items():
        if name in table:
            out[name], found = check_table(table[name], cls, _join(where, name))
            problems += found
    return out, problems


def check_table(value: Any, cls: type, where: str) -> tuple[dict[str, Any], list[str]]:
    """Check a partial table for dataclass `cls`: every key known, every value of its type."""
    if not isinstance(value, dict):
        return {}, [f"{where}: expected a table, got {_show(value)}"]
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, item in value.items():
        path = _join(where, key)
        if key not in hints:
            problems.append(f"{path}: {unknown_key(key, hints)}")
        elif is_dataclass(hints[key]):
            out[key], found = check_table(item, hints[key], path)
            problems += found
        else:
            try:
                out[key] = coerce(item, hints[key])
            except BadValue as bad:
                problems.append(f"{path}: {bad}")
    return out, problems


def leaf_type(dotted: str) -> Any:
    """The type of a config leaf named by its dotted path, e.g. "train.optim.lr"."""
    head, *rest = dotted.split(".")
    if head not in LAYERED:
        raise BadValue(unknown_key(head, LAYERED))
    hint: Any = LAYERED[head]
    for part in rest:
        if not is_dataclass(hint):
            raise BadValue(f"{part!r} is below a value, not a table")
        hints = get_type_hints(hint)
        if part not in hints:
            raise BadValue(unknown_key(part, hints))
        hint = hints[part]
    if is_dataclass(hint):
        raise BadValue("names a table; name one of its values")
    return hint


def leaf_value(config: Any, dotted: str) -> Any:
    """The value at a dotted path in a built config, e.g. leaf_value(run, "train.optim.lr")."""
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def coerce(value: Any, hint: Any) -> Any:
    """Return `value` as type `hint` (ints widen to floats, lists to tuples) or raise BadValue."""
    origin = get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        # bool is an int subclass in Python; in a config it is always a mistake.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is Literal:
        choices = [str(choice) for choice in get_args(hint)]
        if value in get_args(hint):
            return value
        raise BadValue(
            f"unknown value {value!r}{suggest(str(value), choices)}; choose from {', '.join(choices)}"
        )
    elif origin in (typing.Union, types.UnionType):
        # TOML has no null, so the None arm of `X | None` is only ever the default.
        for arm in get_args(hint):
            if arm is not type(None):
                return coerce(value, arm)
    elif origin is tuple and get_args(hint)[1:] == (Ellipsis,):
        if isinstance(value, (list, tuple)):
            return tuple(coerce(item, get_args(hint)[0]) for item in value)
        raise BadValue(f"expected a list, got {_show(value)}")
    elif origin is dict:
        key_type, value_type = get_args(hint)
        if isinstance(value, dict):
            return {coerce(k, key_type): coerce(v, value_type) for k, v in value.items()}
        raise BadValue(f"expected a table, got {_show(value)}")
    elif origin is tuple:
        arms = get_args(hint)
        if isinstance(value, (list, tuple)) and len(value) == len(arms):
            return tuple(coerce(item, arm) for item, arm in zip(value, arms))
        raise BadValue(f"expected a list of {len(arms)} values, got {_show(value)}")
    else:
        raise BadValue(f"unsupported field type {hint!r}")
    raise BadValue(f"expected {_name(hint)}, got {_show(value)}")


def build(cls: type, table: dict[str, Any], where: str = "") -> tuple[Any, list[str]]:
    """Construct dataclass `cls` from a merged, already coerced table."""
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    hints = get_type_hints(cls)
    for field in fields(cls):
        path = _join(where, field.name)
        if field.name in table:
            if is_dataclass(hints[field.name]):
                kwargs[field.name], found = build(hints[field.name], table[field.name], path)
                problems += found
            else:
                kwargs[field.name] = table[field.name]
        elif field.default is MISSING and field.default_factory is MISSING:
            problems.append(f"{path}: required, but no layer sets it")
    if problems:
        return None, problems
    return cls(**kwargs), []


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
