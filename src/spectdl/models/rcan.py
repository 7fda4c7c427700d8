"""RCAN, same-size (no upsampling), single channel, without the RGB mean shift.

Zhang Y., Li K., Li K., Wang L., Zhong B., Fu Y. "Image super-resolution using very deep residual
channel attention networks." ECCV 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from spectdl.errors import ConfigError
from spectdl.models._common import check_input, check_network_args, conv, long_skip
from spectdl.models.registry import ModelExample, Violation, register


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: ``x · sigmoid(W_2 ReLU(W_1 GAP(x)))`` with ``W_1: C -> C/r`` and
    ``W_2: C/r -> C`` as 1^d convolutions with bias."""

    def __init__(self, features: int, reduction: int = 16, spatial_dims: int = 2):
        super().__init__()
        c = conv(spatial_dims)
        self.net = nn.Sequential(
            c(features, features // reduction, 1),
            nn.ReLU(inplace=True),
            c(features // reduction, features, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        return x * self.net(g)


class RCAB(nn.Module):
    """Residual channel attention block: ``x + CA(conv(ReLU(conv(x))))``."""

    def __init__(self, features: int, reduction: int = 16, spatial_dims: int = 2):
        super().__init__()
        c = conv(spatial_dims)
        self.body = nn.Sequential(
            c(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            c(features, features, 3, padding=1),
            ChannelAttention(features, reduction, spatial_dims),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``x + conv(RCAB_n(...RCAB_1(x)))``."""

    def __init__(self, features: int, num_blocks: int, reduction: int = 16, spatial_dims: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(features, reduction, spatial_dims) for _ in range(num_blocks)],
            conv(spatial_dims)(features, features, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register(
    "rcan",
    example=ModelExample(
        kwargs=dict(
            spatial_dims=2, in_channels=1, out_channels=1, num_groups=1, num_blocks=1, features=4, reduction=2
        ),
        input_shape=(2, 1, 7, 9),
        output_shape=(2, 1, 7, 9),
        violations=(Violation((2, 2, 7, 9), "expected [B, C, H, W] with C=1"),),
    ),
)
class RCAN(nn.Module):
    """RCAN: head conv -> ``num_groups`` residual groups of ``num_blocks`` RCAB -> conv, plus the head
    features (long residual) -> tail conv to ``out_channels`` (linear; no upsampler).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels.
        num_groups: residual groups (10).
        num_blocks: RCAB per group (20).
        features: channels (64).
        reduction: channel-attention reduction ``r`` (16).
        long_skip: add input channel 0 to the output.

    Shapes: ``[B, in, *S] -> [B, out, *S]`` for any ``S``. About 15.3 M parameters at 1 -> 1 in 2-D.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        num_groups: int = 10,
        num_blocks: int = 20,
        features: int = 64,
        reduction: int = 16,
        long_skip: bool = False,
    ):
        super().__init__()
        owner = type(self).__name__
        sd, self.in_channels, self.out_channels = check_network_args(
            owner,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            features=features,
        )
        self.spatial_dims = sd
        if not isinstance(reduction, int) or reduction < 1 or features // reduction < 1:
            raise ConfigError(
                f"{owner}: reduction={reduction!r}; expected an integer in [1, features={features}]"
            )
        self.long_skip = bool(long_skip)
        c = conv(sd)
        self.head = c(in_channels, features, 3, padding=1)
        self.body = nn.Sequential(
            *[ResidualGroup(features, int(num_blocks), reduction, sd) for _ in range(int(num_groups))],
            c(features, features, 3, padding=1),
        )
        self.tail = c(features, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims, type(self).__name__)
        h = self.head(x)
        out = self.tail(h + self.body(h))
        return long_skip(x, out) if self.long_skip else out
