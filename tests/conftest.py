from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core box a second
    spinning thread makes every op several times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    """The tiny tier's models and data, built once per test session."""
    from experiments.tiny.assets import ensure_tiny_assets

    return ensure_tiny_assets(tmp_path_factory.mktemp("tiny-assets"))
