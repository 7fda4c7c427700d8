from __future__ import annotations

import pytest
import torch


def _forward_backward(model: torch.nn.Module, x: torch.Tensor, expected_shape, **kwargs) -> torch.Tensor:
    """Run forward and backward; assert the shape, finiteness and a gradient on every parameter."""
    x = x.clone().requires_grad_(True)
    y = model(x, **kwargs)
    out = y[0] if isinstance(y, tuple) else y
    assert tuple(out.shape) == tuple(expected_shape)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    return out


@pytest.fixture
def forward_backward():
    return _forward_backward


@pytest.fixture(autouse=True)
def deterministic_init():
    """Make the default weight initialisation of every model built in a test reproducible.

    ``torch.nn`` layers draw their initial weights from the global generator; forking it keeps the
    tests independent of their order and leaves the global state as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
