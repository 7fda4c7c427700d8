"""Dynamic 3-D convolution and the densely connected dynamic U-Net (DC-Dy), for cardiac SPECT
partial-volume correction.

Xie H., Liu Z., Shi L., et al., Liu C. "Segmentation-free PVC for cardiac SPECT using a
densely-connected multi-dimensional dynamic network." IEEE Transactions on Medical Imaging
42(5):1325–1336 (2023). The multi-dimensional attention follows omni-dimensional dynamic convolution
(Li C., Zhou A., Yao A., ICLR 2022), reduced here to one kernel and three attentions.

Axis convention. spectdl volumes are ``[B, C, X, Y, Z]`` with z axial. The paper's 50×70×70 volumes
are (z, y, x), i.e. ``X = Y = 70`` and ``Z = 50`` here, and its "1×3×3" kernel is 1 along z:
``kernel_size = (3, 3, 1)`` here. Without padding it shrinks X and Y by 2 and keeps Z. The dense
blocks' "5×3×3" kernels are ``(3, 3, 5)`` here, padded to keep the size.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.models._common import check_channels, check_input, check_network_args, long_skip, resize_to
from spectdl.models.registry import ModelExample, Violation, register


def _triple(value, name: str, owner: str) -> tuple[int, int, int]:
    t = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(t) != 3 or any(not isinstance(v, int) or v < 0 for v in t):
        raise ConfigError(f"{owner}: {name}={value!r}; expected an int or 3 non-negative ints (x, y, z)")
    return t  # type: ignore[return-value]


def _attention_mlp(in_features: int, n: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, 2 * n), nn.ReLU(inplace=True), nn.Linear(2 * n, n), nn.Sigmoid()
    )


@register(
    "dynconv3d",
    example=ModelExample(
        kwargs={"in_channels": 2, "out_channels": 3, "kernel_size": (3, 3, 1), "padding": (1, 0, 0)},
        input_shape=(2, 2, 4, 5, 3),
        output_shape=(2, 3, 4, 3, 3),
        violations=(
            Violation((2, 2, 4, 2, 3), "expected each size + 2·padding >= kernel_size (3, 3, 1)"),
            Violation((2, 3, 4, 5, 3), "expected [B, C, X, Y, Z] with C=2"),
        ),
    ),
)
class DynConv3d(nn.Module):
    """3-D dynamic convolution with spatial, input-channel and output-channel attention.

    For sample ``b`` the kernel is ``W_b = W ⊙ (a_spa[b] + a_in[b] + a_out[b]) / 3``, each attention
    broadcast along its own axis of ``W`` (kernel taps, input channels, output channels). Each
    attention is ``sigmoid(FC_n(ReLU(FC_2n(GAP(z)))))`` of the global average pool of the attention
    input ``z`` (by default ``x`` itself), with ``n = kx·ky·kz`` taps, ``C_in`` or ``C_out``.
    All attentions equal to 1 give the static convolution with ``W``.

    Args:
        in_channels, out_channels: ``C_in``, ``C_out``.
        kernel_size: int or ``(kx, ky, kz)``.
        padding, stride: as in ``torch.nn.Conv3d`` (per axis or one int).
        bias: a static bias.
        attention_channels: channels of the attention input ``z`` (default ``in_channels``).

    Shapes: ``x [B, C_in, X, Y, Z] -> [B, C_out, X', Y', Z']`` as ``nn.Conv3d``
    (``X' = floor((X + 2·p_x - k_x) / s_x) + 1``, so ``X + 2·p_x >= k_x`` or ``InputError``);
    ``z [B, C_att, ...]`` of any spatial size.
    """

    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size=3,
        padding=0,
        stride=1,
        bias: bool = True,
        attention_channels: int | None = None,
    ):
        super().__init__()
        owner = type(self).__name__
        _, self.in_channels, self.out_channels = check_network_args(
            owner, in_channels=in_channels, out_channels=out_channels
        )
        self.kernel_size = _triple(kernel_size, "kernel_size", owner)
        self.padding = _triple(padding, "padding", owner)
        self.stride = _triple(stride, "stride", owner)
        self.attention_channels = check_channels(
            in_channels if attention_channels is None else attention_channels, "attention_channels", owner
        )
        shape = (in_channels, out_channels) if self.transposed else (out_channels, in_channels)
        self.weight = nn.Parameter(torch.empty(*shape, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        taps = math.prod(self.kernel_size)
        self.att_spatial = _attention_mlp(self.attention_channels, taps)
        self.att_in = _attention_mlp(self.attention_channels, in_channels)
        self.att_out = _attention_mlp(self.attention_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The initialisation of torch.nn.Conv3d, so the static and dynamic networks start alike.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def attention(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a_spa [B, kx, ky, kz], a_in [B, C_in], a_out [B, C_out])`` from the attention input ``z``."""
        if not isinstance(z, torch.Tensor) or z.dim() != 5 or z.shape[1] != self.attention_channels:
            found = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(
                f"{type(self).__name__}: attention input has shape {found}; "
                f"expected [B, {self.attention_channels}, X, Y, Z]"
            )
        g = z.mean(dim=(2, 3, 4))
        a_spa = self.att_spatial(g).reshape(-1, *self.kernel_size)
        return a_spa, self.att_in(g), self.att_out(g)

    def kernel(self, a_spa: torch.Tensor, a_in: torch.Tensor, a_out: torch.Tensor) -> torch.Tensor:
        """Per-sample kernels ``W ⊙ (a_spa + a_in + a_out) / 3``, shape ``[B, *W.shape]``."""
        b = a_spa.shape[0]
        spa = a_spa.reshape(b, 1, 1, *self.kernel_size)
        a_in = a_in.reshape(b, -1, 1, 1, 1, 1)
        a_out = a_out.reshape(b, -1, 1, 1, 1, 1)
        # W is (C_out, C_in, k) for a convolution and (C_in, C_out, k) for a transposed one.
        first, second = (a_in, a_out) if self.transposed else (a_out, a_in)
        return self.weight * (spa + first + second.transpose(1, 2)) / 3

    def conv(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Convolve sample ``b`` of ``x`` with ``kernels[b]`` in one grouped call (groups = B)."""
        b = x.shape[0]
        bias = None if self.bias is None else self.bias.repeat(b)
        xs = x.reshape(1, b * x.shape[1], *x.shape[2:])
        w = kernels.reshape(b * kernels.shape[1], *kernels.shape[2:])
        if self.transposed:
            y = F.conv_transpose3d(xs, w, bias, stride=self.stride, padding=self.padding, groups=b)
        else:
            y = F.conv3d(xs, w, bias, stride=self.stride, padding=self.padding, groups=b)
        return y.reshape(b, self.out_channels, *y.shape[2:])

    def forward(self, x: torch.Tensor, attention_input: torch.Tensor | None = None) -> torch.Tensor:
        owner = type(self).__name__
        check_input(x, self.in_channels, 3, owner)
        if not self.transposed and any(
            s + 2 * p < k for s, p, k in zip(x.shape[2:], self.padding, self.kernel_size)
        ):
            raise InputError(
                f"{owner}: x spatial size {tuple(x.shape[2:])} with padding {self.padding}; "
                f"expected each size + 2·padding >= kernel_size {self.kernel_size}"
            )
        attention = self.attention(x if attention_input is None else attention_input)
        if attention[0].shape[0] != x.shape[0]:
            raise InputError(
                f"{type(self).__name__}: attention input batch {attention[0].shape[0]}; "
                f"expected x's batch {x.shape[0]}"
            )
        return self.conv(x, self.kernel(*attention))


@register(
    "dynconvtranspose3d",
    example=ModelExample(
        kwargs={"in_channels": 2, "out_channels": 3, "kernel_size": (3, 3, 1)},
        input_shape=(2, 2, 4, 5, 3),
        output_shape=(2, 3, 6, 7, 3),
        violations=(Violation((2, 2, 4, 5), "expected [B, C, X, Y, Z] with C=2"),),
    ),
)
class DynConvTranspose3d(DynConv3d):
    """Transposed form of :class:`DynConv3d`: ``W`` is ``(C_in, C_out, kx, ky, kz)`` as in
    ``torch.nn.ConvTranspose3d``, with the same per-sample attention. Shapes as ``nn.ConvTranspose3d``
    (``X' = (X - 1)·s_x - 2·p_x + k_x``).
    """

    transposed = True


class DenseBlock3d(nn.Module):
    """``layers`` static convolutions (``features`` filters, ReLU, size-preserving padding), layer
    ``k`` reading the concatenation of the block input and layers ``1..k-1``; returns the last layer.
    """

    def __init__(self, features: int, layers: int = 3, kernel_size: Sequence[int] = (3, 3, 5)):
        super().__init__()
        pad = tuple(k // 2 for k in kernel_size)
        self.convs = nn.ModuleList(
            [nn.Conv3d(features * (k + 1), features, tuple(kernel_size), padding=pad) for k in range(layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.convs:
            h = F.relu(layer(torch.cat(feats, dim=1)))
            feats.append(h)
        return h


_MODES = ("static", "dynamic", "dc-dynamic")


class _Block(nn.Module):
    """A (dynamic) convolution or transposed convolution, ReLU, then a dense block."""

    def __init__(
        self, mode: str, transposed: bool, in_channels: int, features: int, kernel_size, dense_layers: int
    ):
        super().__init__()
        self.mode = mode
        if mode == "static":
            cls = nn.ConvTranspose3d if transposed else nn.Conv3d
            self.conv = cls(in_channels, features, kernel_size)
        else:
            cls = DynConvTranspose3d if transposed else DynConv3d
            self.conv = cls(in_channels, features, kernel_size=kernel_size)
        self.dense = DenseBlock3d(features, dense_layers)

    def forward(self, x: torch.Tensor, running: torch.Tensor | None):
        if self.mode == "static":
            h = self.conv(x)
        else:
            z = x
            if self.mode == "dc-dynamic" and running is not None and running.shape[1] == x.shape[1]:
                z = 0.5 * (x + resize_to(running, x.shape[2:]))
            running = z
            h = self.conv(x, attention_input=z)
        return self.dense(F.relu(h)), running


@register(
    "dynunet3d",
    example=ModelExample(
        kwargs={"in_channels": 2, "out_channels": 1, "mode": "dc-dynamic", "features": 2, "dense_layers": 1},
        input_shape=(2, 2, 9, 10, 3),
        output_shape=(2, 1, 9, 10, 3),
        violations=(Violation((2, 2, 8, 12, 3), "expected X, Y >= 9"),),
    ),
)
class DynUNet3d(nn.Module):
    """U-Net-like 3-D network of Xie et al. (2023) with static, dynamic or densely connected dynamic
    (DC-Dy) convolutions.

    Four down blocks and four up blocks. A down block is a convolution with kernel ``(3, 3, 1)`` (the
    paper's 1×3×3, acting in-plane only) and no padding, ReLU, then a dense block of ``(3, 3, 5)``
    convolutions; an up block is the same with a transposed convolution. Each down block removes 2
    voxels along X and Y and each up block restores them, so 70×70×50 -> 62×62×50 -> 70×70×50; up block
    ``j > 1`` reads the previous up output plus (added, not concatenated, so every layer keeps
    ``features`` = 32 channels) the down output of the same size. A 1×1×1 convolution makes the linear
    output; ``long_skip`` adds input channel 0.

    Modes: ``"static"`` (plain convolutions), ``"dynamic"`` (each block's convolution is a
    :class:`DynConv3d`/:class:`DynConvTranspose3d` whose attention reads its own input ``x_{l-1}``), and
    ``"dc-dynamic"``: the attention of block ``l`` reads ``r_l = ½(x_{l-1} + resize(r_{l-1}))``, a
    running combination of all earlier blocks' inputs (weights ½, ¼, ...), trilinearly resized to
    ``x_{l-1}``; ``r`` restarts when the channel count changes (the image input of block 1).
    DC-dynamic has exactly the parameters of dynamic. Weights are Xavier-uniform and biases 0, as in
    the paper (:meth:`reset_parameters`).

    Args:
        in_channels: 1 (SPECT) or 2 (SPECT and CT).
        out_channels: 1.
        mode: ``"static"``, ``"dynamic"`` or ``"dc-dynamic"``.
        features: filters of every layer (32).
        dense_layers: convolutions per dense block (3).
        long_skip: output = input channel 0 + prediction.

    Shapes: ``[B, in, X, Y, Z] -> [B, out, X, Y, Z]`` with ``X, Y >= 9`` (any Z).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        mode: str = "dc-dynamic",
        features: int = 32,
        dense_layers: int = 3,
        long_skip: bool = False,
    ):
        super().__init__()
        owner = type(self).__name__
        if mode not in _MODES:
            raise ConfigError(f"{owner}: mode={mode!r}; expected one of {_MODES}")
        _, self.in_channels, self.out_channels = check_network_args(
            owner,
            in_channels=in_channels,
            out_channels=out_channels,
            features=features,
            dense_layers=dense_layers,
        )
        self.mode = mode
        self.long_skip = bool(long_skip)
        k = (3, 3, 1)
        self.down = nn.ModuleList(
            [
                _Block(mode, False, in_channels if i == 0 else features, features, k, dense_layers)
                for i in range(4)
            ]
        )
        self.up = nn.ModuleList([_Block(mode, True, features, features, k, dense_layers) for _ in range(4)])
        self.head = nn.Conv3d(features, out_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: every convolution, transposed convolution and linear layer
        (the attentions' too) Xavier-uniform, ``U(±sqrt(6 / (fan_in + fan_out)))``, biases 0."""
        for m in self.modules():
            weight = getattr(m, "weight", None)
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.Linear, DynConv3d)) and weight is not None:
                nn.init.xavier_uniform_(weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, 3, type(self).__name__, min_size=1)
        if x.shape[2] < 9 or x.shape[3] < 9:
            raise InputError(
                f"DynUNet3d: x spatial size {tuple(x.shape[2:])}; expected X, Y >= 9 "
                "(four valid 3×3 in-plane layers)"
            )
        h, running = x, None
        downs = []
        for block in self.down:
            h, running = block(h, running)
            downs.append(h)
        for j, block in enumerate(self.up):
            if j > 0:
                h = h + downs[len(downs) - 1 - j]
            h, running = block(h, running)
        out = self.head(h)
        return long_skip(x, out) if self.long_skip else out
