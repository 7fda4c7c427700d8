from __future__ import annotations

import pytest
import torch

from spectdl.models import RCAN, count_parameters
from spectdl.models.rcan import ChannelAttention


def _conv(cin, cout, k=3, d=2):
    return k**d * cin * cout + cout


def _rcan_hand_count(cin, cout, groups=10, blocks=20, nf=64, r=16, d=2):
    rcab = 2 * _conv(nf, nf, d=d) + _conv(nf, nf // r, 1, d) + _conv(nf // r, nf, 1, d)
    group = blocks * rcab + _conv(nf, nf, d=d)
    return _conv(cin, nf, d=d) + groups * group + _conv(nf, nf, d=d) + _conv(nf, cout, d=d)


def test_rcan_parameter_count():
    n = count_parameters(RCAN(2, 1, 1))
    assert n == _rcan_hand_count(1, 1) == 15_294_625
    small = RCAN(3, 1, 1, num_groups=2, num_blocks=3, features=16, reduction=4)
    assert count_parameters(small) == _rcan_hand_count(1, 1, 2, 3, 16, 4, 3)


@pytest.mark.parametrize("spatial_dims, size", [(2, (13, 16)), (3, (5, 6, 7))])
@pytest.mark.parametrize("batch", [1, 2])
def test_rcan_forward_backward(forward_backward, gen, spatial_dims, size, batch):
    model = RCAN(spatial_dims, 1, 1, num_groups=2, num_blocks=2, features=16)
    forward_backward(model, torch.rand(batch, 1, *size, generator=gen), (batch, 1, *size))


def test_channel_attention_is_squeeze_excitation(gen):
    ca = ChannelAttention(16, 4)
    x = torch.rand(2, 16, 5, 6, generator=gen)
    w1, b1 = ca.net[0].weight.reshape(4, 16), ca.net[0].bias
    w2, b2 = ca.net[2].weight.reshape(16, 4), ca.net[2].bias
    g = x.mean(dim=(2, 3))
    scale = torch.sigmoid(torch.relu(g @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(ca(x), x * scale[:, :, None, None])
