"""Loss masks (``mask_key``): every term sees only the voxels of the mask."""

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.losses import (
    IMBVLoss,
    L1Loss,
    SobelLoss,
    SSIMLoss,
    ThreePlaneSobelLoss,
    ThreePlaneSSIMLoss,
    build_loss,
)

SHAPE = (2, 1, 16, 16, 14)


def _cylinder(radius: float = 5.5) -> torch.Tensor:
    """``[2, 1, 16, 16, 14]`` bool: a cylinder about the z axis, shifted in the second volume so the
    batch items differ; coronal and sagittal slices near the edges miss it entirely."""
    c = torch.arange(16, dtype=torch.float64) - 7.5
    r0 = torch.hypot(c[:, None], c[None, :]) <= radius
    r1 = torch.hypot(c[:, None] - 1.0, c[None, :] + 1.0) <= radius
    return torch.stack([r0, r1])[:, None, :, :, None].expand(SHAPE).contiguous()


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    m = _cylinder()
    t = (torch.rand(SHAPE, generator=g, dtype=torch.float64) + 0.5) * m
    p = (t + 0.2 * torch.randn(SHAPE, generator=g, dtype=torch.float64)).clamp_min(0.01)
    # organs partly outside the mask, so that the mask matters for IMBV too
    myo = torch.zeros(SHAPE, dtype=torch.bool)
    myo[:, :, 3:13, 3:13, 4:10] = True
    bp = torch.zeros(SHAPE, dtype=torch.bool)
    bp[:, :, 6:10, 6:10, 4:10] = True
    return p, t, m, {"myocardium": myo & ~bp, "blood_pool": bp}


LOSSES = {
    "l1": lambda: L1Loss(mask_key="fov"),
    "ssim3d": lambda: SSIMLoss(mask_key="fov", win_size=7),
    "three_plane_ssim": lambda: ThreePlaneSSIMLoss(mask_key="fov", win_size=7),
    "sobel3d": lambda: SobelLoss(mask_key="fov"),
    "three_plane_sobel": lambda: ThreePlaneSobelLoss(mask_key="fov"),
    "imbv": lambda: IMBVLoss(mask_key="fov"),
    "cardiac": lambda: build_loss("cardiac", ssim_mode="three_plane", sobel_mode="three_plane", mask_key="fov"),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_masked_loss_ignores_the_prediction_outside_the_mask(name):
    p, t, m, organs = _case()
    loss = LOSSES[name]()
    ref = float(loss(p, t, fov=m, masks=organs))
    g = torch.Generator().manual_seed(7)
    wild = torch.where(m, p, 50.0 * torch.rand(SHAPE, generator=g, dtype=torch.float64))
    assert float(loss(wild, t, fov=m, masks=organs)) == pytest.approx(ref, rel=1e-12, abs=1e-15)
    # one voxel of myocardium inside the mask does count
    inside = p.clone()
    inside[0, 0, 7, 4, 6] += 1.0
    assert bool(m[0, 0, 7, 4, 6] & organs["myocardium"][0, 0, 7, 4, 6])
    assert float(loss(inside, t, fov=m, masks=organs)) != pytest.approx(ref, rel=1e-9)
    # and the gradient is zero outside the mask, non-zero inside
    q = p.clone().requires_grad_(True)
    loss(q, t, fov=m, masks=organs).backward()
    assert float(q.grad[~m].abs().max()) == 0.0 and float(q.grad[m].abs().max()) > 0


@pytest.mark.parametrize("name", ["l1", "ssim3d", "three_plane_ssim", "sobel3d", "three_plane_sobel", "imbv"])
def test_a_mask_of_ones_is_the_unmasked_loss(name):
    p, t, _, organs = _case(1)
    masked = LOSSES[name]()
    plain = type(masked)(**({"win_size": 7} if "ssim" in name else {}))
    ones = torch.ones(SHAPE, dtype=torch.bool)
    assert float(masked(p, t, fov=ones, masks=organs)) == pytest.approx(float(plain(p, t, masks=organs)), rel=1e-10)


def test_masked_l1_is_the_mean_over_the_masks_voxels():
    p, t, m, _ = _case(2)
    expected = np.abs(p.numpy() - t.numpy())[m.numpy()].mean()
    assert float(L1Loss(mask_key="fov")(p, t, fov=m)) == pytest.approx(expected, rel=1e-12)


def test_a_configured_mask_key_must_be_in_the_context():
    p, t, _, organs = _case()
    with pytest.raises(InputError, match="fov"):
        ThreePlaneSobelLoss(mask_key="fov")(p, t, masks=organs)
    with pytest.raises(InputError, match="fov"):
        build_loss("cardiac", mask_key="fov")(p, t, masks=organs)


def test_the_cardiac_builder_keeps_its_defaults_and_gives_the_three_plane_terms():
    plain = build_loss("cardiac")
    assert type(plain.terms["sobel"]) is SobelLoss and all(t.mask_key is None for t in plain.terms.values())
    loss = build_loss("cardiac", ssim_mode="three_plane", sobel_mode="three_plane", mask_key="fov_mask")
    assert type(loss.terms["ssim"]) is ThreePlaneSSIMLoss and type(loss.terms["sobel"]) is ThreePlaneSobelLoss
    assert {t.mask_key for t in loss.terms.values()} == {"fov_mask"}
    from spectdl.errors import ConfigError

    with pytest.raises(ConfigError, match="sobel_mode"):
        build_loss("cardiac", sobel_mode="planes")
    with pytest.raises(ConfigError, match="mask_key"):
        build_loss("cardiac", mask_key=3)
