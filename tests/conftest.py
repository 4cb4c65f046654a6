from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core box a second
    spinning thread makes every op several times slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_torch_thread_after_each_test():
    """A job run in this process sets its own share of threads; set back after every test, so
    the next test and the fixtures it builds (a module's, a session's) run on one thread: a test
    comparing one process with its spawned one-thread ranks must sum in the same order."""
    import torch

    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def slurm_controller() -> None:
    from tests.support.services import require_service
    from tests.support.slurm import slurm_is_up

    require_service("a SLURM controller", slurm_is_up(), "run scripts/slurm-local.sh (as root) to start one")


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    """The tiny tier's models and data, built once per test session."""
    from experiments.tiny.assets import ensure_tiny_assets

    return ensure_tiny_assets(tmp_path_factory.mktemp("tiny-assets"))


def pytest_collection_modifyitems(config, items):
    """`make test` runs on two pytest-xdist workers with --dist loadfile: a file's tests run on
    one worker, since they share module fixtures and some read what an earlier one wrote; files
    are handed out in this order (--no-loadscope-reorder; xdist would put the files of most tests
    first). The longest files go first: the full-size fixtures' and the two SLURM files (the
    second SLURM file then queues behind the fixtures' 15-minute test, so in practice, though not
    by any lock, it does not share the one local cluster with the first), then the files holding
    slow tests, so that no long one starts last."""
    def weight(item) -> int:
        if item.get_closest_marker("preflight") or item.get_closest_marker("slurm"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    by_file: dict[str, int] = {}
    for item in items:
        by_file[item.path.name] = min(by_file.get(item.path.name, 2), weight(item))
    items.sort(key=lambda item: by_file[item.path.name])  # stable: a file keeps its own order
