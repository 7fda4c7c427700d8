"""Frozen ImageNet feature networks for perceptual losses and metrics (LPIPS, FID).

The modules are written here as plain ``nn.Module`` s whose parameter names equal those of the
usual published checkpoints, so a weights file the user already has loads as it is:

=====================  ==========================================  ==================================
class                  parameter names                             published file (convert nothing)
=====================  ==========================================  ==================================
``VGGFeatures``        ``features.<i>.weight/bias``                torchvision ``vgg16-397923af.pth``,
                                                                   ``vgg19-dcbb9e9d.pth``
``AlexNetFeatures``    ``features.<i>.weight/bias``                torchvision ``alexnet-owt-7be5be79.pth``
``InceptionV3Features`` ``Conv2d_1a_3x3.conv.weight``, ``…bn.*``,   pytorch-fid
                       ``Mixed_5b.branch1x1.conv.weight``, …       ``pt_inception-2015-12-05-6726825d.pth``
                                                                   (or torchvision
                                                                   ``inception_v3_google-0cc3c7bd.pth``
                                                                   with ``fid_variant=False``)
=====================  ==========================================  ==================================

Classifier keys (``classifier.*``, ``fc.*``, ``AuxLogits.*``) in a file are ignored. Nothing is
downloaded at run time: ``weights_path`` is a local ``.pth``/``.pt`` (a ``state_dict``) or
``.safetensors`` file. With ``weights_path=None`` the network is randomly initialised from
``generator`` (useful for tests and for training from scratch; not a meaningful perceptual
feature space). The input of every network is a 3-channel image already scaled to the
network's own input range; the metrics in :mod:`spectdl.metrics` do that scaling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from spectdl.errors import InputError

__all__ = [
    "AlexNetFeatures",
    "InceptionV3Features",
    "PlanarFeatures",
    "PooledFeatures",
    "load_planar_features",
    "VGGFeatures",
    "WEIGHT_FILES",
    "alexnet_features",
    "load_state_dict_file",
    "vgg16_features",
    "vgg19_features",
]

# How to obtain each weights file; quoted in the error raised when a file is missing.
WEIGHT_FILES: dict[str, str] = {
    "vgg16": (
        "torchvision's VGG16 ImageNet weights 'vgg16-397923af.pth' "
        "(https://download.pytorch.org/models/vgg16-397923af.pth). On a machine with torchvision: "
        "torch.save(torchvision.models.vgg16(weights='IMAGENET1K_V1').state_dict(), 'vgg16.pth')"
    ),
    "vgg19": (
        "torchvision's VGG19 ImageNet weights 'vgg19-dcbb9e9d.pth' "
        "(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth). On a machine with torchvision: "
        "torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), 'vgg19.pth')"
    ),
    "alexnet": (
        "torchvision's AlexNet ImageNet weights 'alexnet-owt-7be5be79.pth' "
        "(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth). On a machine with "
        "torchvision: torch.save(torchvision.models.alexnet(weights='IMAGENET1K_V1').state_dict(), "
        "'alexnet.pth')"
    ),
    "inception_fid": (
        "the FID Inception-v3 weights ported from TensorFlow by pytorch-fid, "
        "'pt_inception-2015-12-05-6726825d.pth' (https://github.com/mseitzer/pytorch-fid/releases/"
        "download/fid_weights/pt_inception-2015-12-05-6726825d.pth); use the file as downloaded"
    ),
    "inception_torchvision": (
        "torchvision's Inception-v3 weights 'inception_v3_google-0cc3c7bd.pth' "
        "(https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth); note that FID "
        "scores comparable with the literature need the pytorch-fid file instead"
    ),
}

_IGNORED_PREFIXES = ("classifier.", "fc.", "AuxLogits.")
_META = torch.device("meta")


def load_state_dict_file(weights_path, what: str) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` from a local ``.pth``/``.pt``/``.safetensors`` file.

    Args:
        weights_path: the file.
        what: a key of :data:`WEIGHT_FILES` (or free text) used in the error message.

    Raises:
        InputError: when the path is ``None`` or does not exist, with a recipe to obtain the file.
    """
    recipe = WEIGHT_FILES.get(what, what)
    if weights_path is None:
        raise InputError(f"weights_path: no weights file was given for {what}; expected a local copy of "
                         f"{recipe}")
    path = Path(weights_path)
    if not path.is_file():
        raise InputError(f"weights_path: file {str(path)!r} does not exist; expected a local copy of "
                         f"{recipe}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"weights_path: {str(path)!r} holds a {type(state).__name__}; expected a state_dict")
    return state


def _load_into(module: nn.Module, weights_path, what: str) -> None:
    state = load_state_dict_file(weights_path, what)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = module.state_dict()
    kept = {k: v for k, v in state.items() if k in own}
    unexpected = [k for k in state if k not in own and not k.startswith(_IGNORED_PREFIXES)
                  and not k.endswith("num_batches_tracked")]
    missing = [k for k in own if k not in kept and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise InputError(
            f"weights_path: {str(weights_path)!r} does not fit {type(module).__name__} ({what}); "
            f"missing keys {missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected keys "
            f"{unexpected[:5]}{'…' if len(unexpected) > 5 else ''}; expected {WEIGHT_FILES.get(what, what)}"
        )
    for k, v in kept.items():
        if v.shape != own[k].shape:
            raise InputError(
                f"weights_path: {k!r} has shape {tuple(v.shape)} in {str(weights_path)!r}; "
                f"expected {tuple(own[k].shape)}"
            )
    module.load_state_dict(kept, strict=False)


def _random_init(module: nn.Module, generator: torch.Generator | None) -> None:
    """He-normal convolutions, unit BN, zero biases, drawn from ``generator`` only."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                w = torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype)
                m.weight.copy_(w * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.num_batches_tracked.zero_()


def _materialise(module: nn.Module, weights_path, what: str, generator, requires_grad: bool) -> None:
    # Layers are built on the meta device, so torch's default initialisation (slow for 20 M
    # weights, and drawn from the global RNG) never runs; every value is then set here.
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype), p.requires_grad)
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = torch.empty(b.shape, dtype=b.dtype)
    if weights_path is None:
        _random_init(module, generator)
    else:
        for name, buf in module.named_buffers():
            if name.endswith("num_batches_tracked"):
                buf.zero_()
        _load_into(module, weights_path, what)
    if not requires_grad:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)


def _check_rgb(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name}: expected a [B, 3, H, W] tensor, found {found}")


# ---------------------------------------------------------------- VGG

_VGG_BLOCKS: dict[str, tuple[int, ...]] = {
    # number of 3x3 convolutions in each of the five blocks
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_VGG_WIDTHS = (64, 128, 256, 512, 512)


class VGGFeatures(nn.Module):
    """The convolutional part of VGG16/VGG19 (``features.*`` of torchvision), returning named maps.

    Layer names follow the papers: ``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}`` for block ``b``
    (1–5) and convolution ``i``; e.g. LPIPS uses ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3``
    (VGG16) and the SRGAN/ESRGAN perceptual losses ``relu5_4`` / ``conv5_4`` (VGG19).

    Args:
        variant: ``"vgg16"`` or ``"vgg19"``.
        layers: names of the feature maps to return; the network stops after the deepest one.
        weights_path: local torchvision ImageNet weights (see :data:`WEIGHT_FILES`); ``None``
            gives a random initialisation from ``generator``.
        generator: random source for the initialisation when ``weights_path`` is None.
        requires_grad: False (default) freezes the weights and sets eval mode.

    ``forward(x)`` takes ``[B, 3, H, W]`` ImageNet-normalised input
    (``(x − [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`` for RGB in [0, 1]) and returns
    ``{name: [B, C_l, H_l, W_l]}`` in the order of ``layers``.
    """

    def __init__(
        self,
        variant: str = "vgg16",
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
        weights_path=None,
        *,
        generator: torch.Generator | None = None,
        requires_grad: bool = False,
    ) -> None:
        super().__init__()
        if variant not in _VGG_BLOCKS:
            raise InputError(f"variant: expected one of {sorted(_VGG_BLOCKS)}, found {variant!r}")
        self.variant = variant
        modules: list[nn.Module] = []
        self.layer_names: list[str] = []
        in_ch = 3
        for b, (n_conv, width) in enumerate(zip(_VGG_BLOCKS[variant], _VGG_WIDTHS), start=1):
            for i in range(1, n_conv + 1):
                modules += [nn.Conv2d(in_ch, width, 3, padding=1, device=_META), nn.ReLU(inplace=False)]
                self.layer_names += [f"conv{b}_{i}", f"relu{b}_{i}"]
                in_ch = width
            modules.append(nn.MaxPool2d(2, 2))
            self.layer_names.append(f"pool{b}")
        self.layers = _check_layers(layers, self.layer_names, variant)
        # All of torchvision's feature layers are kept so that ``features.<i>`` indices match the file.
        self.features = nn.Sequential(*modules)
        self._last = max(self.layer_names.index(n) for n in self.layers)
        _materialise(self, weights_path, variant, generator, requires_grad)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_rgb(x, "x")
        wanted = set(self.layers)
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if self.layer_names[i] in wanted:
                out[self.layer_names[i]] = x
            if i == self._last:
                break
        return {name: out[name] for name in self.layers}


def _check_layers(layers: Iterable[str], available: list[str], what: str) -> list[str]:
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise InputError(f"layers: expected at least one layer name of {what}, found none")
    unknown = [n for n in layers if n not in available]
    if unknown:
        raise InputError(f"layers: unknown name(s) {unknown} for {what}; expected names from {available}")
    return layers


def vgg16_features(layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
                   weights_path=None, **kwargs) -> VGGFeatures:
    """``VGGFeatures("vgg16", layers, weights_path, ...)``."""
    return VGGFeatures("vgg16", layers, weights_path, **kwargs)


def vgg19_features(layers: Sequence[str] = ("relu5_4",), weights_path=None, **kwargs) -> VGGFeatures:
    """``VGGFeatures("vgg19", layers, weights_path, ...)``; default: ESRGAN's loss layer (before pool5)."""
    return VGGFeatures("vgg19", layers, weights_path, **kwargs)


# ---------------------------------------------------------------- AlexNet

class AlexNetFeatures(nn.Module):
    """The convolutional part of torchvision's AlexNet (``features.*``), returning named maps.

    Names: ``conv1..conv5``, ``relu1..relu5``, ``pool1, pool2, pool5``. LPIPS uses
    ``relu1..relu5`` (64, 192, 384, 256, 256 channels). Arguments as :class:`VGGFeatures`;
    input ``[B, 3, H, W]`` ImageNet-normalised, H, W >= 32 for all five layers.
    """

    _SPEC = (  # (name, module factory)
        ("conv1", lambda: nn.Conv2d(3, 64, 11, stride=4, padding=2, device=_META)),
        ("relu1", lambda: nn.ReLU()),
        ("pool1", lambda: nn.MaxPool2d(3, 2)),
        ("conv2", lambda: nn.Conv2d(64, 192, 5, padding=2, device=_META)),
        ("relu2", lambda: nn.ReLU()),
        ("pool2", lambda: nn.MaxPool2d(3, 2)),
        ("conv3", lambda: nn.Conv2d(192, 384, 3, padding=1, device=_META)),
        ("relu3", lambda: nn.ReLU()),
        ("conv4", lambda: nn.Conv2d(384, 256, 3, padding=1, device=_META)),
        ("relu4", lambda: nn.ReLU()),
        ("conv5", lambda: nn.Conv2d(256, 256, 3, padding=1, device=_META)),
        ("relu5", lambda: nn.ReLU()),
        ("pool5", lambda: nn.MaxPool2d(3, 2)),
    )

    def __init__(
        self,
        layers: Sequence[str] = ("relu1", "relu2", "relu3", "relu4", "relu5"),
        weights_path=None,
        *,
        generator: torch.Generator | None = None,
        requires_grad: bool = False,
    ) -> None:
        super().__init__()
        self.layer_names = [name for name, _ in self._SPEC]
        self.layers = _check_layers(layers, self.layer_names, "alexnet")
        self.features = nn.Sequential(*(make() for _, make in self._SPEC))
        self._last = max(self.layer_names.index(n) for n in self.layers)
        _materialise(self, weights_path, "alexnet", generator, requires_grad)

    forward = VGGFeatures.forward


def alexnet_features(layers: Sequence[str] = ("relu1", "relu2", "relu3", "relu4", "relu5"),
                     weights_path=None, **kwargs) -> AlexNetFeatures:
    """``AlexNetFeatures(layers, weights_path, ...)``."""
    return AlexNetFeatures(layers, weights_path, **kwargs)


# ---------------------------------------------------------------- spectdl's own planar features

class PlanarFeatures(nn.Module):
    """A small VGG-like feature network of spectdl's own, the documented fallback for LPIPS, FID
    and perceptual losses when no ImageNet weights are at hand (nothing is downloaded here).

    Block ``k`` (``k = 1..len(channels)``): 3×3 convolution → ReLU → 3×3 convolution → ReLU,
    named ``relu{k}``, then 2×2 max-pooling before the next block. Weights come from
    :func:`spectdl.training.feature_net.train_planar_features` (self-supervised on planar
    scintigraphy), from ``weights_path`` (a file it saved), or at random from ``generator``.
    Distances measured in this feature space are **not** comparable with published LPIPS or FID
    values, which use ImageNet networks.

    ``forward(x)`` takes ``[B, 3, H, W]`` in [−1, 1] (grey repeated to 3 channels, as the metrics
    prepare it) and returns ``{relu1: …, relu2: …}``; :meth:`pooled` gives ``[B, Σ C_l]``, the
    global averages of every layer (the FID features).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128), weights_path=None, *,
                 generator: torch.Generator | None = None, requires_grad: bool = False) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise InputError(f"channels: expected positive widths, found {channels!r}")
        self.channels = channels
        self.layers = [f"relu{k}" for k in range(1, len(channels) + 1)]
        blocks, cin = [], 3
        for c in channels:
            blocks.append(nn.Sequential(nn.Conv2d(cin, c, 3, padding=1, device=_META), nn.ReLU(),
                                        nn.Conv2d(c, c, 3, padding=1, device=_META), nn.ReLU()))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        _materialise(self, weights_path, "planar_features", generator, requires_grad)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_rgb(x, "x")
        out = {}
        for k, block in enumerate(self.blocks):
            if k:
                x = F.max_pool2d(x, 2)
            x = block(x)
            out[self.layers[k]] = x
        return out

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, Σ C_l]``: every layer's global average (the FID features)."""
        return torch.cat([f.mean(dim=(2, 3)) for f in self.forward(x).values()], 1)


def load_planar_features(path) -> PlanarFeatures:
    """A :class:`PlanarFeatures` from a file of
    :func:`spectdl.training.feature_net.save_planar_features` (its widths from the file's record)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            record = json.loads((f.metadata() or {}).get("record", "{}"))
    except FileNotFoundError:
        raise InputError(f"weights_path: {str(path)!r} does not exist; expected a file of save_planar_features") from None
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise InputError(f"weights_path: {str(path)!r} is not a safetensors file of save_planar_features ({exc})") from None
    channels = record.get("channels")
    if not channels:
        raise InputError(f"weights_path: {str(path)!r} has no 'channels' in its record; expected a file of "
                         "save_planar_features")
    return PlanarFeatures(channels, weights_path=path)


class PooledFeatures(nn.Module):
    """``x ↦ backbone.pooled(x)``: a :class:`PlanarFeatures` as an FID feature extractor."""

    def __init__(self, backbone: PlanarFeatures) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.pooled(x)


# ---------------------------------------------------------------- Inception-v3

class _ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as in the TensorFlow original), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False, device=_META)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, device=_META)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _pool_branch(x: torch.Tensor, kind: str) -> torch.Tensor:
    # The TensorFlow graph behind the FID weights averages without the zero padding ("avg_tf")
    # and, in the last block, takes a max instead of an average.
    if kind == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=(kind == "avg"))


class _MixedA(nn.Module):  # 35x35 grid, outputs 224 + pool_features channels
    def __init__(self, cin: int, pool_features: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_pool_branch(x, self.pool)),
        ], 1)


class _ReduceB(nn.Module):  # 35x35 -> 17x17, outputs 480 + cin channels
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _MixedC(nn.Module):  # 17x17 grid with factorised 7x7 convolutions, 768 channels out
    def __init__(self, cin: int, c7: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_pool_branch(x, self.pool))], 1)


class _ReduceD(nn.Module):  # 17x17 -> 8x8, outputs 512 + cin channels
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class _MixedE(nn.Module):  # 8x8 grid with split 1x3 / 3x1 branches, 2048 channels out
    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x):
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(_pool_branch(x, self.pool)),
        ], 1)


class InceptionV3Features(nn.Module):
    """Inception-v3 up to the global average pool: 2048-d features per image (FID's "pool3").

    Args:
        weights_path: local weights; with ``fid_variant=True`` the pytorch-fid file
            ``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow FID network), otherwise
            torchvision's ``inception_v3_google-0cc3c7bd.pth``. ``None``: random initialisation.
        fid_variant: reproduce the TensorFlow graph used by the FID literature (average pools that
            ignore padding, a max pool in the last block). False gives torchvision's network.
        resize_input: bilinearly resize the input to 299 × 299 first (as pytorch-fid does).
        generator, requires_grad: as :class:`VGGFeatures`.

    ``forward(x)`` takes ``[B, 3, H, W]`` in the network's input range, [-1, 1] (H, W >= 75 when
    ``resize_input`` is False), and returns ``[B, 2048]``.
    """

    def __init__(
        self,
        weights_path=None,
        *,
        fid_variant: bool = True,
        resize_input: bool = True,
        generator: torch.Generator | None = None,
        requires_grad: bool = False,
    ) -> None:
        super().__init__()
        self.fid_variant = fid_variant
        self.resize_input = resize_input
        avg = "avg_tf" if fid_variant else "avg"
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        # torchvision's pools here count the padding; the TF graph's do not.
        self.Mixed_5b = _MixedA(192, 32, avg)
        self.Mixed_5c = _MixedA(256, 64, avg)
        self.Mixed_5d = _MixedA(288, 64, avg)
        self.Mixed_6a = _ReduceB(288)
        self.Mixed_6b = _MixedC(768, 128, avg)
        self.Mixed_6c = _MixedC(768, 160, avg)
        self.Mixed_6d = _MixedC(768, 160, avg)
        self.Mixed_6e = _MixedC(768, 192, avg)
        self.Mixed_7a = _ReduceD(768)
        self.Mixed_7b = _MixedE(1280, avg)
        self.Mixed_7c = _MixedE(2048, "max" if fid_variant else "avg")
        what = "inception_fid" if fid_variant else "inception_torchvision"
        _materialise(self, weights_path, what, generator, requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rgb(x, "x")
        if self.resize_input:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        elif min(x.shape[-2:]) < 75:
            raise InputError(f"x: spatial size {tuple(x.shape[-2:])} is below Inception-v3's minimum 75 × 75")
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))
