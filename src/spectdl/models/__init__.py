"""Model zoo: the networks of the published SPECT deep-learning studies, by name.

``build(name, **kwargs)`` constructs a registered model and ``available()`` lists the names. The
classes are importable from here (``from spectdl.models import U2Net``); each family lives in its own
module and is imported on first use, so ``import spectdl.models.backbones`` stays light.
"""

from __future__ import annotations

import importlib

from spectdl.models.registry import available, build, register

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

__all__ = ["available", "build", "register", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"spectdl.models.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spectdl.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
