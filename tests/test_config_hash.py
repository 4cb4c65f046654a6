"""config_hash: the same run gets the same id everywhere; any change to what runs changes it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.config import RunConfig
from repro.config import config_hash, load_matrix
from repro.config.expand import HASHED_WHEN_CHANGED
from repro.config.paths import PATH_KEYS
from tests.support.full_tier import EXPERIMENTS


def tiny_runs(path: Path, assets: Path, **kwargs):
    return load_matrix(path, "tiny", tiny_assets=assets, env={}, **kwargs).runs


def hashes(path: Path, assets: Path, **kwargs) -> dict[str, str]:
    return {run.run_name: run.config_hash for run in tiny_runs(path, assets, **kwargs)}


def test_hashes_are_distinct_12_hex_digits(tmp_path):
    found = hashes(EXPERIMENTS, tmp_path)
    # Table 2: 6 x 2 seeds and its released row; Table 1: 2 + 1 and its released row
    assert len(set(found.values())) == len(found) == 17
    assert all(len(h) == 12 and int(h, 16) >= 0 for h in found.values())


def test_hashes_are_stable_across_processes(tmp_path):
    code = (
        "import json; from pathlib import Path; from repro.config import load_matrix\n"
        f"m = load_matrix({str(EXPERIMENTS)!r}, 'tiny', tiny_assets=Path({str(tmp_path)!r}), env={{}})\n"
        "print(json.dumps({r.run_name: r.config_hash for r in m.runs}))\n"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1] == hashes(EXPERIMENTS, tmp_path)


def test_hashes_ignore_key_order_comments_and_asset_folder(tmp_path):
    text = EXPERIMENTS.read_text()
    # The same values, written in another order and with other comments and annotations.
    edits = [
        (
            "aligner = { width = 32, ffn = 64, heads = 2, max_source_len = 256 }",
            "aligner = { max_source_len = 256, heads = 2, ffn = 64, width = 32 }",
        ),
        ("lr = 1e-3\n", "lr = 0.001  # moved comment\n"),
        ('row = "24-Layers AlignerNet"\n', 'row = "24-Layers AlignerNet"\nnote = "a remark"\n'),
        ("paper = 9.55", "paper = 9.5"),
        ('title = "Table 2', 'title = "Tab. 2'),
        ("guidance = 3.0", "guidance = 3"),
    ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    fid_block = text[text.index("[tier.tiny.fid]") : text.index("[tier.tiny.stage.e2e]")]
    text = text.replace(fid_block, "")
    text = text.replace("[tier.tiny.train]", fid_block + "[tier.tiny.train]")
    reordered = tmp_path / "reordered.toml"
    reordered.write_text(text)
    assert hashes(reordered, tmp_path / "elsewhere") == hashes(EXPERIMENTS, tmp_path)


def _leaves(value: Any, prefix: str = "") -> list[str]:
    if dataclasses.is_dataclass(value):
        return [
            leaf
            for field in dataclasses.fields(value)
            for leaf in _leaves(getattr(value, field.name), f"{prefix}{field.name}.")
        ]
    return [prefix.rstrip(".")]


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, tuple):
        return (_changed(value[0]), *value[1:]) if value else ("changed",)
    if isinstance(value, dict):
        return {**value, "changed": "changed"}
    return f"{value}-changed" if value else "changed"


def _replace(config: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: _replace(getattr(config, head), rest, value)})


def _value(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


BASE = tiny_runs(EXPERIMENTS, Path("assets"))[4]  # e2e-aligner: every path is set
LEAVES = _leaves(BASE.config)


def _hash(run, **changes) -> str:
    fields = {
        "experiment": run.experiment,
        "table": run.table,
        "row": run.row,
        "tier": run.tier,
        "seed": run.seed,
        "point": run.sweep_point,
        "config": run.config,
        **changes,
    }
    return config_hash(**fields)


@pytest.mark.parametrize("leaf", LEAVES)
def test_any_config_change_changes_the_hash(leaf):
    config = _replace(BASE.config, leaf, _changed(_value(BASE.config, leaf)))
    assert _hash(BASE, config=config) != _hash(BASE)


def test_identity_changes_change_the_hash():
    base = _hash(BASE)
    changes = [
        {"experiment": "other"},
        {"table": "table9"},
        {"row": "other row"},
        {"tier": "full"},
        {"seed": 7},
        {"point": (("train.optim.lr", 3e-4),)},
    ]
    assert len({base, *(_hash(BASE, **change) for change in changes)}) == 1 + len(changes)


def test_tiny_paths_are_hashed_in_their_symbolic_form():
    root = str(Path("assets").resolve()) + "/"
    symbolic = BASE.config
    for leaf in PATH_KEYS:
        if _value(symbolic, leaf):  # the paths this e2e run does not read are blank
            symbolic = _replace(symbolic, leaf, _value(symbolic, leaf).replace(root, "@tiny/"))
    assert symbolic.fid.images == "@tiny/coco/val"
    assert _hash(BASE, config=symbolic) == BASE.config_hash


def test_every_leaf_is_covered():
    assert isinstance(BASE.config, RunConfig) and BASE.config.recipe == "e2e"
    assert {"train.optim.betas", "data.train_images", "fid.inception_weights", "seed"} <= set(LEAVES)


def test_a_key_added_later_keeps_the_ids_of_earlier_runs_until_it_is_changed():
    """data.max_image_pixels came after runs existed: at its default, e2e-aligner seed 0 keeps
    the id it had before the key, and so its run folder, checkpoints and MLflow run."""
    assert BASE.run_name.startswith("E2E w/ AlignerNet") and BASE.seed == 0
    assert BASE.config_hash == "e66811b60ffc"
    assert "data.max_image_pixels" in HASHED_WHEN_CHANGED
    key = "data.max_image_pixels"
    config = _replace(BASE.config, key, _changed(_value(BASE.config, key)))
    assert _hash(BASE, config=config) != BASE.config_hash


def test_a_key_added_later_enters_the_hash_only_where_a_run_sets_it(tmp_path):
    """models.released came after runs had finished: a run that leaves it at its default keeps
    the id it had before the key existed; the released rows' ids follow its value."""
    from repro.config.expand import hashed_config

    runs = {run.experiment: run for run in tiny_runs(EXPERIMENTS, tmp_path, seeds=[0])}
    assert "models.released" in HASHED_WHEN_CHANGED
    assert "released" not in hashed_config(runs["aligner-12"].config)["models"]
    assert hashed_config(runs["aligner-12-released"].config)["models"]["released"].endswith("released/stage2")
    assert runs["aligner-12"].config.models.released == ""
    other = {run.experiment: run.config_hash for run in tiny_runs(
        EXPERIMENTS, tmp_path, seeds=[0], overrides=["models.released=@tiny/released/final"])}
    assert other["aligner-12"] == runs["aligner-12"].config_hash  # unread by align: blanked, left out
    assert other["aligner-12-released"] != runs["aligner-12-released"].config_hash


