"""RRDBNet (ESRGAN generator) and its VGG-style discriminator, for fast planar whole-body scans.

Wang X., Yu K., Wu S., Gu J., Liu Y., Dong C., Qiao Y., Loy C. C. "ESRGAN: Enhanced super-resolution
generative adversarial networks." ECCV Workshops 2018. The study maps a short (fast) planar scan to
a standard one of the same size, so the ×2 sub-pixel upsampling of the reference is followed by a
stride-2 convolution back down: output size = input size.
"""

from __future__ import annotations

import torch
from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.models._common import (
    batch_norm,
    check_input,
    check_network_args,
    check_norm_statistics,
    conv,
    long_skip,
)
from spectdl.models.registry import ModelExample, Violation, register


def pixel_shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Sub-pixel rearrangement in N-D: ``[B, C·r^d, *S] -> [B, C, *(r·S)]``.

    Channel ``c·r^d + (i_1·r^{d-1} + ... + i_d)`` goes to output position
    ``(r·s_1 + i_1, ..., r·s_d + i_d)`` of channel ``c``; in 2-D this is exactly
    ``torch.nn.functional.pixel_shuffle``.
    """
    d = x.dim() - 2
    b, c, *size = x.shape
    r = int(factor)
    if c % r**d:
        raise ConfigError(f"pixel_shuffle: {c} channels; expected a multiple of factor**{d} = {r**d}")
    x = x.reshape(b, c // r**d, *([r] * d), *size)
    # Interleave (s_k, i_k) pairs: dims are [B, C, i_1..i_d, s_1..s_d] -> [B, C, s_1, i_1, ..., s_d, i_d].
    order = [0, 1] + [p for k in range(d) for p in (2 + d + k, 2 + k)]
    x = x.permute(*order)
    return x.reshape(b, c // r**d, *[s * r for s in size])


class ResidualDenseBlock(nn.Module):
    """Five 3^d convolutions with dense connections: ``x_k = LReLU(conv_k([x, x_1, .., x_{k-1}]))`` for
    k = 1..4 (``growth`` channels each, LeakyReLU 0.2), ``x_5 = conv_5([x, x_1..x_4])`` (``features``
    channels, linear), output ``x + residual_scale · x_5``.
    """

    def __init__(
        self, features: int = 64, growth: int = 32, residual_scale: float = 0.2, spatial_dims: int = 2
    ):
        super().__init__()
        self.residual_scale = residual_scale
        c = conv(spatial_dims)
        self.convs = nn.ModuleList(
            [c(features + k * growth, growth if k < 4 else features, 3, padding=1) for k in range(5)]
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for k, layer in enumerate(self.convs):
            h = layer(torch.cat(feats, dim=1))
            if k < 4:
                feats.append(self.act(h))
        return x + self.residual_scale * h


class RRDB(nn.Module):
    """Residual-in-residual dense block: three residual dense blocks, ``x + 0.2 · RDB3(RDB2(RDB1(x)))``."""

    def __init__(
        self, features: int = 64, growth: int = 32, residual_scale: float = 0.2, spatial_dims: int = 2
    ):
        super().__init__()
        self.residual_scale = residual_scale
        self.blocks = nn.Sequential(
            *[ResidualDenseBlock(features, growth, residual_scale, spatial_dims) for _ in range(3)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.blocks(x)


@register(
    "rrdbnet",
    example=ModelExample(
        kwargs=dict(spatial_dims=2, in_channels=1, out_channels=1, num_blocks=1, features=4, growth=2),
        input_shape=(2, 1, 7, 6),
        output_shape=(2, 1, 7, 6),
        violations=(Violation((2, 2, 7, 6), "expected [B, C, H, W] with C=1"),),
    ),
)
class RRDBNet(nn.Module):
    """Same-size RRDBNet (Wang et al. 2018): conv -> ``num_blocks`` RRDB -> conv (+ trunk skip) ->
    conv to ``features·2^d`` + PixelShuffle ×2 + LReLU -> conv 3^d stride 2 + LReLU -> conv + LReLU -> conv.

    Args:
        spatial_dims: 2 (planar images) or 3.
        in_channels, out_channels: image channels.
        num_blocks: number of RRDB (9 in the study; 23 in ESRGAN).
        features: trunk channels (64).
        growth: dense growth channels (32).
        residual_scale: the 0.2 of both residual levels.
        long_skip: add input channel 0 to the (linear) output.

    Shapes: ``[B, in, *S] -> [B, out, *S]`` for any ``S`` (2·S after the sub-pixel step, then
    ``floor((2·S - 1) / 2) + 1 = S`` after the stride-2 convolution).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        num_blocks: int = 9,
        features: int = 64,
        growth: int = 32,
        residual_scale: float = 0.2,
        long_skip: bool = False,
    ):
        super().__init__()
        sd, self.in_channels, self.out_channels = check_network_args(
            type(self).__name__,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            features=features,
            growth=growth,
        )
        self.spatial_dims = sd
        self.long_skip = bool(long_skip)
        c = conv(sd)
        self.conv_first = c(in_channels, features, 3, padding=1)
        self.body = nn.Sequential(
            *[RRDB(features, growth, residual_scale, sd) for _ in range(int(num_blocks))]
        )
        self.conv_body = c(features, features, 3, padding=1)
        self.conv_up = c(features, features * 2**sd, 3, padding=1)
        self.conv_down = c(features, features, 3, stride=2, padding=1)
        self.conv_hr = c(features, features, 3, padding=1)
        self.conv_last = c(features, out_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims, type(self).__name__)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.act(pixel_shuffle(self.conv_up(feat), 2))
        feat = self.act(self.conv_down(feat))
        out = self.conv_last(self.act(self.conv_hr(feat)))
        return long_skip(x, out) if self.long_skip else out


