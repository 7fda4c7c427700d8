import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.losses import IMBVLoss


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 1, 6, 6, 5)
    t = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
    p = t * (1 + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)).abs()
    myo = torch.zeros(shape, dtype=torch.bool)
    bp = torch.zeros(shape, dtype=torch.bool)
    myo[:, :, 1:5, 1:5, 1:4] = True
    bp[:, :, 2:4, 2:4, 1:4] = True
    myo &= ~bp  # a ring of myocardium around the blood pool
    return p, t, {"myocardium": myo, "blood_pool": bp}


def _imbv_numpy(x, masks):
    x = x.numpy()
    myo, bp = masks["myocardium"].numpy(), masks["blood_pool"].numpy()
    return np.array([x[b][myo[b]].mean() / x[b][bp[b]].mean() for b in range(x.shape[0])])


def test_imbv_loss_equals_the_mean_absolute_ratio_difference():
    p, t, masks = _case()
    expected = np.abs(_imbv_numpy(p, masks) - _imbv_numpy(t, masks)).mean()
    loss = IMBVLoss()
    assert float(loss(p, t, masks=masks)) == pytest.approx(expected, rel=1e-12)
    assert float(loss(t, t, masks=masks)) == 0.0
    # The ratio ignores a global scale: a prediction that is the target times 3 has no IMBV error.
    assert float(loss(3 * t, t, masks=masks)) == pytest.approx(0.0, abs=1e-12)


def test_imbv_gradient_is_finite_and_acts_only_inside_the_masks():
    p, t, masks = _case(seed=1)
    p.requires_grad_(True)
    IMBVLoss()(p, t, masks=masks).backward()
    inside = masks["myocardium"] | masks["blood_pool"]
    assert bool(torch.isfinite(p.grad).all())
    assert float(p.grad[inside].abs().sum()) > 0 and float(p.grad[~inside].abs().sum()) == 0.0


def test_imbv_loss_needs_its_masks():
    p, t, masks = _case()
    with pytest.raises(InputError, match="masks"):
        IMBVLoss()(p, t)
    with pytest.raises(InputError, match="blood_pool"):
        IMBVLoss()(p, t, masks={"myocardium": masks["myocardium"]})
    empty = dict(masks, blood_pool=torch.zeros_like(masks["blood_pool"]))
    with pytest.raises(InputError, match="empty"):
        IMBVLoss()(p, t, masks=empty)


def test_gradient_descent_on_the_imbv_loss_moves_imbv_towards_the_target():
    p, t, masks = _case(seed=2)
    target = _imbv_numpy(t, masks)
    x = p.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=0.5)
    errors = []
    for _ in range(60):
        loss = IMBVLoss()(x, t, masks=masks)
        errors.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        assert bool(torch.isfinite(x.grad).all())
        opt.step()
    final = np.abs(_imbv_numpy(x.detach(), masks) - target)
    assert errors[-1] < 0.1 * errors[0] and (final < np.abs(_imbv_numpy(p, masks) - target)).all()
