from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    """The tiny tier's models and data, built once per test session."""
    from experiments.assets import ensure_tiny_assets

    return ensure_tiny_assets(tmp_path_factory.mktemp("tiny-assets"))
