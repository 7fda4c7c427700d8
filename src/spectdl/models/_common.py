"""Small helpers shared by the model files: N-D layer lookup and input checks."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spectdl.errors import ConfigError, InputError

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


def check_spatial_dims(spatial_dims: int, allowed: Sequence[int] = (2, 3), owner: str = "model") -> int:
    # bool is an int and 2.0 == 2: neither is a number of dimensions a config should hold.
    if not isinstance(spatial_dims, int) or isinstance(spatial_dims, bool) or spatial_dims not in allowed:
        raise ConfigError(f"{owner}: spatial_dims={spatial_dims!r}; expected one of {tuple(allowed)}")
    return int(spatial_dims)


def check_channels(value: int, name: str, owner: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{owner}: {name}={value!r}; expected a positive integer")
    return value


def check_network_args(
    owner: str,
    *,
    in_channels: int,
    out_channels: int,
    spatial_dims: int | None = None,
    allowed_dims: Sequence[int] = (2, 3),
    **positive: int,
) -> tuple[int | None, int, int]:
    """The constructor checks every network shares; returns ``(spatial_dims, in_channels, out_channels)``.

    Raises ``ConfigError`` naming ``owner``, the argument, the value found and the value expected
    unless ``spatial_dims`` (when given; ``None`` for a fixed-dimension network, returned as ``None``)
    is one of ``allowed_dims`` and ``in_channels``, ``out_channels`` and every keyword of
    ``positive`` (e.g. ``features=64``, ``growth=32``) are positive integers.
    """
    sd = None if spatial_dims is None else check_spatial_dims(spatial_dims, allowed_dims, owner)
    cin = check_channels(in_channels, "in_channels", owner)
    cout = check_channels(out_channels, "out_channels", owner)
    for name, value in positive.items():
        check_channels(value, name, owner)
    return sd, cin, cout


def conv(spatial_dims: int):
    return _CONV[spatial_dims]


def conv_transpose(spatial_dims: int):
    return _CONVT[spatial_dims]


def batch_norm(spatial_dims: int):
    return _BN[spatial_dims]


def max_pool(spatial_dims: int):
    return _MAXPOOL[spatial_dims]


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Linear interpolation of ``x`` ``[B, C, *spatial]`` to exactly ``size`` (no-op when equal)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=_INTERP[len(size)], align_corners=False)


def check_input(
    x: torch.Tensor,
    in_channels: int,
    spatial_dims: int,
    owner: str,
    name: str = "x",
    divisor: int = 1,
    min_size: int = 1,
) -> None:
    """Raise ``InputError`` unless ``x`` is ``[B, in_channels, *spatial]`` with the expected sizes."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{owner}: {name} must be a torch.Tensor, found {type(x).__name__}")
    if x.dim() != spatial_dims + 2 or x.shape[1] != in_channels:
        layout = "[B, C, H, W]" if spatial_dims == 2 else "[B, C, X, Y, Z]"
        raise InputError(
            f"{owner}: {name} has shape {tuple(x.shape)}; expected {layout} with C={in_channels}"
        )
    sizes = tuple(x.shape[2:])
    if any(s % divisor for s in sizes) or any(s < min_size for s in sizes):
        raise InputError(
            f"{owner}: {name} spatial size {sizes}; expected each size divisible by {divisor}"
            f" and at least {min_size}"
        )


def check_batch_for_norm(x: torch.Tensor, training: bool, owner: str) -> None:
    # BatchNorm on a 1x1 feature map needs two samples to estimate a variance in training.
    if training and x.shape[0] < 2:
        raise InputError(
            f"{owner}: batch size {x.shape[0]} in training mode; expected at least 2 because a "
            "BatchNorm acts on a 1x1 feature map (use model.eval() for single samples)"
        )


def check_norm_statistics(
    x: torch.Tensor, deepest: Sequence[int], training: bool, owner: str, expected: str
) -> None:
    """Raise ``InputError`` when, in training mode, the deepest BatchNorm would see one value per
    channel: ``B · prod(deepest) < 2`` with ``deepest`` the spatial size of the deepest feature map.

    ``expected`` says in words what input would work (e.g. ``"batch >= 2 or a size >= 33"``).
    """
    # torch's own error ("Expected more than 1 value per channel") names no layer and no input size.
    values = int(x.shape[0]) * math.prod(int(s) for s in deepest)
    if training and values < 2:
        raise InputError(
            f"{owner}: x has shape {tuple(x.shape)} in training mode, so the deepest BatchNorm acts on a "
            f"{tuple(int(s) for s in deepest)} map with one value per channel; expected {expected} "
            "(or model.eval())"
        )


def long_skip(x: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """``prediction + x[:, :1]``: the SPECT channel (channel 0) broadcast over the output channels."""
    return prediction + x[:, :1]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
