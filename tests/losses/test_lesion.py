import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from spectdl.errors import InputError
from spectdl.losses import L2Loss, LesionAttentionLoss


def _sk(a, b, dr):
    return structural_similarity(a, b, data_range=dr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _case(seed=0, shape=(2, 1, 11, 12, 11)):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(shape, generator=g, dtype=torch.float64) * 4.0
    p = t + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[0, 0, 3:6, 4:8, 2:5] = True
    mask[1, 0, 6:9, 2:4, 5:9] = True
    return p, t, mask


def test_lesion_loss_equals_the_hand_computed_expression():
    p, t, m = _case()
    dr = float(t.max() - t.min())  # the documented default: span of the whole target batch
    alpha, beta = 0.5, 100.0

    def base(a, b):
        l1 = np.abs(a - b).mean()
        ssim = np.mean([_sk(a[i, 0], b[i, 0], dr) for i in range(a.shape[0])])
        return l1 + alpha * (1.0 - ssim)

    pn, tn, mn = p.numpy(), t.numpy(), m.numpy().astype(float)
    expected = base(pn, tn) + beta * base(pn * mn, tn * mn)
    loss = LesionAttentionLoss()
    assert (loss.alpha, loss.beta) == (0.5, 100.0)
    total, parts = loss(p, t, lesion_mask=m, return_components=True)
    assert float(total) == pytest.approx(expected, rel=1e-10)
    assert float(parts["lesion"]) == pytest.approx(base(pn * mn, tn * mn), rel=1e-10)
    assert float(parts["base.l1"]) == pytest.approx(np.abs(pn - tn).mean(), rel=1e-12)
    assert float(loss(t, t, lesion_mask=m)) == pytest.approx(0.0, abs=1e-12)


def test_a_mask_without_channel_axis_and_an_empty_mask_work():
    p, t, m = _case(seed=1)
    loss = LesionAttentionLoss(alpha=0.2, beta=7.0)
    assert float(loss(p, t, lesion_mask=m[:, 0])) == pytest.approx(float(loss(p, t, lesion_mask=m)), rel=1e-12)
    empty = torch.zeros_like(m)
    total, parts = loss(p, t, lesion_mask=empty, return_components=True)
    assert float(parts["lesion"]) == pytest.approx(0.0, abs=1e-12)
    assert float(total) == pytest.approx(float(parts["base"]), rel=1e-12)


def test_lesion_loss_with_a_custom_base_and_its_gradient():
    p, t, m = _case(seed=2)
    p.requires_grad_(True)
    loss = LesionAttentionLoss(beta=10.0, base=L2Loss())
    value = loss(p, t, lesion_mask=m)
    mf = m.double()
    expected = ((p - t) ** 2).mean() + 10.0 * ((p * mf - t * mf) ** 2).mean()
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    value.backward()
    analytic = 2 * (p - t).detach() * (1 + 10.0 * mf) / p.numel()
    torch.testing.assert_close(p.grad, analytic)


def test_lesion_loss_needs_a_mask_of_the_right_shape():
    p, t, m = _case()
    with pytest.raises(InputError, match="lesion_mask"):
        LesionAttentionLoss()(p, t)
    with pytest.raises(InputError, match="lesion_mask"):
        LesionAttentionLoss()(p, t, lesion_mask=m[..., :4])
    with pytest.raises(InputError, match="beta"):
        LesionAttentionLoss(beta=-1.0)
