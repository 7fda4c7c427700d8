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
    check_network_args,
    check_norm_statistics,
    conv,
    conv_transpose,
    long_skip,
    max_pool,
)
from spectdl.models.registry import ModelExample, Violation, register


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


@register(
    "unet",
    example=ModelExample(
        kwargs={"spatial_dims": 2, "in_channels": 2, "out_channels": 1, "features": (4, 8, 8)},
        input_shape=(2, 2, 9, 12),
        output_shape=(2, 1, 9, 12),
        violations=(
            Violation((2, 2, 3, 12), "expected each size divisible by 1 and at least 4"),
            Violation((1, 2, 4, 4), "expected batch >= 2 or a spatial size >= 8", training=True),
        ),
    ),
)
class UNet(nn.Module):
    """U-Net: ``len(features)`` levels; level ``k`` is a :class:`DoubleConv` with ``features[k]``
    filters, with a 2^d max-pooling between levels; on the way up a 2^d stride-2 transposed
    convolution halves the channels, the result is zero-padded to the skip's exact size (odd sizes),
    concatenated with the skip and passed through a DoubleConv; a 1^d convolution gives the linear
    output.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels.
        features: filters per level, default ``(32, 64, 128, 256)``.
        long_skip: add input channel 0 to the output.

    Shapes: ``[B, in, *S] -> [B, out, *S]`` for any ``S >= 2**(len(features) - 1)``; in training
    mode with batch 1 keep ``S >= 2**len(features)`` in some dimension so the deepest BatchNorm
    (at ``floor(S / 2**(len(features) - 1))``) sees several values; otherwise ``InputError``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        features: Sequence[int] = (32, 64, 128, 256),
        long_skip: bool = False,
    ):
        super().__init__()
        owner = type(self).__name__
        sd, self.in_channels, self.out_channels = check_network_args(
            owner, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels
        )
        self.spatial_dims = sd
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
        owner = type(self).__name__
        check_input(x, self.in_channels, self.spatial_dims, owner, min_size=2 ** (self.levels - 1))
        deepest = [s // 2 ** (self.levels - 1) for s in x.shape[2:]]
        check_norm_statistics(
            x, deepest, self.training, owner, f"batch >= 2 or a spatial size >= {2**self.levels}"
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
