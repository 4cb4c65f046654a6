"""Where a run's files come from: `@tiny/` and `@mini/` assets, `${VAR}` placeholders and user paths.

Tiny- and mini-tier paths start with an asset prefix (ASSET_SOURCES) and point into the folder
the harness builds those assets in; `@run/<config hash>` names another run's directory (stage 3
starting from stage 2). Both are only re-rooted, never checked, since they may not exist yet.
Every other path comes from the user, so it must be set and exist before anything launches.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from experiments.config import Evaluation, RunConfig
from experiments.recipes.registry import evaluation_applies, recipe_named
from repro.config.fields import leaf_value

TINY_PREFIX = "@tiny/"
MINI_PREFIX = "@mini/"
RUN_PREFIX = "@run/"


@dataclass(frozen=True)
class AssetSource:
    """Assets the harness builds itself: the folder under the work dir's .cache/ they live in,
    the function that builds them there ("module:name", imported only when a run needs it,
    since the builders pull in torch), and, where the assets include trained weights that can
    change under the same config, a function naming their version (cheap, no torch)."""

    folder: str
    builder: str
    version: str | None = None


ASSET_SOURCES: dict[str, AssetSource] = {
    TINY_PREFIX: AssetSource("tiny-assets", "experiments.tiny.assets:ensure_tiny_assets"),
    MINI_PREFIX: AssetSource(
        "mini-assets", "experiments.mini.assets:ensure_mini_assets", "experiments.mini.version:assets_version"
    ),
}


def asset_roots(workdir: Path) -> dict[str, Path]:
    """Each asset prefix's folder for a work directory."""
    cache = workdir / ".cache"
    return {prefix: (cache / source.folder).resolve() for prefix, source in ASSET_SOURCES.items()}


def tiny_assets_dir(workdir: Path) -> Path:
    """Where the harness builds the tiny tier's assets for a work directory."""
    return asset_roots(workdir)[TINY_PREFIX]


def ensure_assets(prefix: str, root: Path) -> Path:
    """Builds `prefix`'s assets in `root` unless they are there already."""
    built: Path = _imported(ASSET_SOURCES[prefix].builder)(root)
    return built


def asset_versions(config: RunConfig) -> dict[str, str]:
    """The version of each versioned asset prefix the config's paths name."""
    values = [str(leaf_value(config, key) or "") for key in PATH_KEYS]
    return {
        prefix: str(_imported(source.version)())
        for prefix, source in ASSET_SOURCES.items()
        if source.version and any(value.startswith(prefix) for value in values)
    }


def _imported(reference: str) -> Any:
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)

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
    Asset paths (`@tiny/`, `@mini/`) and `@run/` paths stay symbolic here so the hash does not
    depend on where the assets or the work dir live.
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


def needs_assets(config: RunConfig, roots: Mapping[str, Path]) -> list[str]:
    """A problem for the first asset path whose prefix has no folder in `roots`."""
    for key in PATH_KEYS:
        value = str(leaf_value(config, key) or "")
        missing = [prefix for prefix in ASSET_SOURCES if value.startswith(prefix) and prefix not in roots]
        if missing:
            return [f"{key}: a {missing[0]} asset; pass the folder the harness builds it in "
                    "(load_matrix's assets, or tiny_assets for @tiny/)"]
    return []


def localize(config: RunConfig, roots: Mapping[str, Path]) -> RunConfig:
    """Re-root asset paths (`@tiny/...`, `@mini/...`) in their prefix's folder in `roots`."""
    values = {}
    for key in PATH_KEYS:
        value = leaf_value(config, key)
        for prefix, root in roots.items():
            if isinstance(value, str) and value.startswith(prefix):
                values[key] = str(root.expanduser().resolve() / value.removeprefix(prefix))
    return _with(config, values)


def _resolve_one(key: str, value: str | None, env: Mapping[str, str], recipe: str) -> str:
    how = f"set it with --set {key}=/path or in an override file"
    if not value:
        raise ValueError(f"no path given, and the {recipe} recipe reads it; {how}")
    if value.startswith((*ASSET_SOURCES, RUN_PREFIX)):
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
