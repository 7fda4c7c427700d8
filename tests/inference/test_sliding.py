"""predict_slices and predict_sliding_window against whole-volume application of the network,
explicit convolutions (torch.nn.functional), and scipy's Gaussian window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal.windows import gaussian
from torch import nn

from spectdl.errors import InputError
from spectdl.inference import blend_weights, predict_slices, predict_sliding_window, window_starts


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Constant(nn.Module):
    """Outputs ``value`` everywhere, whatever the input."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full_like(x[:, :1], self.value)


class SizeChecked(nn.Module):
    """Wraps a network and records the spatial sizes and batch sizes it is given."""

    def __init__(self, net):
        super().__init__()
        self.net, self.sizes, self.batches = net, set(), []

    def forward(self, x):
        self.sizes.add(tuple(x.shape[2:]))
        self.batches.append(x.shape[0])
        return self.net(x)


def _conv3(in_ch: int, out_ch: int, dims: int, seed: int = 1) -> nn.Module:
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(in_ch, out_ch, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=_gen(seed)))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=_gen(seed + 1)))
    return conv.eval()


# --------------------------------------------------------------------------------------------------
# slice-wise


def test_slices_identity_returns_input_exactly():
    v = torch.randn(2, 5, 4, 7, generator=_gen())
    for axis in (0, 1, 2, -1):
        for bs in (1, 3, 64):
            out = predict_slices(Identity(), v, bs, axis)
            assert torch.equal(out, v)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_equal_a_3d_convolution_flat_along_the_axis(axis):
    # A 2-D 3×3 convolution on every slice across `axis` is a 3-D convolution whose kernel has
    # length 1 along that axis: an independent whole-volume reference.
    conv = _conv3(2, 3, 2)
    v = torch.randn(2, 6, 5, 7, generator=_gen(2))
    kernel = conv.weight.unsqueeze(2 + axis)  # [out, in, ...] with a 1 inserted at the slice axis
    padding = [1, 1, 1]
    padding[axis] = 0
    ref = F.conv3d(v[None], kernel, conv.bias, padding=tuple(padding))[0]
    out = predict_slices(conv, v, batch_size=4, axis=axis)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_slices_batches_match_batch_one():
    conv = _conv3(1, 2, 2)
    v = torch.randn(1, 6, 5, 9, generator=_gen(3))
    one = predict_slices(conv, v, batch_size=1)
    for bs in (2, 4, 9, 100):
        torch.testing.assert_close(predict_slices(conv, v, batch_size=bs), one, rtol=1e-6, atol=1e-6)
    spy = SizeChecked(Identity())
    predict_slices(spy, v, batch_size=4)
    assert spy.batches == [4, 4, 1] and spy.sizes == {(6, 5)}


def test_slices_refuse_bad_arguments():
    v = torch.zeros(1, 4, 4, 4)
    with pytest.raises(InputError, match="axis"):
        predict_slices(Identity(), v, 2, axis=3)
    with pytest.raises(InputError, match="batch_size"):
        predict_slices(Identity(), v, 0)
    with pytest.raises(InputError, match=r"\[C, X, Y, Z\]"):
        predict_slices(Identity(), v[0], 2)
    with pytest.raises(InputError, match="same spatial size"):
        predict_slices(nn.MaxPool2d(2), v, 2)


# --------------------------------------------------------------------------------------------------
# window positions and weights


@pytest.mark.parametrize(
    "size, roi, overlap, expected",
    [
        (16, 8, 0.5, [0, 4, 8]),
        (10, 4, 0.5, [0, 2, 4, 6]),
        (10, 4, 0.0, [0, 4, 6]),
        (4, 4, 0.5, [0]),
        (5, 4, 0.9, [0, 1]),
        (11, 3, 0.25, [0, 2, 4, 6, 8]),
    ],
)
def test_window_starts_by_hand(size, roi, overlap, expected):
    assert window_starts(size, roi, overlap) == expected


def test_gaussian_weights_match_scipy_window():
    roi = (5, 8, 3)
    w = blend_weights(roi, "gaussian", sigma_scale=0.125).numpy()
    ref = np.einsum("i,j,k->ijk", *(gaussian(r, std=0.125 * r) for r in roi))
    np.testing.assert_allclose(w, ref / ref.max(), rtol=1e-12)
    assert torch.equal(blend_weights(roi, "constant"), torch.ones(roi, dtype=torch.float64))


# --------------------------------------------------------------------------------------------------
# sliding window


SHAPES_AND_ROIS = [
    ((13, 11, 9), (4, 5, 6)),  # odd sizes larger than the window
    ((5, 3, 7), (8, 8, 8)),  # smaller than the window on every axis (padded)
    ((9, 2, 12), (4, 6, 5)),  # mixed
    ((6, 6, 6), (6, 6, 6)),  # exactly one window
]


