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
def tiny_assets(tmp_path_factory) -> Path:
    """The tiny tier's models and data, built once per test session."""
    from experiments.tiny.assets import ensure_tiny_assets

    return ensure_tiny_assets(tmp_path_factory.mktemp("tiny-assets"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the items
def pytest_collection_modifyitems(config, items):
    """`make test` runs on two pytest-xdist workers with --dist loadgroup. A test file is one
    group, since its tests share module fixtures and some read what an earlier one wrote; the
    SLURM files are one group, since they share the one local cluster. The two longest groups (the
    full-size fixtures', SLURM's) go first, then the files holding slow tests, so no long one
    starts last."""

    def group(item) -> str:
        return "slurm" if item.get_closest_marker("slurm") else item.path.name

    weight: dict[str, int] = {}
    for item in items:
        longest = item.get_closest_marker("preflight") or item.get_closest_marker("slurm")
        mark = 0 if longest else 1 if item.get_closest_marker("slow") else 2
        weight[group(item)] = min(weight.get(group(item), 2), mark)
    items.sort(key=lambda item: weight[group(item)])  # stable: a file keeps its own order
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
