"""pix2pix: a U-Net generator and a PatchGAN discriminator, for projection-space low-dose
myocardial perfusion SPECT.

Isola P., Zhu J.-Y., Zhou T., Efros A. A. "Image-to-image translation with conditional adversarial
networks." CVPR 2017, pp. 5967–5976.

Layer arrangement of the generator (the one that gives 29.2 M parameters at 1 -> 1 channels)
------------------------------------------------------------------------------------------------
All kernels 4×4, stride 2, padding 1 (each encoder block halves the size, each decoder block
doubles it). Encoder blocks ``E1..E6`` have 64, 128, 256, 512, 512, 512 filters; decoder blocks
``D1..D5`` have 512, 512, 256, 128, 64 filters and ``D6`` has ``out_channels``. The input of ``D1`` is
``E6``; the input of ``D{k+1}`` is ``[D_k, E_{6-k}]`` concatenated, so ``D2`` and ``D3`` read 1024
channels, ``D4`` 512, ``D5`` 256 and ``D6`` 128. Weights (4·4·C_in·C_out each)::

    E: 16·(1·64 + 64·128 + 128·256 + 256·512 + 512·512 + 512·512)       = 11,142,144
    D: 16·(512·512 + 1024·512 + 1024·256 + 512·128 + 256·64 + 128·1)    = 18,089,984
    total weights                                                        = 29,232,128

plus 3,457 biases (every convolution has one) and 2·(128+256+512) + 2·(512+512+256+128+64) = 4,736
BatchNorm affine parameters: 29,240,321 in all (29.2 M, +0.14 %). The spatial size must be divisible
by 2^6 = 64 (64×64 projections in the study: ``E6`` is then 1×1).
"""

from __future__ import annotations

import math

from typing import Sequence

import torch
from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.models._common import (
    batch_norm,
    check_channels,
    check_input,
    check_network_args,
    conv,
    conv_transpose,
)
from spectdl.models.registry import ModelExample, Violation, register


