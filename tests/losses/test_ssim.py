import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from spectdl.errors import InputError
from spectdl.losses import SSIMLoss, ThreePlaneSSIMLoss, batch_data_range


def _sk(a: np.ndarray, b: np.ndarray, dr: float) -> float:
    # The settings of spectdl.metrics.functional.ssim: Gaussian window σ = 1.5, population covariance.
    return structural_similarity(a, b, data_range=dr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(shape, generator=g, dtype=torch.float64) * 3.0
    p = t + 0.4 * torch.randn(shape, generator=g, dtype=torch.float64)
    return p, t


@pytest.mark.parametrize("shape", [(2, 1, 13, 14), (2, 1, 11, 12, 13)])
def test_ssim_loss_is_one_minus_skimage_ssim(shape):
    p, t = _pair(shape)
    dr = 3.0
    expected = np.mean([1.0 - _sk(p[b, 0].numpy(), t[b, 0].numpy(), dr) for b in range(shape[0])])
    assert float(SSIMLoss(data_range=dr)(p, t)) == pytest.approx(expected, abs=1e-10)
    assert float(SSIMLoss(data_range=dr)(t, t)) == pytest.approx(0.0, abs=1e-12)


def test_default_data_range_is_the_span_of_the_target_batch():
    p, t = _pair((2, 1, 12, 12))
    span = float(t.max() - t.min())
    assert float(batch_data_range(t)) == span
    expected = np.mean([1.0 - _sk(p[b, 0].numpy(), t[b, 0].numpy(), span) for b in range(2)])
    assert float(SSIMLoss()(p, t)) == pytest.approx(expected, abs=1e-10)
    # A context data_range overrides the module's for one call.
    assert float(SSIMLoss(data_range=1.0)(p, t, data_range=span)) == pytest.approx(expected, abs=1e-10)
    # A constant target would give SSIM 0/0; the range falls back to 1.
    assert float(batch_data_range(torch.zeros(1, 1, 4, 4))) == 1.0


def test_three_plane_ssim_is_the_mean_over_axial_coronal_and_sagittal_slices():
    p, t = _pair((1, 1, 11, 12, 13), seed=1)
    dr = 3.0
    a, b = p[0, 0].numpy(), t[0, 0].numpy()
    axial = np.mean([_sk(a[:, :, k], b[:, :, k], dr) for k in range(a.shape[2])])
    coronal = np.mean([_sk(a[:, k, :], b[:, k, :], dr) for k in range(a.shape[1])])
    sagittal = np.mean([_sk(a[k], b[k], dr) for k in range(a.shape[0])])
    loss = ThreePlaneSSIMLoss(data_range=dr)
    total, parts = loss(p, t, return_components=True)
    assert float(total) == pytest.approx(1.0 - (axial + coronal + sagittal) / 3.0, abs=1e-10)
    assert float(parts["axial"]) == pytest.approx(1.0 - axial, abs=1e-10)
    assert float(parts["coronal"]) == pytest.approx(1.0 - coronal, abs=1e-10)
    assert float(parts["sagittal"]) == pytest.approx(1.0 - sagittal, abs=1e-10)
    assert float(loss(t, t)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("loss", [SSIMLoss(), ThreePlaneSSIMLoss()])
def test_ssim_gradients_are_finite_and_non_zero(loss):
    p, t = _pair((1, 1, 11, 11, 11), seed=2)
    p.requires_grad_(True)
    loss(p, t).backward()
    assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0
    # At the minimum (pred = target) the gradient vanishes.
    x = t.clone().requires_grad_(True)
    loss(x, t).backward()
    assert float(x.grad.abs().max()) < 1e-10


def test_ssim_loss_rejects_wrong_inputs():
    p, t = _pair((1, 1, 11, 11, 11))
    with pytest.raises(InputError, match="spatial_dims"):
        SSIMLoss(spatial_dims=2)(p, t)
    with pytest.raises(InputError):
        ThreePlaneSSIMLoss()(p[..., 0], t[..., 0])
    with pytest.raises(InputError, match="data_range"):
        SSIMLoss(data_range=0.0)
