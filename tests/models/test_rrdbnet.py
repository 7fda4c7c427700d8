from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spectdl.errors import InputError
from spectdl.models import RRDBNet, VGGDiscriminator, count_parameters
from spectdl.models.rrdbnet import pixel_shuffle


def _conv(cin, cout, k=3, d=2, bias=True):
    return k**d * cin * cout + (cout if bias else 0)


def _rrdbnet_hand_count(cin, cout, blocks=9, nf=64, gc=32, d=2):
    rdb = sum(_conv(nf + i * gc, gc, d=d) for i in range(4)) + _conv(nf + 4 * gc, nf, d=d)
    return (
        _conv(cin, nf, d=d)
        + blocks * 3 * rdb
        + _conv(nf, nf, d=d)  # trunk conv
        + _conv(nf, nf * 2**d, d=d)  # before the pixel shuffle
        + 2 * _conv(nf, nf, d=d)  # stride-2 conv, HR conv
        + _conv(nf, cout, d=d)
    )


def _vgg_hand_count(cin, cout, patch, nf=64):
    widths = [nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf]
    n, prev = 0, cin
    for k, w in enumerate(widths):
        n += _conv(prev, w) if k == 0 else _conv(prev, w, bias=False) + 2 * w
        n += _conv(w, w, k=4, bias=False) + 2 * w
        prev = w
    return n + (prev * (patch // 32) ** 2 * 100 + 100) + (100 * cout + cout)


def test_rrdbnet_parameter_count():
    model = RRDBNet(2, 1, 1)  # the study's 9 RRDB
    assert count_parameters(model) == _rrdbnet_hand_count(1, 1) == 6_734_529


def test_vgg_discriminator_parameter_count_adapts_to_patch():
    assert count_parameters(VGGDiscriminator(2, 1, 1, patch_size=192)) == _vgg_hand_count(1, 1, 192)
    # ESRGAN's own 128×128, RGB discriminator (a 4×4 map before the head).
    rgb128 = VGGDiscriminator(2, 3, 1, patch_size=128)
    assert count_parameters(rgb128) == _vgg_hand_count(3, 1, 128) == 14_499_401
    assert _vgg_hand_count(1, 1, 192) - _vgg_hand_count(1, 1, 128) == 512 * (36 - 16) * 100


@pytest.mark.parametrize("batch", [1, 2])
def test_rrdbnet_forward_backward_2d(forward_backward, gen, batch):
    model = RRDBNet(2, 1, 1, num_blocks=1, features=8, growth=4)
    forward_backward(model, torch.rand(batch, 1, 17, 20, generator=gen), (batch, 1, 17, 20))


@pytest.mark.parametrize("batch", [1, 2])
def test_rrdbnet_forward_backward_3d(forward_backward, gen, batch):
    model = RRDBNet(3, 2, 1, num_blocks=1, features=4, growth=4, long_skip=True)
    forward_backward(model, torch.rand(batch, 2, 5, 6, 7, generator=gen), (batch, 1, 5, 6, 7))


def test_rrdb_residual_scaling(gen):
    model = RRDBNet(2, 1, 1, num_blocks=1, features=8, growth=4)
    rdb = model.body[0].blocks[0]
    with torch.no_grad():
        for c in rdb.convs[:4]:
            c.weight.zero_()
            c.bias.zero_()
        rdb.convs[4].weight.zero_()
        rdb.convs[4].bias.fill_(1.0)
    x = torch.rand(2, 8, 5, 5, generator=gen)
    torch.testing.assert_close(rdb(x), x + 0.2)


def test_pixel_shuffle_matches_torch_2d_and_definition_3d(gen):
    x = torch.rand(2, 12, 3, 4, generator=gen)
    torch.testing.assert_close(pixel_shuffle(x, 2), F.pixel_shuffle(x, 2))
    r = 2
    x3 = torch.rand(2, 3 * r**3, 3, 4, 5, generator=gen)
    expected = torch.empty(2, 3, 6, 8, 10)
    for i in range(r):
        for j in range(r):
            for k in range(r):
                expected[:, :, i::r, j::r, k::r] = x3[:, (i * r * r + j * r + k)::r**3]
    torch.testing.assert_close(pixel_shuffle(x3, r), expected)


@pytest.mark.parametrize("batch", [1, 2])
def test_vgg_discriminator_forward_backward(forward_backward, gen, batch):
    model = VGGDiscriminator(2, 1, 1, patch_size=64, features=4)
    if batch == 1:
        model.eval()  # a 2×2 map per channel at the last BatchNorm is fine, but keep batch 1 in eval
    forward_backward(model, torch.rand(batch, 1, 64, 64, generator=gen), (batch, 1))
    model3 = VGGDiscriminator(3, 1, 1, patch_size=32, features=2)
    forward_backward(model3, torch.rand(2, 1, 32, 32, 32, generator=gen), (2, 1))


def test_vgg_discriminator_rejects_other_sizes():
    with pytest.raises(InputError, match="expected 64"):
        VGGDiscriminator(2, 1, 1, patch_size=64, features=2)(torch.rand(2, 1, 64, 96))
