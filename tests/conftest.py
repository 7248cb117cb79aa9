"""Fixtures shared by several test modules (none is autouse: a module asks for what it needs)."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (the same kernels and batches whatever the machine's
    cores), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