@register(
    "pix2pix_generator",
    example=ModelExample(
        kwargs={"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "features": (4, 8, 8)},
        input_shape=(2, 1, 16, 8),
        output_shape=(2, 1, 16, 8),
        violations=(Violation((2, 1, 16, 12), "expected each size divisible by 8"),),
    ),
)
class Pix2PixGenerator(nn.Module):
    """U-Net generator of pix2pix, as used for low-dose myocardial perfusion projections.

    Encoder block ``k``: Conv 4^d / stride 2 -> [BatchNorm for blocks in ``encoder_norm``] ->
    LeakyReLU(0.2). Decoder block ``k``: ConvTranspose 4^d / stride 2 -> BatchNorm -> ReLU (dropout
    after the first), then concatenation with the mirrored encoder output; the last decoder block
    has ``out_channels`` filters and ends in a sigmoid (the paper's; ``final_activation=None`` gives a
    linear output). See the module docstring for the parameter arithmetic (29.24 M at 1 -> 1).

    Args:
        spatial_dims: 2 (the paper's) or 3.
        in_channels, out_channels: image channels.
        features: encoder filter counts; the depth is ``len(features)``, so the spatial size must be
            divisible by ``2**len(features)`` (64 for the default six blocks).
        encoder_norm: 1-based encoder blocks with BatchNorm (the study's: 2, 3 and 4).
        dropout: dropout probability after the first decoder block.
        final_activation: ``"sigmoid"`` (default, the paper's) or ``None``.
        output_bias: initial bias of the last layer, so that an untrained network outputs about
            ``sigmoid(output_bias)``; 0 (the default) starts at 0.5. A study whose normalised targets
            sit near ``m`` starts faster from ``log(m / (1 − m))`` (Adam moves a bias by about the
            learning rate per step, so climbing from 0.5 down to 0.05 takes thousands of steps).

    Shapes: ``[B, in, *S] -> [B, out, *S]``, each ``S_i`` divisible by ``2**len(features)``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        features: Sequence[int] = (64, 128, 256, 512, 512, 512),
        encoder_norm: Sequence[int] = (2, 3, 4),
        dropout: float = 0.5,
        final_activation: str | None = "sigmoid",
        output_bias: float = 0.0,
    ):
        super().__init__()
        owner = type(self).__name__
        if isinstance(output_bias, bool) or not isinstance(output_bias, (int, float)) or not math.isfinite(output_bias):
            raise ConfigError(f"{owner}: output_bias={output_bias!r}; expected a finite number")
        sd, self.in_channels, self.out_channels = check_network_args(
            owner, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels
        )
        self.spatial_dims = sd
        features = [check_channels(int(f), "features", owner) for f in features]
        if len(features) < 1:
            raise ConfigError(f"{owner}: features={features}; expected at least one block")
        if final_activation not in ("sigmoid", None):
            raise ConfigError(f"{owner}: final_activation={final_activation!r}; expected 'sigmoid' or None")
        self.depth = len(features)
        self.encoder = nn.ModuleList()
        prev = in_channels
        for k, f in enumerate(features, start=1):
            layers: list[nn.Module] = [conv(sd)(prev, f, 4, stride=2, padding=1)]
            if k in encoder_norm:
                layers.append(batch_norm(sd)(f))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            self.encoder.append(nn.Sequential(*layers))
            prev = f
        # Decoder k mirrors encoder depth-k and outputs the filter count of encoder depth-k-1.
        dec_out = list(reversed(features[:-1]))
        self.decoder = nn.ModuleList()
        for k, f in enumerate(dec_out):
            cin = features[-1] if k == 0 else 2 * dec_out[k - 1]
            layers = [
                conv_transpose(sd)(cin, f, 4, stride=2, padding=1),
                batch_norm(sd)(f),
                nn.ReLU(inplace=True),
            ]
            if k == 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))
        last_in = 2 * dec_out[-1] if dec_out else features[-1]
        head: list[nn.Module] = [conv_transpose(sd)(last_in, out_channels, 4, stride=2, padding=1)]
        if output_bias:
            nn.init.constant_(head[0].bias, float(output_bias))
        if final_activation == "sigmoid":
            head.append(nn.Sigmoid())
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims, type(self).__name__, divisor=2**self.depth)
        skips = []
        h = x
        for block in self.encoder:
            h = block(h)
            skips.append(h)
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            h = torch.cat([block(h), skip], dim=1)
        return self.head(h)


@register(
    "patch_discriminator",
    example=ModelExample(
        kwargs={"spatial_dims": 2, "in_channels": 2, "out_channels": 1, "features": 2, "logits": True},
        input_shape=(2, 2, 16, 24),
        output_shape=(2, 1, 1, 2),
        violations=(
            Violation((2, 2, 16, 20), "expected each size divisible by 8 and at least 16"),
            Violation((2, 2, 8, 16), "expected each size divisible by 8 and at least 16"),
        ),
    ),
)
class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator of pix2pix on the concatenated (condition, image) pair.

    Four blocks Conv 4^d (padding 1) -> BatchNorm -> LeakyReLU(0.2) with ``features, 2·features,
    4·features, 8·features`` filters (48, 96, 192, 384) and strides 2, 2, 2, 1; then a 1^d
    convolution to ``out_channels``, BatchNorm and a sigmoid. ``logits=True`` drops the sigmoid (pair it
    with ``BCEWithLogitsLoss``; this is the numerically stable reference option).

    Shapes: ``[B, in, *S] -> [B, out, *P]`` with ``P_i = S_i / 8 - 1`` (a 64×64 pair gives a 7×7 map
    of patch scores, each with a 46×46 receptive field); ``S_i`` divisible by 8 and at least 16.
    ``forward(x, y)`` concatenates ``x`` and ``y`` along channels first.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the concatenated pair (2 for single-channel condition and image).
        out_channels: score channels (1).
        features: filters of the first block (48 in the study).
        logits: return logits instead of probabilities.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 2,
        out_channels: int = 1,
        *,
        features: int = 48,
        logits: bool = False,
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
        self.logits = bool(logits)
        layers: list[nn.Module] = []
        prev = in_channels
        for k, stride in enumerate((2, 2, 2, 1)):
            f = features * 2**k
            layers += [
                conv(sd)(prev, f, 4, stride=stride, padding=1),
                batch_norm(sd)(f),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            prev = f
        layers += [conv(sd)(prev, out_channels, 1), batch_norm(sd)(out_channels)]
        if not self.logits:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
                found = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise InputError(
                    f"PatchDiscriminator: y has shape {found}; "
                    f"expected the batch and spatial sizes of x {tuple(x.shape)}"
                )
            x = torch.cat([x, y], dim=1)
        check_input(x, self.in_channels, self.spatial_dims, type(self).__name__, divisor=8, min_size=16)
        return self.net(x)
