"""Shared pytest set-up: the ``gpu`` marker skips without CUDA; paths to shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def arctic_prompts_path() -> Path:
    """The CMU ARCTIC prompt list beside the checkout (tests and benchmarks only)."""
    path = SHARED_DATA / "arctic_a.data"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path
