"""Fixtures of the diffusion tests; the helpers live in training_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training_fixtures import make_synthetic_cache


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: the tiny networks gain nothing from more, and on a busy 2-core machine
    spinning OpenMP threads slow them down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return make_synthetic_cache(tmp_path / "data")
