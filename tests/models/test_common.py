from __future__ import annotations

import pytest
import torch

from spectdl.errors import ConfigError, InputError
from spectdl.models._common import check_network_args, check_norm_statistics


def test_check_network_args_returns_the_checked_values():
    assert check_network_args("Net", spatial_dims=3, in_channels=2, out_channels=1) == (3, 2, 1)
    assert check_network_args("Net", in_channels=4, out_channels=5, features=8) == (None, 4, 5)
    assert check_network_args("Net", spatial_dims=1, allowed_dims=(1,), in_channels=1, out_channels=1)[0] == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spatial_dims=4, in_channels=1, out_channels=1), r"Net: spatial_dims=4; expected one of \(2, 3"),
        (dict(spatial_dims=True, in_channels=1, out_channels=1), "spatial_dims=True"),
        (dict(spatial_dims=2.0, in_channels=1, out_channels=1), "spatial_dims=2.0"),
        (dict(in_channels=0, out_channels=1), "in_channels=0; expected a positive integer"),
        (dict(in_channels=1, out_channels=1.5), "out_channels=1.5"),
        (dict(in_channels=1, out_channels=1, growth=-2), "growth=-2"),
    ],
)
def test_check_network_args_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        check_network_args("Net", **kwargs)


def test_check_norm_statistics_counts_batch_times_map():
    x1 = torch.zeros(1, 3, 32, 32)
    with pytest.raises(InputError, match=r"\(1, 1\) map with one value per channel; expected batch >= 2"):
        check_norm_statistics(x1, (1, 1), True, "Net", "batch >= 2")
    check_norm_statistics(x1, (1, 1), False, "Net", "batch >= 2")  # eval: running statistics
    check_norm_statistics(x1, (1, 2), True, "Net", "batch >= 2")  # two values per channel
    check_norm_statistics(torch.zeros(2, 3, 32, 32), (1, 1), True, "Net", "batch >= 2")


def test_positional_order_follows_monai():
    from spectdl.models import EDSR, UNet

    # (spatial_dims, in_channels, out_channels): UNet(3, 2, 1) is a 3-D net from 2 to 1 channels.
    net = UNet(3, 2, 1, features=(2, 4))
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (3, 2, 1)
    assert isinstance(net.head, torch.nn.Conv3d) and net.head.out_channels == 1
    assert EDSR(2, 1, 3, num_blocks=1, features=4).out_channels == 3
    with pytest.raises(TypeError):
        EDSR(2, 1, 1, 3)  # num_blocks is keyword-only
