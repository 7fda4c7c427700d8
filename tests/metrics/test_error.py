import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, normalized_root_mse

from spectdl.errors import InputError
from spectdl.metrics import MAE, NRMSE, RMSE, UptakeMAE
from spectdl.metrics.functional import mae, nrmse, rmse, uptake_mae


def _batch(shape=(3, 1, 7, 6, 5), seed=0):
    rng = np.random.default_rng(seed)
    target = rng.random(shape) * 4.0 + 0.5
    pred = target + 0.2 * rng.standard_normal(shape)
    return torch.tensor(pred), torch.tensor(target)


@pytest.mark.parametrize("normalization", ["euclidean", "min-max", "mean"])
def test_nrmse_matches_skimage(normalization):
    pred, target = _batch()
    ref = [normalized_root_mse(target[i].numpy(), pred[i].numpy(), normalization=normalization)
           for i in range(3)]
    np.testing.assert_allclose(nrmse(pred, target, normalization, reduction="none").numpy(), ref, rtol=1e-12)
    metric = NRMSE(normalization)
    for i in range(3):
        metric.update(pred[i:i + 1], target[i:i + 1])
    assert float(metric.compute()) == pytest.approx(np.mean(ref), rel=1e-12)


def test_rmse_mae_match_numpy_and_skimage_2d():
    pred, target = _batch((2, 1, 9, 9), seed=3)
    ref_rmse = [np.sqrt(mean_squared_error(target[i].numpy(), pred[i].numpy())) for i in range(2)]
    ref_mae = [np.abs(target[i].numpy() - pred[i].numpy()).mean() for i in range(2)]
    np.testing.assert_allclose(rmse(pred, target, reduction="none").numpy(), ref_rmse, rtol=1e-12)
    np.testing.assert_allclose(mae(pred, target, reduction="none").numpy(), ref_mae, rtol=1e-12)
    r, m = RMSE(), MAE()
    r.update(pred, target)
    m.update(pred, target)
    assert float(r.compute()) == pytest.approx(np.mean(ref_rmse), rel=1e-12)
    assert float(m.compute()) == pytest.approx(np.mean(ref_mae), rel=1e-12)


def test_masked_errors_use_only_the_roi():
    pred, target = _batch((1, 1, 10, 10), seed=4)
    mask = torch.zeros(1, 1, 10, 10)
    mask[..., 2:5, 4:9] = 1
    sel = mask.bool().numpy()
    d = (pred - target).numpy()[sel]
    assert float(rmse(pred, target, mask)) == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-12)
    assert float(mae(pred, target, mask)) == pytest.approx(np.abs(d).mean(), rel=1e-12)


def test_uptake_mae_spectnet_eq3():
    target = torch.zeros(2, 1, 6, 6, dtype=torch.float64)
    target[0, 0, 1:3, 1:4] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    target[1, 0, 4, 4] = 2.0
    pred = target + 0.5
    pred[0, 0, 1, 1] = 3.0  # error 2 on one uptake voxel
    # item 0: six uptake voxels with errors (2, .5, .5, .5, .5, .5); item 1: one voxel, error .5;
    # the 0.5 offset outside the uptake region is ignored.
    np.testing.assert_allclose(uptake_mae(pred, target, reduction="none").numpy(), [4.5 / 6, 0.5])
    metric = UptakeMAE()
    metric.update(pred, target)
    assert float(metric.compute()) == pytest.approx((4.5 / 6 + 0.5) / 2)
    mask = torch.zeros(6, 6)
    mask[0, 0] = 1
    assert float(uptake_mae(pred, target, mask=mask)) == pytest.approx(0.5)
    with pytest.raises(InputError, match="uptake region is empty"):
        uptake_mae(pred, torch.zeros_like(target))


def test_error_bad_input():
    pred, target = _batch((1, 1, 6, 6))
    with pytest.raises(InputError, match="differs"):
        rmse(pred, target[:, :, :5])
    with pytest.raises(InputError, match="normalisation is 0"):
        nrmse(pred, torch.ones_like(target), "min-max")
    with pytest.raises(InputError, match="normalization"):
        nrmse(pred, target, "max")
    with pytest.raises(InputError, match="reduction"):
        mae(pred, target, reduction="median")
    with pytest.raises(InputError, match="4-D or 5-D"):
        mae(pred[0, 0], target[0, 0])
    bad = target.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        mae(pred, bad)
