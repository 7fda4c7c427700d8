"""EDSR baseline, same-size (no upsampling), single channel, without the RGB mean shift.

Lim B., Son S., Kim H., Nah S., Lee K. M. "Enhanced deep residual networks for single image
super-resolution." CVPR Workshops 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from spectdl.models._common import check_channels, check_input, check_spatial_dims, conv, long_skip
from spectdl.models.registry import register


class ResBlock(nn.Module):
    """``x + s · conv(ReLU(conv(x)))`` with 3^d convolutions and no normalisation."""

    def __init__(self, features: int, residual_scale: float = 1.0, spatial_dims: int = 2):
        super().__init__()
        c = conv(spatial_dims)
        self.body = nn.Sequential(
            c(features, features, 3, padding=1), nn.ReLU(inplace=True), c(features, features, 3, padding=1)
        )
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.body(x)


@register("edsr")
class EDSR(nn.Module):
    """EDSR: head conv -> ``num_blocks`` residual blocks -> conv, plus the head features (global
    residual) -> tail conv to ``out_channels`` (linear). The reference's upsampler is left out, so the
    output has the input's size.

    Args:
        in_channels, out_channels: image channels.
        num_blocks: residual blocks (16, the EDSR baseline).
        features: channels (64).
        residual_scale: scaling of each block's residual (1 for the baseline, 0.1 for the large model).
        spatial_dims: 2 or 3.
        long_skip: add input channel 0 to the output.

    Shapes: ``[B, in, *S] -> [B, out, *S]`` for any ``S``. About 1.22 M parameters at 1 -> 1 in 2-D.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        num_blocks: int = 16,
        features: int = 64,
        residual_scale: float = 1.0,
        spatial_dims: int = 2,
        long_skip: bool = False,
    ):
        super().__init__()
        owner = type(self).__name__
        self.spatial_dims = sd = check_spatial_dims(spatial_dims, owner=owner)
        self.in_channels = check_channels(in_channels, "in_channels", owner)
        self.out_channels = check_channels(out_channels, "out_channels", owner)
        check_channels(features, "features", owner)
        self.long_skip = bool(long_skip)
        c = conv(sd)
        self.head = c(in_channels, features, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(features, residual_scale, sd) for _ in range(int(num_blocks))],
            c(features, features, 3, padding=1),
        )
        self.tail = c(features, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims, type(self).__name__)
        h = self.head(x)
        out = self.tail(h + self.body(h))
        return long_skip(x, out) if self.long_skip else out
