from __future__ import annotations

import pytest
import torch

from spectdl.errors import ConfigError, InputError
from spectdl.models import UNet, count_parameters


def _double(cin, cout, d):
    return 3**d * cin * cout + 2 * cout + 3**d * cout * cout + 2 * cout


def _unet_hand_count(cin, cout, f=(32, 64, 128, 256), d=2):
    n = sum(_double(cin if k == 0 else f[k - 1], c, d) for k, c in enumerate(f))
    for k in range(len(f) - 1):
        n += 2**d * f[k + 1] * f[k] + f[k]  # transposed 2^d conv with bias
        n += _double(2 * f[k], f[k], d)
    return n + f[0] * cout + cout


def test_unet_parameter_count():
    assert count_parameters(UNet(2, 1, 1)) == _unet_hand_count(1, 1)
    small = UNet(3, 2, 3, features=(4, 8, 16))
    assert count_parameters(small) == _unet_hand_count(2, 3, (4, 8, 16), 3)


@pytest.mark.parametrize("batch", [1, 2])
def test_unet_2d_odd_size(forward_backward, gen, batch):
    forward_backward(UNet(2, 2, 1), torch.rand(batch, 2, 37, 45, generator=gen), (batch, 1, 37, 45))


@pytest.mark.parametrize("batch", [1, 2])
def test_unet_3d(forward_backward, gen, batch):
    model = UNet(3, 1, 1, features=(4, 8, 16))
    forward_backward(model, torch.rand(batch, 1, 9, 10, 11, generator=gen), (batch, 1, 9, 10, 11))


def test_unet_checks():
    with pytest.raises(InputError, match="at least 8"):
        UNet(2, 1, 1)(torch.rand(1, 1, 7, 32))
    with pytest.raises(ConfigError):
        UNet(2, 1, 1, features=(8,))
