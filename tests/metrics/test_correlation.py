import numpy as np
import pytest
import torch
from scipy import stats

from spectdl.errors import InputError
from spectdl.metrics import PearsonCorrCoef
from spectdl.metrics.functional import pearson


@pytest.mark.parametrize("n,noise", [(5, 1.0), (30, 3.0), (200, 0.2), (12, 50.0)])
def test_pearson_vectors_match_scipy(n, noise):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    y = 2.0 * x + noise * rng.standard_normal(n)
    ref = stats.pearsonr(x, y)
    r, p = pearson(torch.tensor(x), torch.tensor(y))
    assert float(r) == pytest.approx(ref.statistic, abs=1e-12)
    assert float(p) == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_pearson_images_per_item_with_mask_and_float32():
    rng = np.random.default_rng(1)
    target = rng.random((2, 1, 6, 7, 5))
    pred = target + 0.3 * rng.standard_normal(target.shape)
    mask = rng.random((6, 7, 5)) > 0.5
    r, p = pearson(torch.tensor(pred), torch.tensor(target), mask=torch.tensor(mask))
    for i in range(2):
        ref = stats.pearsonr(pred[i, 0][mask], target[i, 0][mask])
        assert float(r[i]) == pytest.approx(ref.statistic, abs=1e-12)
        assert float(p[i]) == pytest.approx(ref.pvalue, rel=1e-9)
    r32, _ = pearson(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    ref0 = stats.pearsonr(pred[0].ravel(), target[0].ravel()).statistic
    assert float(r32[0]) == pytest.approx(ref0, abs=1e-5)


def test_pearson_class_pools_batches_like_concatenation():
    rng = np.random.default_rng(2)
    # shifted batches: pooling raw sums would lose precision, pairwise merging does not
    xs = [1e6 + rng.standard_normal(n) for n in (7, 20, 3)]
    ys = [x + 0.5 * rng.standard_normal(x.shape) for x in xs]
    metric = PearsonCorrCoef()
    for x, y in zip(xs, ys):
        metric.update(torch.tensor(x), torch.tensor(y))
    ref = stats.pearsonr(np.concatenate(xs), np.concatenate(ys))
    r, p = metric.compute()
    assert float(r) == pytest.approx(ref.statistic, abs=1e-9)
    assert float(p) == pytest.approx(ref.pvalue, rel=1e-6)
    # images: every voxel of every image is one pair
    img_t = torch.tensor(rng.random((3, 1, 4, 4)))
    img_p = img_t + 0.1 * torch.tensor(rng.standard_normal((3, 1, 4, 4)))
    metric.reset()
    metric.update(img_p[:1], img_t[:1])
    metric.update(img_p[1:], img_t[1:])
    ref = stats.pearsonr(img_p.numpy().ravel(), img_t.numpy().ravel())
    assert float(metric.compute().r) == pytest.approx(ref.statistic, abs=1e-12)


def test_pearson_edge_cases_and_bad_input():
    r, p = pearson(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 5.0]))
    assert float(r) == pytest.approx(1.0) and float(p) == 1.0  # scipy also returns p = 1 for n = 2
    r, p = pearson(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([3.0, 1.0, -1.0, -3.0]))
    assert float(r) == pytest.approx(-1.0) and float(p) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="constant"):
        pearson(torch.ones(5), torch.arange(5.0))
    with pytest.raises(InputError, match="at least 2"):
        pearson(torch.ones(1), torch.ones(1))
    with pytest.raises(InputError, match="shape"):
        pearson(torch.ones(5), torch.ones(4))
    with pytest.raises(InputError, match="NaN"):
        pearson(torch.tensor([1.0, float("nan"), 2.0]), torch.arange(3.0))
    with pytest.raises(InputError, match="update"):
        PearsonCorrCoef().compute()
