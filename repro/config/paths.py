"""Where a run's files come from: `@tiny/` assets, `${VAR}` placeholders and user paths.

Tiny-tier paths start with `@tiny/` and point into the asset folder the harness builds itself;
`@run/<config hash>` names another run's directory (stage 3 starting from stage 2). Both are
only re-rooted, never checked, since they may not exist yet. Every other path comes from the
user, so it must be set and exist before anything launches.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

from experiments.config import Evaluation, RunConfig
from experiments.recipes.registry import evaluation_applies, recipe_named
from repro.config.fields import leaf_value

TINY_PREFIX = "@tiny/"
RUN_PREFIX = "@run/"


def tiny_assets_dir(workdir: Path) -> Path:
    """Where the harness builds the tiny tier's assets for a work directory."""
    return (workdir / ".cache" / "tiny-assets").resolve()

# The path-valued config leaves. Each recipe declares those its models and data come from
# (registry.py); an evaluation's inputs are read by a recipe that samples images when the
# config turns that evaluation on.
_EVALUATION_PATHS: dict[Evaluation, tuple[str, ...]] = {
    "fid": ("fid.captions", "fid.images", "fid.inception_weights", "fid.attribute_classifier"),
    "dreambench": ("dreambench.root", "dreambench.prompts", "dreambench.dino", "dreambench.clip"),
}
# Read only when set (and, for the Inception weights, only by the Inception extractor).
_SET_ONLY = ("fid.attribute_classifier",)
PATH_KEYS: tuple[str, ...] = (
    "models.mllm", "models.stable_diffusion", "models.released", "data.train", "data.heldout",
    "data.train_images", "data.heldout_images", "data.compositional", "data.edits", "data.captioned",
    "train.init_from",
    *(key for keys in _EVALUATION_PATHS.values() for key in keys),
)


def _needed(config: RunConfig, key: str) -> bool:
    recipe = recipe_named(config.recipe)
    if key in recipe.reads or (key in recipe.may_read and leaf_value(config, key)):
        return True
    section = key.split(".")[0]
    if section not in _EVALUATION_PATHS or not evaluation_applies(config, section):
        return False
    if key == "fid.inception_weights":
        return config.fid.feature_extractor == "inception-v3-compat"
    return key not in _SET_ONLY or bool(leaf_value(config, key))

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_paths(config: RunConfig, env: Mapping[str, str]) -> tuple[RunConfig, list[str]]:
    """Expand placeholders and make user paths absolute; blank the paths the run ignores.

    Blanking keeps an unused path (and the environment it came from) out of the config hash.
    `@tiny/` and `@run/` paths stay symbolic here so the hash does not depend on where the
    assets or the work dir live.
    """
    problems: list[str] = []
    values: dict[str, str | None] = {}
    for key in PATH_KEYS:
        if not _needed(config, key):
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
    if value.startswith((TINY_PREFIX, RUN_PREFIX)):
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


def localize_runs(config: RunConfig, runs_dir: Path) -> RunConfig:
    """Re-root an `@run/<config hash>` path in the work dir's runs/ folder (done in the job,
    which alone knows the work dir)."""
    value = config.train.init_from
    if not (value and value.startswith(RUN_PREFIX)):
        return config
    return _with(config, {"train.init_from": str(runs_dir / value.removeprefix(RUN_PREFIX))})
