"""EDSR baseline, same-size (no upsampling), single channel, without the RGB mean shift.

Lim B., Son S., Kim H., Nah S., Lee K. M. "Enhanced deep residual networks for single image
super-resolution." CVPR Workshops 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from spectdl.models._common import check_input, check_network_args, conv, long_skip
from spectdl.models.registry import ModelExample, Violation, register


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


@register(
    "edsr",
    example=ModelExample(
        kwargs={"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "num_blocks": 1, "features": 4},
        input_shape=(2, 1, 7, 9),
        output_shape=(2, 1, 7, 9),
        violations=(Violation((2, 1, 7, 9, 3), "expected [B, C, H, W] with C=1"),),
    ),
)
class EDSR(nn.Module):
    """EDSR: head conv -> ``num_blocks`` residual blocks -> conv, plus the head features (global
    residual) -> tail conv to ``out_channels`` (linear). The reference's upsampler is left out, so the
    output has the input's size.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels.
        num_blocks: residual blocks (16, the EDSR baseline).
        features: channels (64).
        residual_scale: scaling of each block's residual (1 for the baseline, 0.1 for the large model).
        long_skip: add input channel 0 to the output.

    Shapes: ``[B, in, *S] -> [B, out, *S]`` for any ``S``. About 1.22 M parameters at 1 -> 1 in 2-D.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        num_blocks: int = 16,
        features: int = 64,
        residual_scale: float = 1.0,
        long_skip: bool = False,
    ):
        super().__init__()
        sd, self.in_channels, self.out_channels = check_network_args(
            type(self).__name__,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            features=features,
        )
        self.spatial_dims = sd
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
