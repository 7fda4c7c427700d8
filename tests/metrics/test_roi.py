import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.metrics.functional import imbv, max_lesion_count, max_lesion_count_error, roi_stats, suv


def test_roi_stats_match_numpy():
    rng = np.random.default_rng(0)
    image = rng.random((2, 1, 5, 6, 4)) * 10
    mask = rng.random((5, 6, 4)) > 0.6
    s = roi_stats(torch.tensor(image), torch.tensor(mask))
    for i in range(2):
        v = image[i, 0][mask]
        assert float(s.mean[i]) == pytest.approx(v.mean(), rel=1e-12)
        assert float(s.max[i]) == pytest.approx(v.max())
        assert float(s.sd[i]) == pytest.approx(v.std(ddof=1), rel=1e-12)
        assert int(s.n_voxels[i]) == mask.sum()
    s0 = roi_stats(torch.tensor(image), torch.tensor(mask), ddof=0)
    assert float(s0.sd[1]) == pytest.approx(image[1, 0][mask].std(), rel=1e-12)
    with pytest.raises(InputError, match="empty"):
        roi_stats(torch.tensor(image), torch.zeros(5, 6, 4))


def test_suv_definition_and_decay():
    # 370 MBq in a 74 kg patient: a uniform distribution is 5000 Bq/ml and must read SUV 1 g/ml
    assert suv(5000.0, 370e6, 74.0) == pytest.approx(1.0)
    img = torch.tensor([[[[10000.0, 2500.0]]]])
    np.testing.assert_allclose(suv(img, 370e6, 74.0).numpy().ravel(), [2.0, 0.5])
    # one half-life after injection only half the dose is left: SUV doubles
    assert suv(5000.0, 370e6, 74.0, elapsed_s=21636.0, half_life_s=21636.0) == pytest.approx(2.0)
    with pytest.raises(InputError, match="injected_dose_bq"):
        suv(1.0, 0.0, 70.0)
    with pytest.raises(InputError, match="weight_kg"):
        suv(1.0, 1e8, -1.0)
    with pytest.raises(InputError, match="both"):
        suv(1.0, 1e8, 70.0, elapsed_s=10.0)


def test_max_lesion_count_and_relative_error():
    target = torch.zeros(2, 1, 8, 8)
    pred = torch.zeros(2, 1, 8, 8)
    lesion = torch.zeros(8, 8, dtype=torch.bool)
    lesion[2:5, 2:5] = True
    target[0, 0, 3, 3], target[1, 0, 2, 4] = 200.0, 50.0
    pred[0, 0, 4, 2], pred[1, 0, 3, 3] = 180.0, 60.0
    pred[0, 0, 7, 7] = 999.0  # outside the lesion: ignored
    np.testing.assert_allclose(max_lesion_count(pred, lesion).numpy(), [180.0, 60.0])
    np.testing.assert_allclose(max_lesion_count_error(pred, target, lesion).numpy(), [-0.1, 0.2], rtol=1e-6)
    assert float(max_lesion_count_error(pred, target, lesion, reduction="mean")) == pytest.approx(0.05)
    with pytest.raises(InputError, match="maximum lesion count is 0"):
        max_lesion_count_error(pred, torch.zeros_like(target), lesion)
    with pytest.raises(InputError, match="lesion_mask"):
        max_lesion_count(pred, torch.zeros(8, 8))


def test_imbv_ratio_and_gradient():
    image = torch.full((1, 1, 6, 6, 4), 2.0, dtype=torch.float64)
    myo = torch.zeros(6, 6, 4, dtype=torch.bool)
    pool = torch.zeros(6, 6, 4, dtype=torch.bool)
    myo[0:2] = True
    pool[3:5] = True
    image[..., 0:2, :, :] = 6.0
    assert float(imbv(image, myo, pool)) == pytest.approx(3.0)
    x = image.clone().requires_grad_(True)
    imbv(x, myo, pool).sum().backward()
    # d(mean_m / mean_b)/dx = 1/(n_m mean_b) in the myocardium, -mean_m/(n_b mean_b^2) in the pool
    n = float(myo.sum())
    assert float(x.grad[0, 0, 0, 0, 0]) == pytest.approx(1 / (n * 2.0))
    assert float(x.grad[0, 0, 3, 0, 0]) == pytest.approx(-6.0 / (n * 4.0))
    assert float(x.grad[0, 0, 2, 0, 0]) == 0.0
    with pytest.raises(InputError, match="denominator"):
        imbv(image * myo.to(torch.float64), myo, pool)
    with pytest.raises(InputError, match="myocardium_mask"):
        imbv(image, torch.zeros_like(myo), pool)
