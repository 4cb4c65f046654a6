"""Where a run's files come from: `@tiny/` assets, `${VAR}` placeholders and user paths.

Tiny-tier paths start with `@tiny/` and point into the asset folder the harness builds itself;
they are only re-rooted here, never checked, since the assets may not exist yet. Every other
path comes from the user, so it must be set and exist before anything launches.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

from experiments.config import RunConfig
from repro.config.fields import leaf_value

TINY_PREFIX = "@tiny/"

# The path-valued config leaves, and the recipes that read each one. FID runs after every
# recipe, so its inputs are always needed; the baseline never touches the MLLM or training data.
PATH_KEYS: dict[str, frozenset[str]] = {
    "models.mllm": frozenset({"align", "e2e"}),
    "models.stable_diffusion": frozenset({"align", "e2e", "baseline"}),
    "data.train": frozenset({"align", "e2e"}),
    "data.heldout": frozenset({"align", "e2e"}),
    "data.train_images": frozenset({"e2e"}),
    "data.heldout_images": frozenset({"e2e"}),
    "fid.captions": frozenset({"align", "e2e", "baseline"}),
    "fid.images": frozenset({"align", "e2e", "baseline"}),
    "fid.inception_weights": frozenset({"align", "e2e", "baseline"}),
}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_paths(config: RunConfig, env: Mapping[str, str]) -> tuple[RunConfig, list[str]]:
    """Expand placeholders and make user paths absolute; blank the paths the recipe ignores.

    Blanking keeps an unused path (and the environment it came from) out of the config hash.
    `@tiny/` paths stay symbolic here so the hash does not depend on where the assets live.
    """
    problems: list[str] = []
    values: dict[str, str | None] = {}
    for key, recipes in PATH_KEYS.items():
        if config.recipe not in recipes:
            values[key] = None if _optional(config, key) else ""
            continue
        try:
            values[key] = _resolve_one(key, leaf_value(config, key), env, config.recipe)
        except ValueError as bad:
            problems.append(f"{key}: {bad}")
    return _with(config, values), problems


def needs_assets(config: RunConfig) -> list[str]:
    """A problem if the config still holds `@tiny/` paths but no asset folder was given."""
    tiny = [key for key in PATH_KEYS if str(leaf_value(config, key) or "").startswith(TINY_PREFIX)]
    if not tiny:
        return []
    return [f"{tiny[0]}: a tiny-tier asset; pass tiny_assets, the folder the harness builds them in"]


def localize(config: RunConfig, tiny_assets: Path) -> RunConfig:
    """Re-root `@tiny/` paths in the tiny asset folder."""
    root = tiny_assets.expanduser().resolve()
    values = {
        key: str(root / value.removeprefix(TINY_PREFIX))
        for key in PATH_KEYS
        if isinstance(value := leaf_value(config, key), str) and value.startswith(TINY_PREFIX)
    }
    return _with(config, values)


def _resolve_one(key: str, value: str | None, env: Mapping[str, str], recipe: str) -> str:
    how = f"set it with --set {key}=/path or in an override file"
    if not value:
        raise ValueError(f"no path given, and the {recipe} recipe reads it; {how}")
    if value.startswith(TINY_PREFIX):
        return value
    unset = [name for name in _PLACEHOLDER.findall(value) if not env.get(name)]
    if unset:
        names = ", ".join(unset)
        raise ValueError(
            f"{value!r} needs environment variable {names}, which is not set; "
            f"export {unset[0]}=/path, or {how}"
        )
    expanded = _PLACEHOLDER.sub(lambda match: env[match.group(1)], value)
    path = Path(expanded).expanduser().resolve()
    if not path.exists():
        shown = f"{value!r} -> {path}" if expanded != value else repr(value)
        raise ValueError(f"{shown} does not exist; {how}")
    return str(path)


def _optional(config: RunConfig, key: str) -> bool:
    section, name = key.split(".")
    by_name = {field.name: field for field in dataclasses.fields(getattr(config, section))}
    return by_name[name].default is None


def _with(config: RunConfig, values: dict[str, Any]) -> RunConfig:
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, name = key.split(".")
        by_section.setdefault(section, {})[name] = value
    return dataclasses.replace(
        config,
        **{
            section: dataclasses.replace(getattr(config, section), **changes)
            for section, changes in by_section.items()
        },
    )
