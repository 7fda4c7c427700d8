"""A plain 2-D/3-D U-Net baseline.

Ronneberger O., Fischer P., Brox T. "U-Net: Convolutional networks for biomedical image
segmentation." MICCAI 2015 (here with BatchNorm, padded convolutions and a linear output).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spectdl.errors import ConfigError
from spectdl.models._common import (
    batch_norm,
    check_channels,
    check_input,
    check_spatial_dims,
    conv,
    conv_transpose,
    long_skip,
    max_pool,
)
from spectdl.models.registry import register


class DoubleConv(nn.Sequential):
    """(Conv 3^d, padding 1, no bias -> BatchNorm -> ReLU) twice."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int):
        c, bn = conv(spatial_dims), batch_norm(spatial_dims)
        super().__init__(
            c(in_channels, out_channels, 3, padding=1, bias=False),
            bn(out_channels),
            nn.ReLU(inplace=True),
            c(out_channels, out_channels, 3, padding=1, bias=False),
            bn(out_channels),
            nn.ReLU(inplace=True),
        )


@register("unet")
class UNet(nn.Module):
    """U-Net: ``len(features)`` levels; level ``k`` is a :class:`DoubleConv` with ``features[k]``
    filters, with a 2^d max-pooling between levels; on the way up a 2^d stride-2 transposed
    convolution halves the channels, the result is zero-padded to the skip's exact size (odd sizes),
    concatenated with the skip and passed through a DoubleConv; a 1^d convolution gives the linear
    output.

    Args:
        in_channels, out_channels: image channels.
        spatial_dims: 2 or 3.
        features: filters per level, default ``(32, 64, 128, 256)``.
        long_skip: add input channel 0 to the output.

    Shapes: ``[B, in, *S] -> [B, out, *S]`` for any ``S >= 2**(len(features) - 1)``; in training
    mode with batch 1 keep ``S >= 2**len(features)`` so the deepest BatchNorm sees several values.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_dims: int = 2,
        features: Sequence[int] = (32, 64, 128, 256),
        long_skip: bool = False,
    ):
        super().__init__()
        owner = type(self).__name__
        self.spatial_dims = sd = check_spatial_dims(spatial_dims, owner=owner)
        self.in_channels = check_channels(in_channels, "in_channels", owner)
        self.out_channels = check_channels(out_channels, "out_channels", owner)
        features = [check_channels(int(f), "features", owner) for f in features]
        if len(features) < 2:
            raise ConfigError(f"{owner}: features={features}; expected at least two levels")
        self.long_skip = bool(long_skip)
        self.levels = len(features)
        self.down = nn.ModuleList(
            [DoubleConv(in_channels if k == 0 else features[k - 1], f, sd) for k, f in enumerate(features)]
        )
        self.pool = max_pool(sd)(2)
        self.upconv = nn.ModuleList(
            [
                conv_transpose(sd)(features[k + 1], features[k], 2, stride=2)
                for k in reversed(range(self.levels - 1))
            ]
        )
        self.up = nn.ModuleList(
            [DoubleConv(2 * features[k], features[k], sd) for k in reversed(range(self.levels - 1))]
        )
        self.head = conv(sd)(features[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(
            x, self.in_channels, self.spatial_dims, type(self).__name__, min_size=2 ** (self.levels - 1)
        )
        skips = []
        h = x
        for k, block in enumerate(self.down):
            if k > 0:
                h = self.pool(h)
            h = block(h)
            skips.append(h)
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips[:-1])):
            h = upconv(h)
            # Pad the last axis first: F.pad takes (last_lo, last_hi, second_last_lo, ...).
            pad = []
            for have, want in zip(reversed(h.shape[2:]), reversed(skip.shape[2:])):
                pad += [0, want - have]
            h = block(torch.cat([F.pad(h, pad), skip], dim=1))
        out = self.head(h)
        return long_skip(x, out) if self.long_skip else out
