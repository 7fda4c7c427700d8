"""The calling convention every loss shares (spectdl.losses._base), checked on every loss."""

import pytest
import torch
from torch import nn

from spectdl.errors import InputError
from spectdl.losses import (
    AdversarialLoss,
    DeepSupervision,
    IMBVLoss,
    IntensityBCELoss,
    L1Loss,
    L2Loss,
    LesionAttentionLoss,
    PerceptualLoss,
    SobelLoss,
    SSIMLoss,
    ThreePlaneSSIMLoss,
    build_loss,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        with torch.no_grad():
            for q in self.parameters():
                q.copy_(torch.randn(q.shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return {"f": torch.tanh(self.conv(x))}


SHAPE = (1, 1, 11, 11, 11)


def _context(dtype):
    lesion = torch.zeros(SHAPE, dtype=torch.bool)
    lesion[..., 3:6, 3:6, 3:6] = True
    bp = torch.zeros(SHAPE, dtype=torch.bool)
    bp[..., 4:7, 4:7, 4:7] = True
    myo = torch.zeros(SHAPE, dtype=torch.bool)
    myo[..., 2:9, 2:9, 3:8] = True
    g = torch.Generator().manual_seed(9)
    return {
        "lesion_mask": lesion,
        "masks": {"myocardium": myo & ~bp, "blood_pool": bp},
        "fake_logits": torch.randn(1, 1, 4, 4, generator=g, dtype=dtype, requires_grad=True),
        "real_logits": torch.randn(1, 1, 4, 4, generator=g, dtype=dtype),
    }


LOSSES = {
    "l1": L1Loss(),
    "l2": L2Loss(),
    "bce": IntensityBCELoss(),
    "ssim3d": SSIMLoss(),
    "three_plane": ThreePlaneSSIMLoss(),
    "sobel": SobelLoss(),
    "lesion": LesionAttentionLoss(),
    "imbv": IMBVLoss(),
    "perceptual": PerceptualLoss(Tiny()),
    "adversarial": AdversarialLoss("relativistic"),
    "cardiac": build_loss("cardiac"),
    "bone_spect": build_loss("bone_spect"),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_is_a_finite_scalar_of_the_input_dtype_with_a_finite_gradient(name, dtype):
    loss = LOSSES[name].to(dtype)
    g = torch.Generator().manual_seed(1)
    t = torch.rand(SHAPE, generator=g, dtype=dtype) + 0.1
    p = (t + 0.2 * torch.randn(SHAPE, generator=g, dtype=dtype)).clamp_min(0.01).requires_grad_(True)
    ctx = _context(dtype)
    total, parts = loss(p, t, return_components=True, **ctx)
    assert total.dim() == 0 and total.dtype == dtype and bool(torch.isfinite(total))
    assert float(total.detach()) > 0
    assert all(not v.requires_grad for v in loss.last_components.values())
    assert set(loss.last_components) == set(parts)
    total.backward()
    source = ctx["fake_logits"] if name == "adversarial" else p
    assert bool(torch.isfinite(source.grad).all()) and float(source.grad.abs().sum()) > 0


def test_deep_supervision_accepts_any_module_and_checks_its_input():
    loss = DeepSupervision(nn.L1Loss(), weights=(1.0, 2.0))
    a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    assert float(loss([a, b], b)) == pytest.approx(1.0)
    with pytest.raises(InputError, match="weights"):
        DeepSupervision(L1Loss(), weights=())
    with pytest.raises(InputError, match="pred"):
        loss("not a tensor", b)
