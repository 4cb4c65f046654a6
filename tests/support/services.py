"""Tests that need a service (a SLURM controller, a database): skipped with the reason on a box
without it, failed in CI, where .ci/run has started it and its absence is a broken set-up."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require_service(name: str, is_up: bool, how_to_start: str) -> None:
    """Call from a fixture of the tests that need `name`."""
    if is_up:
        return
    reason = f"{name} is not running here: {how_to_start}"
    if in_ci():
        pytest.fail(f"CI=true and {reason} (.ci/run starts it; its log is in the CI output)", pytrace=False)
    pytest.skip(reason)
