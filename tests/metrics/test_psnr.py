import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from spectdl.errors import InputError
from spectdl.metrics import PSNR
from spectdl.metrics.functional import psnr


def _batch(shape=(3, 1, 9, 8, 7), seed=0):
    rng = np.random.default_rng(seed)
    target = rng.random(shape) * 5.0
    pred = target + 0.3 * rng.standard_normal(shape)
    return torch.tensor(pred), torch.tensor(target)


def test_psnr_three_conventions_match_skimage():
    pred, target = _batch()
    p, t = pred.numpy(), target.numpy()
    ref_reference = [peak_signal_noise_ratio(t[i], p[i], data_range=t[i].max()) for i in range(3)]
    ref_prediction = [peak_signal_noise_ratio(t[i], p[i], data_range=p[i].max()) for i in range(3)]
    ref_explicit = [peak_signal_noise_ratio(t[i], p[i], data_range=6.0) for i in range(3)]
    np.testing.assert_allclose(psnr(pred, target, reduction="none").numpy(), ref_reference, rtol=1e-12)
    got = psnr(pred, target, peak="prediction", reduction="none").numpy()
    np.testing.assert_allclose(got, ref_prediction, rtol=1e-12)
    np.testing.assert_allclose(psnr(pred, target, data_range=6.0, reduction="none").numpy(), ref_explicit,
                               rtol=1e-12)
    assert float(psnr(pred, target)) == pytest.approx(np.mean(ref_reference), rel=1e-12)
    assert float(psnr(pred, target, reduction="sum")) == pytest.approx(np.sum(ref_reference), rel=1e-12)


def test_psnr_2d_with_mask_and_20log10_form():
    pred, target = _batch((2, 1, 12, 10), seed=1)
    mask = torch.zeros(12, 10, dtype=torch.bool)
    mask[2:9, 3:8] = True
    m = mask.numpy()
    for i in range(2):
        t, p = target[i, 0].numpy()[m], pred[i, 0].numpy()[m]
        rmse = np.sqrt(np.mean((t - p) ** 2))
        expected = 20 * np.log10(t.max() / rmse)
        assert float(psnr(pred, target, mask=mask, reduction="none")[i]) == pytest.approx(expected, rel=1e-12)


def test_psnr_class_equals_function_whatever_the_batching():
    pred, target = _batch((5, 1, 8, 8), seed=2)
    metric = PSNR(peak="prediction")
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    assert float(metric.compute()) == pytest.approx(float(psnr(pred, target, peak="prediction")), rel=1e-12)
    metric.reset()
    with pytest.raises(InputError, match="update"):
        metric.compute()


def test_psnr_identical_is_inf_and_bad_input():
    pred, target = _batch((1, 1, 8, 8))
    assert float(psnr(target, target)) == float("inf")
    with pytest.raises(InputError, match="shape"):
        psnr(pred, target[..., :7])
    with pytest.raises(InputError, match="peak"):
        psnr(pred, -target.abs())
    with pytest.raises(InputError, match="peak"):
        psnr(pred, target, peak="max")
    bad = pred.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        psnr(bad, target)
    with pytest.raises(InputError, match="empty"):
        psnr(pred, target, mask=torch.zeros(8, 8))
