"""What a failure says: one line first, the end of the traceback kept, a full disk named as such
with its path; `status` and `report` on a store that is missing or not a database."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
import torch

from experiments.data.shards import DataError
from experiments.training.checkpoints import CheckpointStore
from repro.launch.failures import clip, disk_full_path, failure_reason, is_permanent
from tests.support.workdirs import new_workdir, repro


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_a_long_traceback_keeps_its_end_within_the_tag_limit():
    def deep(n: int) -> None:
        if n == 0:
            raise RuntimeError("the real error, at the very end")
        deep(n - 1)

    try:
        deep(400)
    except RuntimeError as error:
        reason = failure_reason(error)
    assert len(reason) <= 8000
    assert reason.startswith("crashed: RuntimeError: the real error, at the very end\n")
    assert reason.endswith("RuntimeError: the real error, at the very end")
    assert clip("x" * 10, limit=20) == "x" * 10


def test_errors_that_cannot_pass_are_permanent_and_crashes_are_not():
    assert is_permanent(DataError("shard.tar: broken"))
    assert is_permanent(_raised(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")))
    assert is_permanent(OSError(errno.ENOSPC, "No space left on device", "/data/x.partial"))
    assert not is_permanent(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert not is_permanent(RuntimeError("NCCL timeout: a node went away"))
    wrapped = _raised(RuntimeError("basic_ios::clear"))
    wrapped.__cause__ = OSError(errno.ENOSPC, "disk full", "/runs/a/.step-00000004.partial")
    assert disk_full_path(wrapped) == "/runs/a/.step-00000004.partial"


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs, where this test may mount one (root, a kernel that allows it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root in a "
                    "sandbox that allows mounts")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_checkpoint_that_fills_the_disk_says_so_and_leaves_no_partial(tiny_disk: Path):
    store = CheckpointStore(tiny_disk / "checkpoints")
    store.save(1, {"model": {"w": torch.zeros(8)}})
    with pytest.raises(OSError) as full:
        store.save(2, {"model": {"w": torch.zeros(256 * 1024)}})  # 1 MiB of weights
    assert disk_full_path(full.value) == str(tiny_disk / "checkpoints" / ".step-00000002.partial")
    assert failure_reason(full.value).startswith(f"disk full: {tiny_disk / 'checkpoints'}")
    assert sorted(p.name for p in (tiny_disk / "checkpoints").iterdir()) == ["step-00000001"]
    assert store.load_latest()["step"] == 1


def test_status_and_report_never_create_a_store(tmp_path: Path, capsys):
    workdir = new_workdir(tmp_path / "wrong")
    for command in (["status", "--tier", "tiny"], ["report", "--tier", "tiny"]):
        assert repro(workdir, *command) == 2
        error = capsys.readouterr().err
        assert error.strip() == (f"repro: no MLflow store at {workdir.resolve() / 'mlflow.db'} "
                                 "(is --workdir the folder `repro run` used? or pass --tracking-uri)")
    assert not (workdir / "mlflow.db").exists()


def test_a_store_that_is_not_a_database_is_named(tmp_path: Path, capsys):
    workdir = new_workdir(tmp_path / "bad")
    (workdir / "mlflow.db").write_text("my notes, not a database\n")
    for command in (["status", "--tier", "tiny"], ["report", "--tier", "tiny"], ["run", "--tier", "tiny"]):
        assert repro(workdir, *command) == 2
        error = capsys.readouterr().err.strip().splitlines()
        database = workdir.resolve() / "mlflow.db"
        assert error[-1] == f"repro: {database} is not an MLflow store: not a SQLite database"
