"""Render tests run single-threaded: on a shared 2-core machine torch's OpenMP threads spin against other
processes and small tensor ops get ~40x slower (the engine also fixes the thread count per node run)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