@register(
    "vgg_discriminator",
    example=ModelExample(
        kwargs={"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "patch_size": 32, "features": 2},
        input_shape=(2, 1, 32, 32),
        output_shape=(2, 1),
        violations=(
            Violation((2, 1, 64, 64), "expected 32 in every dimension"),
            Violation((1, 1, 32, 32), "expected batch >= 2 or patch_size >= 64", training=True),
        ),
    ),
)
class VGGDiscriminator(nn.Module):
    """VGG-style discriminator of ESRGAN, with a head sized for ``patch_size``.

    Five stages, each Conv 3^d stride 1 then Conv 4^d stride 2 (padding 1), with ``features·(1, 2, 4,
    8, 8)`` filters, BatchNorm after every convolution except the first, LeakyReLU 0.2; then flatten,
    Linear(``8·features·(patch_size/32)^d`` -> 100), LeakyReLU 0.2, Linear(100 -> ``out_channels``)
    giving logits (no sigmoid; pair with ``BCEWithLogitsLoss`` or a relativistic loss).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and logits.
        patch_size: side ``P`` of every input, a multiple of 32 (192 in the study).
        features: filters of the first stage (64).

    Shapes: ``[B, in, P, ..., P] -> [B, out]`` with ``P = patch_size`` divisible by 32 (192 in the
    study, giving a 6^d map of ``8·features`` channels before the head); any other size raises
    ``InputError``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        patch_size: int = 192,
        features: int = 64,
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
        if not isinstance(patch_size, int) or patch_size < 32 or patch_size % 32:
            raise ConfigError(f"{owner}: patch_size={patch_size!r}; expected a positive multiple of 32")
        self.patch_size = patch_size
        c, bn = conv(sd), batch_norm(sd)
        layers: list[nn.Module] = []
        prev = in_channels
        for k, mult in enumerate((1, 2, 4, 8, 8)):
            f = features * mult
            if k == 0:
                layers += [c(prev, f, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            else:
                layers += [c(prev, f, 3, padding=1, bias=False), bn(f), nn.LeakyReLU(0.2, inplace=True)]
            layers += [c(f, f, 4, stride=2, padding=1, bias=False), bn(f), nn.LeakyReLU(0.2, inplace=True)]
            prev = f
        self.features = nn.Sequential(*layers)
        side = patch_size // 32
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(prev * side**sd, 100),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(100, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims, type(self).__name__)
        if any(s != self.patch_size for s in x.shape[2:]):
            raise InputError(
                f"VGGDiscriminator: x spatial size {tuple(x.shape[2:])}; expected {self.patch_size} "
                "in every dimension (the head is sized for patch_size)"
            )
        side = self.patch_size // 32
        check_norm_statistics(
            x, [side] * self.spatial_dims, self.training, "VGGDiscriminator", "batch >= 2 or patch_size >= 64"
        )
        return self.head(self.features(x))
