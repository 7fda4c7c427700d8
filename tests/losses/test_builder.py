import pytest
import torch
from torch import nn

from spectdl.errors import ConfigError
from spectdl.losses import (
    STUDY_DEFAULTS,
    AdversarialLoss,
    CompositeLoss,
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
        self.conv = nn.Conv2d(3, 2, 3).double()
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return {"f": self.conv(x)}


def _volume_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (1, 1, 11, 11, 11)
    t = torch.rand(shape, generator=g, dtype=torch.float64) + 0.2
    p = t + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    myo = torch.zeros(shape, dtype=torch.bool)
    myo[..., 2:9, 2:9, 3:8] = True
    bp = torch.zeros(shape, dtype=torch.bool)
    bp[..., 4:7, 4:7, 4:7] = True
    return p, t, {"myocardium": myo & ~bp, "blood_pool": bp}


def test_study_defaults_are_the_published_weights():
    bone = build_loss("bone_spect")
    lesion = bone.terms["lesion_attention"]
    assert isinstance(lesion, LesionAttentionLoss) and (lesion.alpha, lesion.beta) == (0.5, 100.0)
    assert lesion.base.weights == {"l1": 1.0, "ssim": 0.5}

    mpi = build_loss("myocardial_perfusion")
    assert mpi.weights == {"l2": 100.0, "adversarial": 1.0}
    assert isinstance(mpi.terms["l2"], L2Loss) and mpi.terms["adversarial"].mode == "vanilla"

    planar = build_loss("planar", feature_extractor=Tiny())
    assert planar.weights == {"perceptual": 1.0, "l1": 0.005, "bce": 0.01, "gan": 0.001}
    assert isinstance(planar.terms["perceptual"], PerceptualLoss)
    assert isinstance(planar.terms["bce"], IntensityBCELoss) and isinstance(planar.terms["gan"], AdversarialLoss)

    cardiac = build_loss("cardiac")
    assert cardiac.weights == {"mae": 1.0, "ssim": 0.8, "sobel": 0.1, "imbv": 0.1}
    kinds = [type(m) for m in cardiac.terms.values()]
    assert kinds == [L1Loss, SSIMLoss, SobelLoss, IMBVLoss]
    assert STUDY_DEFAULTS["cardiac"]["ssim"] == 0.8 and STUDY_DEFAULTS["planar"]["l1"] == 0.005


def test_cardiac_composite_equals_the_weighted_sum_of_its_parts():
    p, t, masks = _volume_case()
    loss = build_loss("cardiac")
    total, parts = loss(p, t, masks=masks, return_components=True)
    expected = {
        "mae": L1Loss()(p, t),
        "ssim": SSIMLoss()(p, t),
        "sobel": SobelLoss()(p, t),
        "imbv": IMBVLoss()(p, t, masks=masks),
    }
    weights = {"mae": 1.0, "ssim": 0.8, "sobel": 0.1, "imbv": 0.1}
    for name, value in expected.items():
        assert float(parts[name]) == pytest.approx(float(value), rel=1e-12)
        assert float(loss.last_components[name]) == pytest.approx(float(value), rel=1e-12)
    assert float(total) == pytest.approx(sum(weights[k] * float(v) for k, v in expected.items()), rel=1e-12)
    assert float(loss(t, t, masks=masks)) == pytest.approx(0.0, abs=1e-12)


def test_gan_composites_equal_the_weighted_sum_of_their_parts():
    g = torch.Generator().manual_seed(1)
    p, t = torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64), torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64)
    fake, real = torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64), torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64)
    ctx = {"fake_logits": fake, "real_logits": real}

    mpi = build_loss({"study": "myocardial_perfusion"})
    expected = 100.0 * float(L2Loss()(p, t)) + float(AdversarialLoss("vanilla").generator_loss(fake))
    assert float(mpi(p, t, **ctx)) == pytest.approx(expected, rel=1e-12)

    net = Tiny()
    planar = build_loss("planar", feature_extractor=net)
    expected = (
        float(PerceptualLoss(net)(p, t))
        + 0.005 * float(L1Loss()(p, t))
        + 0.01 * float(IntensityBCELoss()(p, t))
        + 0.001 * float(AdversarialLoss("relativistic").generator_loss(fake, real))
    )
    assert float(planar(p, t, **ctx)) == pytest.approx(expected, rel=1e-12)


