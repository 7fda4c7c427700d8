"""PSNR, SSIM and the error metrics compute in float64: huge values and float16 give scikit-image's numbers."""

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from spectdl.errors import InputError
from spectdl.metrics.functional import mae, psnr, rmse, ssim


def _pair(seed=0, n=32):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.0, 1.0, (n, n))
    target[8:20, 10:24] += 1.0
    pred = target + rng.normal(0.0, 0.05, (n, n))  # about 30 dB for data_range 2
    return pred, target


def _sk(pred64, target64, r):
    return (
        peak_signal_noise_ratio(target64, pred64, data_range=r),
        structural_similarity(target64, pred64, data_range=r, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False),
    )


@pytest.mark.parametrize("scale, dtype", [(1e10, torch.float32), (1e20, torch.float32), (1.0, torch.float16),
                                          (1e30, torch.float64)])
def test_psnr_and_ssim_equal_skimage_on_the_float64_version(scale, dtype):
    pred, target = _pair()
    p = torch.as_tensor(pred * scale).to(dtype)[None, None]
    t = torch.as_tensor(target * scale).to(dtype)[None, None]
    p64, t64 = p.double()[0, 0].numpy(), t.double()[0, 0].numpy()  # exactly what the metric sees
    r = float(t64.max() - t64.min())
    sk_psnr, sk_ssim = _sk(p64, t64, r)
    got_psnr = psnr(p, t, data_range=r)
    got_ssim = ssim(p, t, data_range=r)
    assert torch.isfinite(got_psnr) and torch.isfinite(got_ssim)
    assert got_psnr.dtype == got_ssim.dtype == torch.promote_types(dtype, torch.float32)
    assert float(got_psnr) == pytest.approx(sk_psnr, rel=1e-6)
    assert float(got_ssim) == pytest.approx(sk_ssim, rel=1e-6)


def test_scaled_images_keep_the_unscaled_psnr_and_ssim():
    pred, target = _pair(1)
    base = torch.as_tensor(pred)[None, None], torch.as_tensor(target)[None, None]
    r = float(target.max() - target.min())
    ref_psnr, ref_ssim = float(psnr(*base, data_range=r)), float(ssim(*base, data_range=r))
    assert 25 < ref_psnr < 35
    for scale in (1e10, 1e20):
        p, t = (x.float() * scale for x in base)
        rs = float(t.double().max() - t.double().min())
        assert float(psnr(p, t, data_range=rs)) == pytest.approx(ref_psnr, rel=1e-5)
        assert float(ssim(p, t, data_range=rs)) == pytest.approx(ref_ssim, rel=1e-5)


def test_float16_psnr_is_the_true_30_db_not_inf():
    pred, target = _pair(2)
    p, t = torch.as_tensor(pred).half()[None, None], torch.as_tensor(target).half()[None, None]
    got = float(psnr(p, t, data_range=2.0))
    want = peak_signal_noise_ratio(t.double()[0, 0].numpy(), p.double()[0, 0].numpy(), data_range=2.0)
    assert np.isfinite(got) and 25 < want < 35
    assert got == pytest.approx(want, rel=1e-6)


def test_rmse_and_mae_of_huge_float32_values_match_numpy():
    pred, target = _pair(3)
    p, t = (torch.as_tensor(x * 1e20).float()[None, None] for x in (pred, target))
    p64, t64 = p.double().numpy(), t.double().numpy()
    assert float(rmse(p, t)) == pytest.approx(np.sqrt(mean_squared_error(t64, p64)), rel=1e-6)
    assert float(mae(p, t)) == pytest.approx(np.abs(p64 - t64).mean(), rel=1e-6)


def test_ssim_stays_differentiable_through_the_float64_computation():
    pred, target = _pair(4)
    p = torch.as_tensor(pred).float()[None, None].requires_grad_(True)
    t = torch.as_tensor(target).float()[None, None]
    ssim(p, t, data_range=2.0).backward()
    assert p.grad is not None and p.grad.dtype == torch.float32 and bool(torch.isfinite(p.grad).all())
    assert float(p.grad.abs().sum()) > 0


@pytest.mark.parametrize("metric", [lambda p, t, m: psnr(p, t, data_range=1.0, mask=m),
                                    lambda p, t, m: ssim(p, t, data_range=1.0, mask=m),
                                    lambda p, t, m: rmse(p, t, mask=m)])
def test_a_nan_mask_is_rejected_with_the_count(metric):
    p = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    m = torch.ones(16, 16)
    m[0, :3] = float("nan")
    with pytest.raises(InputError, match=r"mask: contains 3 NaN or infinite value\(s\)"):
        metric(p, p * 0.9, m)
