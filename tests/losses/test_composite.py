import pytest
import torch

from spectdl.errors import InputError
from spectdl.losses import CompositeLoss, DeepSupervision, L1Loss, L2Loss, SobelLoss


def _pair(shape=(2, 1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64), torch.rand(shape, generator=g, dtype=torch.float64)


def test_composite_is_the_weighted_sum_and_reports_its_parts():
    p, t = _pair()
    loss = CompositeLoss({"l1": (2.0, L1Loss()), "l2": (0.5, L2Loss()), "plain": (3.0, torch.nn.MSELoss())})
    l1 = (p - t).abs().mean()
    l2 = ((p - t) ** 2).mean()
    total, parts = loss(p, t, return_components=True)
    assert float(total) == pytest.approx(float(2.0 * l1 + 0.5 * l2 + 3.0 * l2), rel=1e-12)
    assert set(parts) == {"l1", "l2", "plain"}
    assert float(parts["l1"]) == pytest.approx(float(l1), rel=1e-12)
    assert loss.weights == {"l1": 2.0, "l2": 0.5, "plain": 3.0}
    assert not loss.last_components["l1"].requires_grad
    assert float(loss(t, t)) == 0.0


def test_composite_rejects_malformed_terms():
    with pytest.raises(InputError, match="terms"):
        CompositeLoss({})
    with pytest.raises(InputError, match="a.b"):
        CompositeLoss({"a.b": (1.0, L1Loss())})
    with pytest.raises(InputError, match="weight"):
        CompositeLoss({"l1": (float("nan"), L1Loss())})
    with pytest.raises(InputError, match="nn.Module"):
        CompositeLoss({"l1": (1.0, "l1")})


def test_deep_supervision_sums_weighted_losses_of_fused_and_side_outputs():
    g = torch.Generator().manual_seed(3)
    t = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64)
    outs = [torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    weights = (1.0, 0.5, 0.25)
    base = CompositeLoss({"l1": (1.0, L1Loss()), "sobel": (0.1, SobelLoss())})
    loss = DeepSupervision(base, weights=weights)
    expected = sum(w * float(base(o, t)) for w, o in zip(weights, outs))
    # Both calling forms: a flat list, and (fused, [sides]) as U²-Net's return_sides=True gives.
    assert float(loss(outs, t)) == pytest.approx(expected, rel=1e-12)
    total, parts = loss((outs[0], outs[1:]), t, return_components=True)
    assert float(total) == pytest.approx(expected, rel=1e-12)
    assert set(parts) == {"fused", "side1", "side2", "fused.l1", "fused.sobel"}
    assert float(loss([t, t, t], t)) == 0.0
    with pytest.raises(InputError, match="expected 3"):
        loss(outs[:2], t)
    with pytest.raises(InputError, match="side1"):
        loss([outs[0], outs[1][..., :4], outs[2]], t)


def test_deep_supervision_on_u2net_side_outputs_gives_gradients_to_every_side():
    from spectdl.models.u2net import U2NetSmall

    net = U2NetSmall(in_channels=1, out_channels=1, spatial_dims=2).double().eval()
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    fused, sides = net(x, return_sides=True)
    sides = [s.detach().requires_grad_(True) for s in sides]
    loss = DeepSupervision(L1Loss(), weights=(1, 1, 1, 1, 1, 1, 1))
    value = loss((fused, sides), x)
    value.backward()
    assert torch.isfinite(value)
    for s in sides:
        assert bool(torch.isfinite(s.grad).all()) and float(s.grad.abs().sum()) > 0
