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


def test_three_plane_sobel_equals_scipy_2d_sobel_in_every_slice():
    from spectdl.losses import ThreePlaneSobelLoss

    p, t = _rand((2, 1, 5, 6, 7), 5), _rand((2, 1, 5, 6, 7), 6)
    planes = {"axial": 2, "coronal": 1, "sagittal": 0}  # the spatial axis each plane holds fixed
    expected = {}
    for name, fixed in planes.items():
        terms = []
        for b in range(2):
            a, c = np.moveaxis(p[b, 0].numpy(), fixed, 0), np.moveaxis(t[b, 0].numpy(), fixed, 0)
            # each slice on its own: scipy's 2-D Sobel along both in-plane axes, never across slices
            terms += [np.abs(ndimage.sobel(a[k], axis=ax) - ndimage.sobel(c[k], axis=ax)).mean()
                      for k in range(a.shape[0]) for ax in (0, 1)]
        expected[name] = np.mean(terms)
    loss = ThreePlaneSobelLoss()
    total, parts = loss(p, t, return_components=True)
    for name, v in expected.items():
        assert float(parts[name]) == pytest.approx(v, rel=1e-12)
    assert float(total) == pytest.approx(np.mean(list(expected.values())), rel=1e-12)


def test_three_plane_sobel_has_the_2d_gain_of_8_on_a_ramp():
    """A unit ramp along x, against a flat target: |S²_x| = 8 inside the axial and coronal slices
    (4 on the two x borders, where the edge voxel repeats), 0 along y and z and in the sagittal
    slices. The 3-D SobelLoss of the same ramp has the gain 32."""
    from spectdl.losses import ThreePlaneSobelLoss

    nx = 9
    ramp = torch.arange(nx, dtype=torch.float64).reshape(1, 1, nx, 1, 1).expand(1, 1, nx, 6, 5).contiguous()
    flat = torch.zeros_like(ramp)
    mean_sx = (8.0 * (nx - 2) + 4.0 * 2) / nx
    total, parts = ThreePlaneSobelLoss()(ramp, flat, return_components=True)
    assert float(parts["axial"]) == pytest.approx(mean_sx / 2)  # mean over the two in-plane directions
    assert float(parts["coronal"]) == pytest.approx(mean_sx / 2)
    assert float(parts["sagittal"]) == 0.0
    assert float(total) == pytest.approx(mean_sx / 3)
    assert float(SobelLoss()(ramp, flat)) == pytest.approx(4 * mean_sx / 3)
