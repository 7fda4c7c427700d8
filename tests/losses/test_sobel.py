import numpy as np
import pytest
import torch
from scipy import ndimage

from spectdl.losses import SobelLoss, sobel_gradients


def _rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("shape", [(2, 2, 7, 9), (1, 2, 5, 6, 7)])
def test_sobel_gradients_equal_scipy(shape):
    x = _rand(shape, 0)
    g = sobel_gradients(x)
    sd = len(shape) - 2
    assert g.shape == (shape[0], shape[1], sd) + shape[2:]
    for b in range(shape[0]):
        for c in range(shape[1]):
            for axis in range(sd):
                np.testing.assert_allclose(g[b, c, axis].numpy(), ndimage.sobel(x[b, c].numpy(), axis=axis), atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 1, 8, 9), (2, 1, 5, 6, 7)])
def test_sobel_loss_equals_mean_abs_difference_of_scipy_gradients(shape):
    p, t = _rand(shape, 1), _rand(shape, 2)
    sd = len(shape) - 2
    diffs = [
        np.abs(ndimage.sobel(p[b, 0].numpy(), axis=a) - ndimage.sobel(t[b, 0].numpy(), axis=a)).mean()
        for b in range(shape[0])
        for a in range(sd)
    ]
    loss = SobelLoss()
    assert float(loss(p, t)) == pytest.approx(np.mean(diffs), rel=1e-12)
    assert float(loss(t, t)) == 0.0


def test_sobel_loss_ignores_a_constant_offset_and_has_a_finite_gradient():
    t = _rand((1, 1, 6, 6, 6), 3)
    assert float(SobelLoss()(t + 5.0, t)) == pytest.approx(0.0, abs=1e-12)
    p = _rand((1, 1, 6, 6, 6), 4).requires_grad_(True)
    SobelLoss()(p, t).backward()
    assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0
