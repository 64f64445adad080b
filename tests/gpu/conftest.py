"""Tests that need a CUDA device: they run on the device tool's GPU machine
(``benchmarks/device/run.sh`` runs ``pytest tests/gpu``) and skip, saying so, everywhere else.

Every test here takes the ``cuda`` fixture, which skips the test when torch sees no CUDA
device (or torch is not installed) and otherwise returns the device to use.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cuda() -> str:
    """``"cuda:0"``; skips the test when torch is missing or sees no CUDA device."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"needs a CUDA device; torch {torch.__version__} sees none")
    return "cuda:0"
