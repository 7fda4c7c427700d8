"""U²-Net: nested U-structure of residual U-blocks (RSU), with six deeply supervised side outputs.

Qin X., Zhang Z., Huang C., Dehghan M., Zaiane O. R., Jagersand M. "U²-Net: Going deeper with nested
U-structure for salient object detection." Pattern Recognition 106:107404 (2020). Used here as a
regression network for fast (short acquisition) bone SPECT: the reference's output sigmoid is dropped
and a long skip adds the SPECT input channel to the prediction.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from spectdl.errors import ConfigError
from spectdl.models._common import (
    batch_norm,
    check_input,
    check_network_args,
    check_norm_statistics,
    conv,
    long_skip,
    max_pool,
    resize_to,
)
from spectdl.models.registry import ModelExample, Violation, register


class _ConvBNReLU(nn.Sequential):
    """3^d convolution with dilation ``d`` and padding ``d`` (size preserved), BatchNorm, ReLU."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, dilation: int = 1):
        super().__init__(
            conv(spatial_dims)(in_channels, out_channels, 3, padding=dilation, dilation=dilation),
            batch_norm(spatial_dims)(out_channels),
            nn.ReLU(inplace=True),
        )


class RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU-L), or its dilated form RSU-LF.

    ``RSU-L``: an input convolution ``in -> out``, a small U-Net of ``L - 1`` encoder convolutions
    (``L - 2`` max-poolings, ceil mode) with a dilation-2 convolution at the bottom and ``L - 1``
    decoder convolutions on concatenated skips, and a residual sum ``U(x_in) + x_in``.
    ``RSU-LF`` (``dilated=True``) replaces pooling by dilations ``1, 2, 4, ...`` (RSU-4F: 1, 2, 4 and
    8 at the bottom), so the resolution never changes.

    Shapes: ``[B, in, *S] -> [B, out, *S]`` for any ``S``; each decoder level is upsampled to its skip's
    exact size, so odd sizes work.
    """

    def __init__(
        self,
        height: int,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        dilated: bool = False,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if height < 2:
            raise ConfigError(f"RSU: height={height}; expected an integer >= 2")
        sd = spatial_dims
        self.dilated = dilated
        enc_dil = [2**i for i in range(height - 1)] if dilated else [1] * (height - 1)
        bottom_dil = 2 ** (height - 1) if dilated else 2
        self.conv_in = _ConvBNReLU(sd, in_channels, out_channels, 1)
        self.encoder = nn.ModuleList(
            [
                _ConvBNReLU(sd, out_channels if i == 0 else mid_channels, mid_channels, d)
                for i, d in enumerate(enc_dil)
            ]
        )
        self.bottom = _ConvBNReLU(sd, mid_channels, mid_channels, bottom_dil)
        dec_dil = enc_dil[::-1]
        self.decoder = nn.ModuleList(
            [
                _ConvBNReLU(sd, 2 * mid_channels, out_channels if i == len(dec_dil) - 1 else mid_channels, d)
                for i, d in enumerate(dec_dil)
            ]
        )
        self.pool = None if dilated else max_pool(sd)(2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        h = x_in
        skips = []
        for i, layer in enumerate(self.encoder):
            if i > 0 and self.pool is not None:
                h = self.pool(h)
            h = layer(h)
            skips.append(h)
        h = self.bottom(h)
        for layer, skip in zip(self.decoder, reversed(skips)):
            h = layer(torch.cat([resize_to(h, skip.shape[2:]), skip], dim=1))
        return h + x_in


# (height, dilated, in, mid, out); "in" of the first stage is the model's in_channels.
_U2NET_ENCODER = [(7, False, None, 32, 64), (6, False, 64, 32, 128), (5, False, 128, 64, 256),
                  (4, False, 256, 128, 512), (4, True, 512, 256, 512), (4, True, 512, 256, 512)]
_U2NET_DECODER = [(4, True, 1024, 256, 512), (4, False, 1024, 128, 256), (5, False, 512, 64, 128),
                  (6, False, 256, 32, 64), (7, False, 128, 16, 64)]
_SMALL_ENCODER = [(7, False, None, 16, 64), (6, False, 64, 16, 64), (5, False, 64, 16, 64),
                  (4, False, 64, 16, 64), (4, True, 64, 16, 64), (4, True, 64, 16, 64)]
_SMALL_DECODER = [(4, True, 128, 16, 64), (4, False, 128, 16, 64), (5, False, 128, 16, 64),
                  (6, False, 128, 16, 64), (7, False, 128, 16, 64)]


_EXAMPLE = ModelExample(
    kwargs={"spatial_dims": 2, "in_channels": 2, "out_channels": 1},
    input_shape=(2, 2, 33, 20),
    output_shape=(2, 1, 33, 20),
    violations=(
        Violation((1, 2, 32, 32), "expected batch >= 2 or a spatial size >= 33", training=True),
        Violation((2, 1, 33, 33), "expected [B, C, H, W] with C=2"),
    ),
)


@register("u2net", example=_EXAMPLE)
class U2Net(nn.Module):
    """U²-Net (Qin et al. 2020), full size: about 44.0 M parameters at 2 -> 1 channels in 2-D.

    Encoder stages RSU7(in,32,64), RSU6(64,32,128), RSU5(128,64,256), RSU4(256,128,512),
    RSU4F(512,256,512), RSU4F(512,256,512), with a 2× max-pooling (ceil mode) before stages 2–6.
    Decoder stages RSU4F(1024,256,512), RSU4(1024,128,256), RSU5(512,64,128), RSU6(256,32,64),
    RSU7(128,16,64) on ``[upsampled deeper feature, encoder skip]``. Six side outputs (3^d convolutions
    on the five decoder outputs and the sixth encoder stage), each upsampled to the input size, are
    fused by a 1^d convolution.

    Output (linear, no sigmoid): ``fused = Conv1x1([s_1..s_6])``, and with ``long_skip`` (default)
    ``y = x[:, :1] + fused`` and likewise ``s_i = x[:, :1] + side_i``, so that every output is an image
    estimate and deep supervision compares like with like.

    Args:
        spatial_dims: 2 (the paper's) or 3 (3^3 kernels; about three times the parameters).
        in_channels: input channels; channel 0 is the SPECT image (the others, e.g. CT, are guides).
        out_channels: output channels.
        long_skip: add input channel 0 to the outputs.
        zero_init_outputs: start the side and fusion convolutions at zero, so that with
            ``long_skip`` the untrained network returns its input channel 0 unchanged. A short
            training run then learns a correction of the low-count image instead of first undoing a
            random initial output (the bone SPECT study's start).

    Shapes: ``x [B, in, *S] -> y [B, out, *S]``; any ``S`` (upsampling matches each skip exactly).
    ``forward(x, return_sides=True)`` returns ``(y, [s_1, ..., s_6])``, each ``[B, out, *S]``,
    ``s_1`` the finest. In training mode BatchNorm needs more than one value per channel at the
    deepest stage, so with batch 1 keep ``S >= 33`` (the sixth stage then is at least 2 wide): the
    deepest maps are ``ceil(S / 32)``, and ``B · prod(ceil(S_i / 32)) < 2`` in training mode raises
    ``InputError``.
    """

    _encoder_config = _U2NET_ENCODER
    _decoder_config = _U2NET_DECODER

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 2,
        out_channels: int = 1,
        *,
        long_skip: bool = True,
        zero_init_outputs: bool = False,
    ):
        super().__init__()
        self.spatial_dims, self.in_channels, self.out_channels = check_network_args(
            type(self).__name__, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels
        )
        self.long_skip = bool(long_skip)
        sd = self.spatial_dims
        self.encoder = nn.ModuleList(
            [
                RSU(h, in_channels if cin is None else cin, mid, cout, dilated=dil, spatial_dims=sd)
                for h, dil, cin, mid, cout in self._encoder_config
            ]
        )
        self.decoder = nn.ModuleList(
            [
                RSU(h, cin, mid, cout, dilated=dil, spatial_dims=sd)
                for h, dil, cin, mid, cout in self._decoder_config
            ]
        )
        # Side i reads decoder output i (finest first) and, for i = 6, the deepest encoder stage.
        side_channels = [cfg[4] for cfg in reversed(self._decoder_config)] + [self._encoder_config[-1][4]]
        self.sides = nn.ModuleList([conv(sd)(c, out_channels, 3, padding=1) for c in side_channels])
        self.fuse = conv(sd)(len(side_channels) * out_channels, out_channels, 1)
        self.pool = max_pool(sd)(2, stride=2, ceil_mode=True)
        if zero_init_outputs:
            for layer in [*self.sides, self.fuse]:
                nn.init.zeros_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, return_sides: bool = False):
        owner = type(self).__name__
        check_input(x, self.in_channels, self.spatial_dims, owner)
        size = x.shape[2:]
        # Stage i (0-based) runs at S / 2^i and its RSU pools h - 2 more times unless dilated.
        halvings = max(i + (0 if dil else h - 2) for i, (h, dil, *_) in enumerate(self._encoder_config))
        deepest = [-(-s // 2**halvings) for s in size]  # ceil-mode pooling composes to one ceil
        check_norm_statistics(x, deepest, self.training, owner, "batch >= 2 or a spatial size >= 33")
        h = x
        enc = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = self.pool(h)
            h = stage(h)
            enc.append(h)
        dec = []
        d = enc[-1]
        for stage, skip in zip(self.decoder, reversed(enc[:-1])):
            d = stage(torch.cat([resize_to(d, skip.shape[2:]), skip], dim=1))
            dec.append(d)
        features: Sequence[torch.Tensor] = list(reversed(dec)) + [enc[-1]]
        sides = [resize_to(side(f), size) for side, f in zip(self.sides, features)]
        fused = self.fuse(torch.cat(sides, dim=1))
        if self.long_skip:
            fused = long_skip(x, fused)
            sides = [long_skip(x, s) for s in sides]
        return (fused, sides) if return_sides else fused


@register("u2net_small", example=_EXAMPLE)
class U2NetSmall(U2Net):
    """The small U²-Net (the paper's U²-Net†): every stage mid 16 / out 64; about 1.13 M parameters.

    Same layout, shapes and options as :class:`U2Net`.
    """

    _encoder_config = _SMALL_ENCODER
    _decoder_config = _SMALL_DECODER
