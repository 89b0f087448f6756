"""Shared pytest configuration."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op torch thread per test process: the tests' tensors are small, CI runs two xdist
    workers on two cores, and more threads only oversubscribe the machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
