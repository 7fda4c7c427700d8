from __future__ import annotations

import pytest
import torch

from spectdl.errors import ConfigError, InputError
from spectdl.models import U2Net, U2NetSmall, count_parameters


def _rebn(cin, cout, d=2):
    # 3^d convolution with bias, then BatchNorm (weight and bias).
    return 3**d * cin * cout + cout + 2 * cout


def _rsu(height, cin, mid, cout, d=2):
    # The same count holds for RSU-L and RSU-LF: only dilations differ.
    return (
        _rebn(cin, cout, d)
        + _rebn(cout, mid, d)
        + (height - 2) * _rebn(mid, mid, d)
        + _rebn(mid, mid, d)
        + (height - 2) * _rebn(2 * mid, mid, d)
        + _rebn(2 * mid, cout, d)
    )


def _u2net_hand_count(enc, dec, side_channels, cin, cout, d=2):
    n = sum(_rsu(h, cin if i == 0 else ci, m, co, d) for i, (h, ci, m, co) in enumerate(enc))
    n += sum(_rsu(h, ci, m, co, d) for h, ci, m, co in dec)
    n += sum(3**d * c * cout + cout for c in side_channels)
    n += 6 * cout * cout + cout
    return n


FULL_ENC = [
    (7, None, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256),
    (4, 256, 128, 512), (4, 512, 256, 512), (4, 512, 256, 512),
]
FULL_DEC = [(4, 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128), (6, 256, 32, 64), (7, 128, 16, 64)]
SMALL_ENC = [(7, None, 16, 64)] + [(h, 64, 16, 64) for h in (6, 5, 4, 4, 4)]
SMALL_DEC = [(h, 128, 16, 64) for h in (4, 4, 5, 6, 7)]


@pytest.fixture(scope="module")
def u2net_full():
    return U2Net(in_channels=2, out_channels=1)


def test_u2net_parameter_count(u2net_full):
    n = count_parameters(u2net_full)
    assert n == _u2net_hand_count(FULL_ENC, FULL_DEC, [64, 64, 128, 256, 512, 512], 2, 1)
    assert abs(n - 44.0e6) / 44.0e6 < 0.01
    # The reference implementation with an RGB input has 44,009,869 parameters.
    assert count_parameters(U2Net(2, 3, 1)) == 44_009_869


def test_u2net_small_parameter_count():
    n = count_parameters(U2NetSmall(2, 2, 1))
    assert n == _u2net_hand_count(SMALL_ENC, SMALL_DEC, [64] * 6, 2, 1)
    assert abs(n - 1.13e6) / 1.13e6 < 0.01
    assert count_parameters(U2NetSmall(2, 3, 1)) == 1_131_181


@pytest.mark.parametrize("batch", [1, 2])
def test_u2net_full_forward_backward_odd_size(u2net_full, forward_backward, gen, batch):
    x = torch.rand(batch, 2, 37, 45, generator=gen)
    forward_backward(u2net_full, x, (batch, 1, 37, 45))


@pytest.mark.parametrize("batch", [1, 2])
def test_u2net_small_2d_sides(forward_backward, gen, batch):
    model = U2NetSmall(2, 2, 1)
    x = torch.rand(batch, 2, 37, 45, generator=gen)
    fused, sides = model(x, return_sides=True)
    assert len(sides) == 6 and all(s.shape == (batch, 1, 37, 45) for s in sides)
    forward_backward(model, x, (batch, 1, 37, 45))


@pytest.mark.parametrize("batch", [1, 2])
def test_u2net_small_3d(forward_backward, gen, batch):
    model = U2NetSmall(3, 1, 2)
    if batch == 1:
        # BatchNorm at the 1×1×1 bottom of RSU7 needs two samples in training mode.
        model.eval()
    x = torch.rand(batch, 1, 11, 12, 13, generator=gen)
    forward_backward(model, x, (batch, 2, 11, 12, 13))


def test_long_skip_adds_the_spect_channel(gen):
    model = U2NetSmall(2, 2, 1).eval()
    with torch.no_grad():
        model.fuse.weight.zero_()
        model.fuse.bias.zero_()
        model.sides[3].weight.zero_()
        model.sides[3].bias.fill_(0.25)
    x = torch.rand(2, 2, 20, 24, generator=gen)
    fused, sides = model(x, return_sides=True)
    torch.testing.assert_close(fused, x[:, :1])
    torch.testing.assert_close(sides[3], x[:, :1] + 0.25)
    no_skip = U2NetSmall(2, 2, 1, long_skip=False).eval()
    no_skip.load_state_dict(model.state_dict())
    torch.testing.assert_close(no_skip(x), torch.zeros_like(fused))


def test_u2net_rejects_bad_input_and_config():
    model = U2NetSmall(2, 2, 1)
    with pytest.raises(InputError, match="C=2"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ConfigError, match="spatial_dims"):
        U2NetSmall(4, 1, 1)