@pytest.mark.parametrize("shape, roi", SHAPES_AND_ROIS)
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_pointwise_network_equals_whole_volume_exactly(affine_net, shape, roi, blend):
    net = affine_net(in_channels=2, weights=[1.5, -0.75], bias=0.25).eval()
    v = torch.randn((2,) + shape, generator=_gen(4))
    with torch.no_grad():
        ref = net(v[None])[0]
    spy = SizeChecked(net)
    for overlap, bs in [(0.5, 1), (0.25, 3), (0.8, 64), (0.0, 2)]:
        out = predict_sliding_window(spy, v, roi, overlap, bs, blend)
        assert out.shape == ref.shape
        assert torch.equal(out, ref)
    assert spy.sizes == {roi}  # every window has the full size, padding included


def _interior_mask(shape, roi, overlap):
    """True where every window covering the voxel holds its whole 3×3×3 neighbourhood, or where the
    window's border is the volume's own border (zero padding there is the same as the volume's)."""
    masks = []
    for s, r in zip(shape, roi):
        starts = window_starts(s, r, overlap)
        ok = np.ones(s, bool)
        for i in range(s):
            for o in starts:
                if o <= i < o + r:
                    inner = 1 <= i - o <= r - 2 or (i == 0 and o == 0) or (i == s - 1 and o + r == s)
                    ok[i] &= inner
        masks.append(ok)
    return np.einsum("i,j,k->ijk", *masks)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_linear_convolution_equals_whole_volume_away_from_window_borders(blend):
    conv = _conv3(1, 2, 3, seed=5)
    shape, roi, overlap = (14, 11, 9), (6, 5, 9), 0.5
    v = torch.randn((1,) + shape, generator=_gen(6))
    with torch.no_grad():
        ref = conv(v[None])[0]
    out = predict_sliding_window(conv, v, roi, overlap, 4, blend)
    mask = torch.from_numpy(_interior_mask(shape, roi, overlap))
    assert 0.25 < mask.float().mean() < 1.0  # the check covers many voxels, and the borders are excluded
    torch.testing.assert_close(out[:, mask], ref[:, mask], rtol=1e-5, atol=1e-5)
    assert (out - ref).abs().amax(0)[~mask].max() > 1e-3  # where windows cut the kernel, it does differ


def test_constant_output_gives_a_constant_volume():
    # The blended mean Σ w c / Σ w is c only when the weights are summed the same way as the
    # weighted outputs, including where a voxel is seen by one window's edge alone.
    for blend, sigma in [("gaussian", 0.125), ("gaussian", 0.02), ("constant", 0.125)]:
        out = predict_sliding_window(Constant(0.3), torch.zeros(1, 13, 7, 10), (4, 5, 3), 0.6, 5, blend,
                                     sigma_scale=sigma)
        assert torch.equal(out, torch.full((1, 13, 7, 10), 0.3))


def test_windows_batches_match_batch_one_for_a_unet():
    from spectdl.models import UNet

    net = UNet(3, 1, 1, features=(4, 8)).eval()
    v = torch.rand(1, 10, 9, 7, generator=_gen(7))
    one = predict_sliding_window(net, v, (6, 6, 6), 0.5, 1)
    for bs in (2, 5, 100):
        torch.testing.assert_close(predict_sliding_window(net, v, (6, 6, 6), 0.5, bs), one, rtol=1e-5, atol=1e-6)


def test_sliding_window_2d():
    conv = _conv3(1, 1, 2, seed=8)
    v = torch.randn(1, 9, 7, generator=_gen(9))
    out = predict_sliding_window(conv, v, (9, 7), 0.5, 2)
    torch.testing.assert_close(out, conv(v[None])[0].detach(), rtol=1e-6, atol=1e-6)


def test_sliding_window_refuses_bad_arguments():
    v = torch.zeros(1, 6, 6, 6)
    with pytest.raises(InputError, match="roi_size"):
        predict_sliding_window(Identity(), v, (4, 4))
    with pytest.raises(InputError, match="roi_size"):
        predict_sliding_window(Identity(), v, (4, 0, 4))
    with pytest.raises(InputError, match="overlap"):
        predict_sliding_window(Identity(), v, 4, overlap=1.0)
    with pytest.raises(InputError, match="blend"):
        predict_sliding_window(Identity(), v, 4, blend="cosine")
    with pytest.raises(InputError, match="sigma_scale"):
        predict_sliding_window(Identity(), v, 4, sigma_scale=0.0)

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(InputError, match="expected one tensor"):
        predict_sliding_window(Pair(), v, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_network_on_gpu_volume_on_host(affine_net):
    net = affine_net().to("cuda").eval()
    v = torch.randn(1, 9, 8, 7, generator=_gen(10))
    out = predict_sliding_window(net, v, 4, 0.5, 3, device="cuda")
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, v * 2.0 + 0.5)
    out2 = predict_slices(net.__class__(spatial_dims=2).to("cuda"), v, 3, device="cuda")
    torch.testing.assert_close(out2, v * 2.0 + 0.5)