def test_bone_spect_with_deep_supervision_and_overrides():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64)
    outs = [t + 0.1 * torch.randn(1, 1, 12, 12, generator=g, dtype=torch.float64) for _ in range(3)]
    mask = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    mask[..., 4:8, 5:9] = True
    loss = build_loss("bone_spect", beta=10.0, deep_supervision=(1.0, 0.5, 0.5))
    assert isinstance(loss, DeepSupervision) and loss.weights == (1.0, 0.5, 0.5)
    single = LesionAttentionLoss(alpha=0.5, beta=10.0)
    expected = sum(w * float(single(o, t, lesion_mask=mask)) for w, o in zip((1.0, 0.5, 0.5), outs))
    assert float(loss(outs, t, lesion_mask=mask)) == pytest.approx(expected, rel=1e-12)


def test_free_terms_config():
    loss = build_loss({"terms": {"l1": 1.0, "edges": {"type": "sobel", "weight": 0.2}, "ssim": {"weight": 0.5, "spatial_dims": 2}}})
    assert isinstance(loss, CompositeLoss) and loss.weights == {"l1": 1.0, "edges": 0.2, "ssim": 0.5}
    assert loss.terms["ssim"].spatial_dims == 2
    three = build_loss({"terms": {"tp": {"type": "three_plane_ssim", "weight": 1.0, "data_range": 2.0}}})
    assert isinstance(three.terms["tp"], ThreePlaneSSIMLoss)


@pytest.mark.parametrize(
    "args, kwargs, key",
    [
        (("cardiac",), {"sobol": 0.1}, "sobol"),
        (({"study": "bone_spect", "gamma": 1.0},), {}, "gamma"),
        (("no_such_study",), {}, "no_such_study"),
        (("myocardial_perfusion",), {"gan_mode": "wgan"}, "gan_mode"),
        (("cardiac",), {"ssim": "high"}, "ssim"),
        (({"terms": {"l1": {"weight": 1.0, "foo": 2}}},), {}, "foo"),
        (({"terms": {"l1": 1.0}, "extra": 1},), {}, "extra"),
        (({"terms": {"nope": 1.0}},), {}, "nope"),
        (({"study": "cardiac", "terms": {"l1": 1.0}},), {}, "terms"),
        (("planar",), {}, "weights_path"),
    ],
)
def test_bad_configs_raise_config_error_naming_the_key(args, kwargs, key):
    with pytest.raises(ConfigError, match=key):
        build_loss(*args, **kwargs)


@pytest.mark.parametrize("config, key", [
    (dict(study="cardiac", ssim=-0.5), "ssim"),
    (dict(study="cardiac", mae=float("nan")), "mae"),
    (dict(study="myocardial_perfusion", adversarial=float("inf")), "adversarial"),
    (dict(study="planar", l1=-0.005), "l1"),
    (dict(study="bone_spect", beta=-100.0), "beta"),
    (dict(study="bone_spect", alpha=-0.5), "alpha"),
    ({"terms": {"l1": -1.0}}, "terms.l1.weight"),
    ({"terms": {"ssim": {"weight": float("nan"), "spatial_dims": 2}}}, "terms.ssim.weight"),
    ({"terms": {"l1": 1.0}, "deep_supervision": [1.0, -0.5]}, r"deep_supervision\[1\]"),
    (dict(study="cardiac", deep_supervision=[1.0, float("inf")]), r"deep_supervision\[1\]"),
])
def test_negative_or_non_finite_weights_raise_config_error_naming_the_key(config, key):
    with pytest.raises(ConfigError, match=rf"^{key}: expected a weight that is finite and >= 0"):
        build_loss(config)


def test_zero_weights_are_accepted_and_kept():
    loss = build_loss({"terms": {"l1": 0.0, "l2": 2.0}, "deep_supervision": [1.0, 0.0]})
    inner = loss.base_loss if hasattr(loss, "base_loss") else loss
    assert dict(inner.weights) == {"l1": 0.0, "l2": 2.0}
