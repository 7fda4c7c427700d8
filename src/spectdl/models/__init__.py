"""Model zoo: the networks of the published SPECT deep-learning studies, by name.

``build(name, **kwargs)`` constructs a registered model, ``available()`` lists the names and
``example(name)`` gives the tiny instance the contract tests run. Every N-D network takes
``(spatial_dims, in_channels, out_channels, *, ...)`` and every fixed-dimension one
``(in_channels, out_channels, *, ...)``, the rest keyword-only (MONAI's order). The
classes are importable from here (``from spectdl.models import U2Net``); each family lives in its own
module and is imported on first use, so ``import spectdl.models`` stays light. (The frozen
feature networks of the perceptual losses and metrics are :mod:`spectdl.metrics.backbones`.)
"""

from __future__ import annotations

import importlib

from spectdl.models.registry import ModelExample, Violation, available, build, example, register

_LAZY = {
    "U2Net": "u2net",
    "U2NetSmall": "u2net",
    "Pix2PixGenerator": "pix2pix",
    "PatchDiscriminator": "pix2pix",
    "RRDBNet": "rrdbnet",
    "VGGDiscriminator": "rrdbnet",
    "SPECTnetEncoder": "spectnet",
    "SPECTnetDecoder": "spectnet",
    "SPECTnet": "spectnet",
    "wrap_pad_sinogram": "spectnet",
    "DynConv3d": "dynconv",
    "DynConvTranspose3d": "dynconv",
    "DynUNet3d": "dynconv",
    "EDSR": "edsr",
    "RCAN": "rcan",
    "UNet": "unet",
    "count_parameters": "_common",
}

__all__ = ["ModelExample", "Violation", "available", "build", "example", "register", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"spectdl.models.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spectdl.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
