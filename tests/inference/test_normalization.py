"""Normalization from checkpoint metadata: divisors against numpy statistics, and the round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spectdl.errors import InputError
from spectdl.inference import Normalization, enhance_volume


def _volume() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 5, 4, 6, generator=g)
    v[1] = v[1].abs() + 0.1
    return v


def test_no_normalization_recorded_is_identity():
    norm = Normalization.from_meta({"modality": "spect"})
    v = _volume()
    x, scales = norm.apply(v)
    assert scales == [1.0, 1.0, 1.0] and x is v
    assert torch.equal(norm.restore(v, scales), v)


def test_divisors_match_numpy_statistics():
    v = _volume()
    a = v.numpy().astype(np.float64)
    norm = Normalization.from_meta({"normalization": {"inputs": ["mean_positive", "mean", 0.15], "output": 1}})
    scales = norm.scales(v)
    np.testing.assert_allclose(scales, [a[0][a[0] > 0].mean(), a[1].mean(), 0.15], rtol=1e-12)
    assert Normalization(("max",)).scales(v)[0] == pytest.approx(a[0].max(), rel=1e-12)
    x, s = norm.apply(v)
    np.testing.assert_allclose(x.numpy(), a / np.array(scales)[:, None, None, None], rtol=1e-6)
    # the output is scaled back by the divisor of channel 1
    torch.testing.assert_close(norm.restore(x[1:2], s), v[1:2])


def test_string_shorthand_and_output_clamp():
    norm = Normalization.from_meta({"normalization": "mean_positive"})
    assert norm == Normalization(("mean_positive",), 0, None)
    clamp = Normalization.from_meta({"normalization": {"inputs": [], "output_min": 0.0}})
    assert torch.equal(clamp.restore(torch.tensor([-1.0, 2.0]), [1.0]), torch.tensor([0.0, 2.0]))
    assert Normalization.from_meta({"normalization": norm.to_meta()}) == norm


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"inputs": ["median"]}, "inputs\\[0\\]"),
        ({"inputs": [-2.0]}, "inputs\\[0\\]"),
        ({"inputs": ["mean"], "output": "zero"}, "output"),
        ({"inputs": ["mean"], "scale": 3}, "unknown keys"),
        (42, "expected a mapping"),
    ],
)
def test_bad_metadata_is_refused(spec, match):
    with pytest.raises(InputError, match=match):
        Normalization.from_meta({"normalization": spec}, where="checkpoint x.json")


def test_empty_channel_and_too_few_channels_are_refused():
    with pytest.raises(InputError, match="channel 0.*mean_positive"):
        Normalization(("mean_positive",)).scales(-torch.ones(1, 3, 3, 3))
    with pytest.raises(InputError, match="2 input channels"):
        Normalization(("mean", "mean")).scales(torch.ones(1, 3, 3, 3))
    with pytest.raises(InputError, match="output"):
        Normalization(("mean",), output=2).scales(torch.ones(2, 3, 3, 3))


class _Spy(nn.Module):
    """Returns ones; records what it was given."""

    spatial_dims = 3

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.ones_like(x[:, :1])


def test_enhance_volume_divides_input_and_multiplies_output_back():
    v = _volume()[1:2] * 7.0
    spy = _Spy()
    meta = {"normalization": {"inputs": ["mean"], "output": 0}}
    out = enhance_volume(spy, v, meta=meta, roi_size=(5, 4, 6))
    mean = float(v.double().mean())
    # the network saw x / mean (one window covers the whole volume) ...
    torch.testing.assert_close(spy.seen[0][0], v / mean)
    # ... and its output of ones comes back as the mean
    torch.testing.assert_close(out, torch.full_like(v, mean))


def test_output_scale_divides_the_training_target_and_multiplies_the_output():
    from spectdl.data import transforms as T
    from spectdl.data.normalization import Normalization

    norm = {"inputs": ["mean", "none"], "output": None, "output_scale": 10.0, "output_min": 0.0}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 8, 8, generator=g) + 0.5
    target = 9.0 * torch.rand(1, 8, 8, generator=g)
    sample, _ = T.NormalizeChannels(norm, target_statistic=None)({"input": x, "target": target})
    torch.testing.assert_close(sample["target"], target / 10.0)
    torch.testing.assert_close(sample["input"][0], x[0] / x[0].double().mean().float())
    torch.testing.assert_close(sample["input"][1], x[1])
    n = Normalization.from_meta({"normalization": norm})
    assert n.to_meta()["output_scale"] == 10.0
    # Inference restores the target's units: ỹ · 10, clamped at 0.
    torch.testing.assert_close(n.restore(sample["target"] - 0.05, [1.0, 1.0]), (target - 0.5).clamp_min(0))
    with pytest.raises(InputError, match="output_scale"):
        Normalization.from_meta({"normalization": {"output_scale": 0}})
    with pytest.raises(InputError, match="needs normalization.output"):
        T.NormalizeChannels({"inputs": ["mean"]}, target_statistic=None)({"input": x, "target": target})