def test_retrained_mini_weights_give_mini_runs_new_ids_and_leave_tiny_ids(tmp_path, monkeypatch):
    from experiments.mini import version
    from repro.config.paths import MINI_PREFIX

    def ids() -> tuple[dict[str, str], dict[str, str]]:
        version.assets_version.cache_clear()
        mini = load_matrix(EXPERIMENTS, "mini", assets={MINI_PREFIX: tmp_path}, env={}).runs
        return {run.run_name: run.config_hash for run in mini}, hashes(EXPERIMENTS, tmp_path)

    shipped_mini, shipped_tiny = ids()
    # The shipped weights linked into a copy, with one record retrained (another seed).
    retrained = tmp_path / "weights"
    for path in (path for path in version.SHIPPED_WEIGHTS.rglob("*") if path.is_file()):
        copy = retrained / path.relative_to(version.SHIPPED_WEIGHTS)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.symlink_to(path)
    record = retrained / "sd" / "provenance.json"
    text = record.read_text()
    record.unlink()
    record.write_text(text.replace('"seed": 0', '"seed": 1', 1))
    monkeypatch.setattr(version, "SHIPPED_WEIGHTS", retrained)
    try:
        retrained_mini, retrained_tiny = ids()
    finally:
        monkeypatch.undo()
        version.assets_version.cache_clear()
    assert retrained_tiny == shipped_tiny
    assert retrained_mini.keys() == shipped_mini.keys()
    assert all(retrained_mini[name] != shipped_mini[name] for name in shipped_mini)
