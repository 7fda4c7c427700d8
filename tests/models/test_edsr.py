from __future__ import annotations

import pytest
import torch

from spectdl.models import EDSR, count_parameters


def _conv(cin, cout, k=3, d=2):
    return k**d * cin * cout + cout


def _edsr_hand_count(cin, cout, blocks=16, nf=64, d=2):
    return _conv(cin, nf, d=d) + blocks * 2 * _conv(nf, nf, d=d) + _conv(nf, nf, d=d) + _conv(nf, cout, d=d)


def test_edsr_parameter_count():
    n = count_parameters(EDSR(2, 1, 1))
    assert n == _edsr_hand_count(1, 1) == 1_219_841
    small = EDSR(3, 1, 1, num_blocks=2, features=8)
    assert count_parameters(small) == _edsr_hand_count(1, 1, 2, 8, 3)


@pytest.mark.parametrize("spatial_dims, size", [(2, (13, 16)), (3, (5, 6, 7))])
@pytest.mark.parametrize("batch", [1, 2])
def test_edsr_forward_backward(forward_backward, gen, spatial_dims, size, batch):
    model = EDSR(spatial_dims, 1, 1, num_blocks=2, features=8)
    forward_backward(model, torch.rand(batch, 1, *size, generator=gen), (batch, 1, *size))


def test_edsr_global_residual_and_long_skip(gen):
    model = EDSR(2, 1, 1, num_blocks=1, features=4, long_skip=True)
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.fill_(-0.5)
    x = torch.rand(2, 1, 9, 9, generator=gen)
    torch.testing.assert_close(model(x), x - 0.5)
