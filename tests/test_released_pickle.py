"""Kosmos-G's released fairseq checkpoints are pickles: reading one admits tensors and the
trainer's plain data (argparse, omegaconf, enums, typing, numpy scalars, as inert dicts and
values), and refuses anything else naming it, without running it."""

from __future__ import annotations

import argparse
import enum
import os
import sys
import types
import typing
from pathlib import Path

import numpy
import pytest
import torch

from experiments.released.fairseq_pickle import read_fairseq_checkpoint
from experiments.training.checkpoints import UnsafeCheckpointError


class Shell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class TorchSave:
    """A payload under a torch name, which the name screen lets through to torch's own list."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return torch.save, ({}, str(self.marker))


@pytest.mark.parametrize("payload, named", [(Shell, "posix.system"), (TorchSave, "torch.serialization.save")])
def test_a_planted_callable_is_refused_by_name_and_never_runs(tmp_path, payload, named):
    marker = tmp_path / "payload-ran"
    file = tmp_path / "checkpoint_final.pt"
    torch.save({"model": {"w": torch.zeros(2, dtype=torch.float16)}, "cfg": payload(marker)}, file)
    with pytest.raises(UnsafeCheckpointError, match=named.replace(".", r"\.")) as refused:
        read_fairseq_checkpoint(file)
    assert str(file) in str(refused.value)
    assert not marker.exists()


def _module(monkeypatch, name: str) -> types.ModuleType:
    """An empty module under `name`, and its parent packages, for pickle's import of it."""
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        package = ".".join(parts[:depth])
        if package not in sys.modules:
            monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    return sys.modules[name]


def _place(module: types.ModuleType, cls: type) -> type:
    cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
    setattr(module, cls.__name__, cls)
    return cls


def test_a_fairseq_trainer_dict_reads_as_plain_data(tmp_path, monkeypatch):
    """The writer's side of omegaconf and fairseq's enums, as their pickles spell them (neither
    package is installed): classes under their module names, pickled by their own state."""
    constants, nodes, dictconfig = (_module(monkeypatch, name) for name in (
        "fairseq.dataclass.constants", "omegaconf.nodes", "omegaconf.dictconfig"))
    backend = _place(constants, enum.Enum("DDP_BACKEND_CHOICES", {"c10d": "c10d", "no_c10d": "no_c10d"}))

    class AnyNode:
        def __init__(self, value, parent):
            self._val, self._parent, self._metadata = value, parent, {"ref_type": typing.Any}

    class DictConfig:
        def __init__(self, content):
            self._content = {key: AnyNode(value, self) for key, value in content.items()}

    _place(nodes, AnyNode), _place(dictconfig, DictConfig)
    weights = {"gpt_model.decoder.embed_tokens.weight": torch.randn(5, 4).half()}
    file = tmp_path / "checkpoint_stage1.pt"
    torch.save({
        "model": weights,
        "args": argparse.Namespace(arch="kosmosg_xl", decoder_layers=24, ddp_backend=backend.no_c10d),
        "cfg": DictConfig({"decoder_embed_dim": 2048, "optimizer": "adam"}),
        "extra_state": {"metrics": {"loss": {"val": numpy.float64(2.5), "count": numpy.int64(7)}},
                        "train_iterator": {"buffer": [numpy.arange(3)]}},
        "optimizer_history": [{"num_updates": 1000, "ref": typing.Any}],
    }, file)
    state = read_fairseq_checkpoint(file)
    assert state["args"] == {"arch": "kosmosg_xl", "decoder_layers": 24, "ddp_backend": "no_c10d"}
    assert state["cfg"] == {"decoder_embed_dim": 2048, "optimizer": "adam"}
    assert state["extra_state"]["metrics"]["loss"] == {"val": 2.5, "count": 7}
    buffered = state["extra_state"]["train_iterator"]["buffer"][0]  # an array: a record, not rebuilt
    assert buffered["__global__"].endswith("multiarray._reconstruct")
    assert buffered["args"][0] == "numpy.ndarray"
    assert state["optimizer_history"] == [{"num_updates": 1000, "ref": "typing.Any"}]
    loaded = state["model"]["gpt_model.decoder.embed_tokens.weight"]
    assert loaded.dtype == torch.float16
    assert torch.equal(loaded, weights["gpt_model.decoder.embed_tokens.weight"])


def test_repro_import_refuses_a_planted_file_naming_the_callable(tmp_path, capsys):
    from repro.cli import main as repro_main

    marker = tmp_path / "payload-ran"
    file = tmp_path / "checkpoint_stage1.pt"
    torch.save({"model": {}, "cfg": Shell(marker)}, file)
    for name in ("sentencepiece.bpe.model", "dict.txt"):
        (tmp_path / name).write_text("")
    assert repro_main(["import", "stage1", str(file), "--vocabulary", str(tmp_path), "--out",
                       str(tmp_path / "out")]) == 2
    assert "posix.system" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_self_referring_structure_is_refused(tmp_path):
    loop: list = []
    loop.append(loop)
    file = tmp_path / "checkpoint_stage1.pt"
    torch.save({"model": {}, "extra_state": loop}, file)
    with pytest.raises(UnsafeCheckpointError, match="refers to itself"):
        read_fairseq_checkpoint(file)
