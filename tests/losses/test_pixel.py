import numpy as np
import pytest
import torch
from scipy import special

from spectdl.errors import InputError
from spectdl.losses import IntensityBCELoss, L1Loss, L2Loss


def _pair(shape=(2, 1, 5, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64), torch.rand(shape, generator=g, dtype=torch.float64)


def test_l1_and_l2_match_numpy():
    p, t = _pair()
    assert float(L1Loss()(p, t)) == pytest.approx(np.abs(p.numpy() - t.numpy()).mean(), rel=1e-12)
    assert float(L2Loss()(p, t)) == pytest.approx(((p.numpy() - t.numpy()) ** 2).mean(), rel=1e-12)
    assert float(L1Loss()(t, t)) == 0.0 and float(L2Loss()(t, t)) == 0.0


def test_pixel_gradients_are_the_analytic_ones():
    p, t = _pair()
    p.requires_grad_(True)
    L2Loss()(p, t).backward()
    torch.testing.assert_close(p.grad, 2 * (p - t).detach() / p.numel())
    p.grad = None
    L1Loss()(p, t).backward()
    torch.testing.assert_close(p.grad, torch.sign(p - t).detach() / p.numel())


def test_bce_matches_the_hand_formula_and_its_minimum_is_the_binary_entropy():
    p, t = _pair()
    dr = 2.0
    loss = IntensityBCELoss(data_range=dr)
    q, pp = t.numpy() / dr, p.numpy() / dr
    expected = -(q * np.log(pp) + (1 - q) * np.log(1 - pp)).mean()
    assert float(loss(p, t)) == pytest.approx(expected, rel=1e-10)
    # At pred = target the loss is the mean binary entropy of q, and it is a minimum (zero gradient).
    x = t.clone().requires_grad_(True)
    value = loss(x, t)
    value.backward()
    assert float(value.detach()) == pytest.approx((special.entr(q) + special.entr(1 - q)).mean(), rel=1e-10)
    assert float(x.grad.abs().max()) < 1e-12
    assert float(loss(p, t)) > float(value.detach())


def test_bce_default_range_is_the_target_span():
    p, t = _pair()
    span = float(t.max() - t.min())
    assert float(IntensityBCELoss()(p, t)) == pytest.approx(float(IntensityBCELoss(data_range=span)(p, t)), rel=1e-12)


def test_bad_inputs_raise_input_error():
    p, t = _pair()
    with pytest.raises(InputError, match="shapes"):
        L1Loss()(p, t[:, :, :4])
    with pytest.raises(InputError, match="floating"):
        L2Loss()(p, t.long())
    with pytest.raises(InputError, match="data_range"):
        IntensityBCELoss(data_range=-1.0)
