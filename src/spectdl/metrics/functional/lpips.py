"""LPIPS, the learned perceptual image patch similarity (Zhang et al., CVPR 2018), version 0.1.

For images ``x0, x1`` and backbone layers ``l`` with feature maps ``f_l`` (``C_l`` channels), each
feature vector is unit-normalised over channels, ``f̂ = f / (‖f‖₂ + 1e-10)``, and

``LPIPS(x0, x1) = Σ_l mean_{h,w} Σ_c w_{l,c} (f̂⁰_{l,c,h,w} − f̂¹_{l,c,h,w})²``

with non-negative learned weights ``w_l`` (the "lin" layers). Backbones: AlexNet
(``relu1..relu5``) or VGG16 (``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3``), ImageNet weights.

Input handling, as in the reference implementation: grey images are repeated to 3 channels;
an image in ``[0, data_range]`` is mapped linearly to ``[−1, 1]`` (``2·x/data_range − 1``, not
clipped) and then shifted and scaled per channel by the reference's constants
(``shift = (−0.030, −0.088, −0.188)``, ``scale = (0.458, 0.448, 0.450)``). 3-D volumes
``[B, C, X, Y, Z]`` are scored slice by slice along z (axial slices) and averaged per volume.

Weights are read from local files only (see :data:`LPIPS_WEIGHT_FILES` and
:data:`spectdl.metrics.backbones.WEIGHT_FILES`).
"""

from __future__ import annotations

import functools
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import (
    batch_values,
    check_mask,
    check_pair,
    check_reduction,
    reduce,
)

__all__ = ["LPIPSNetwork", "LPIPS_WEIGHT_FILES", "lpips"]

LPIPS_WEIGHT_FILES = {
    "alex": (
        "the LPIPS v0.1 linear layers for AlexNet, 'lpips/weights/v0.1/alex.pth' of "
        "https://github.com/richzhang/PerceptualSimilarity (also shipped in `pip download lpips`), "
        "used as is"
    ),
    "vgg": (
        "the LPIPS v0.1 linear layers for VGG16, 'lpips/weights/v0.1/vgg.pth' of "
        "https://github.com/richzhang/PerceptualSimilarity (also shipped in `pip download lpips`), "
        "used as is"
    ),
}
_BACKBONE_FILE = {"alex": "alexnet", "vgg": "vgg16"}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_LIN_KEY = re.compile(r"(?:^|\.)lin(\d)\.(?:model\.\d+\.)?weight$")


class LPIPSNetwork(nn.Module):
    """Backbone + linear layers of LPIPS; ``forward(x0, x1)`` gives per-image distances.

    Args:
        net: ``"alex"``, ``"vgg"`` (VGG16) or ``"planar"`` (spectdl's fallback features, given as
            ``backbone``; linear weights all 1; not comparable with published LPIPS values).
        weights_path: local torchvision ImageNet weights of the backbone; ``None`` initialises it
            at random from ``generator`` (for tests only: not a perceptual metric).
        lpips_weights_path: local LPIPS linear-layer file (keys ``lin<k>.model.1.weight``);
            ``None`` sets every weight to 1, the un-calibrated baseline of the LPIPS paper.
        generator: random source for a random backbone.
        backbone: the :class:`~spectdl.metrics.backbones.PlanarFeatures` of ``net="planar"``.

    The network is frozen (eval mode, no parameter gradients); gradients still flow to the inputs.
    """

    def __init__(self, net: str = "alex", weights_path=None, lpips_weights_path=None, *,
                 generator: torch.Generator | None = None, backbone: nn.Module | None = None) -> None:
        super().__init__()
        from spectdl.metrics.backbones import AlexNetFeatures, PlanarFeatures, VGGFeatures, load_state_dict_file

        if net not in (*_BACKBONE_FILE, "planar"):
            raise InputError(f"net: expected 'alex', 'vgg' or 'planar', found {net!r}")
        self.net = net
        if net == "planar":
            if not isinstance(backbone, PlanarFeatures):
                raise InputError("backbone: net='planar' needs backbone=PlanarFeatures(...) (spectdl's fallback "
                                 "features, e.g. from spectdl.training.feature_net.train_planar_features)")
            if lpips_weights_path is not None:
                raise InputError("lpips_weights_path: there are no calibrated LPIPS layers for net='planar'")
            self.backbone = backbone
            channels = backbone.channels
        elif net == "alex":
            self.backbone = AlexNetFeatures(weights_path=weights_path, generator=generator)
            channels = (64, 192, 384, 256, 256)
        else:
            self.backbone = VGGFeatures("vgg16", weights_path=weights_path, generator=generator)
            channels = (64, 128, 256, 512, 512)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        with torch.no_grad():
            for lin in self.lins:
                lin.weight.fill_(1.0)
        if lpips_weights_path is not None:
            state = load_state_dict_file(lpips_weights_path, LPIPS_WEIGHT_FILES[net])
            found = {}
            for key, value in state.items():
                match = _LIN_KEY.search(key)
                if match:
                    found[int(match.group(1))] = value
            if sorted(found) != list(range(len(channels))):
                raise InputError(
                    f"lpips_weights_path: {str(lpips_weights_path)!r} holds linear layers {sorted(found)}; "
                    f"expected lin0..lin4, i.e. {LPIPS_WEIGHT_FILES[net]}"
                )
            with torch.no_grad():
                for k, lin in enumerate(self.lins):
                    if found[k].numel() != lin.weight.numel():
                        raise InputError(
                            f"lpips_weights_path: lin{k} has {found[k].numel()} weights; expected "
                            f"{lin.weight.numel()} for net={net!r}"
                        )
                    lin.weight.copy_(found[k].reshape(lin.weight.shape))
        # ImageNet networks take the reference's per-channel shift and scale; the planar fallback
        # was trained on [−1, 1] input, so it takes none.
        shift, scale = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) if net == "planar" else (_SHIFT, _SCALE)
        self.register_buffer("shift", torch.tensor(shift).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).reshape(1, 3, 1, 1), persistent=False)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def distance_maps(self, x0: torch.Tensor, x1: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer maps ``Σ_c w_c (f̂⁰ − f̂¹)²``, each ``[B, 1, H_l, W_l]``.

        Inputs are ``[B, 3, H, W]`` in [−1, 1].
        """
        f0 = self.backbone((x0 - self.shift) / self.scale)
        f1 = self.backbone((x1 - self.shift) / self.scale)
        maps = []
        for lin, name in zip(self.lins, self.backbone.layers):
            a = f0[name] / (torch.sqrt((f0[name] ** 2).sum(1, keepdim=True)) + 1e-10)
            b = f1[name] / (torch.sqrt((f1[name] ** 2).sum(1, keepdim=True)) + 1e-10)
            maps.append(lin((a - b) ** 2))
        return maps

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``[B]`` LPIPS distances of ``[B, 3, H, W]`` inputs in [−1, 1]."""
        return sum(m.mean(dim=(1, 2, 3)) for m in self.distance_maps(x0, x1))


@functools.lru_cache(maxsize=2)
def _load_network(net: str, weights_path: str, lpips_weights_path: str) -> LPIPSNetwork:
    return LPIPSNetwork(net, weights_path, lpips_weights_path)


def _missing_weights_message(net: str) -> str:
    from spectdl.metrics.backbones import WEIGHT_FILES

    return (
        f"LPIPS with net={net!r} needs two local files: weights_path = {WEIGHT_FILES[_BACKBONE_FILE[net]]}; "
        f"lpips_weights_path = {LPIPS_WEIGHT_FILES.get(net, '')}. Or pass network=LPIPSNetwork(...)"
    )


def to_three_channel_slices(x: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
    """``[B, C, *spatial]`` with C in {1, 3} → ``[B·Z, 3, H, W]`` in [−1, 1] (Z = 1 for 2-D)."""
    c = x.shape[1]
    if c not in (1, 3):
        raise InputError(f"pred: expected 1 (grey) or 3 channels, found {c}")
    x = 2.0 * x / data_range.reshape((-1,) + (1,) * (x.dim() - 1)) - 1.0
    if x.dim() == 5:
        x = x.permute(0, 4, 1, 2, 3).reshape(-1, c, x.shape[2], x.shape[3])
    return x.expand(-1, 3, -1, -1) if c == 1 else x


def lpips(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range,
    *,
    net: str = "alex",
    weights_path=None,
    lpips_weights_path=None,
    network: LPIPSNetwork | None = None,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """LPIPS distance per image (0 for identical images; symmetric); see the module docstring.

    Args:
        pred, target: ``[B, C, H, W]`` or ``[B, C, X, Y, Z]`` with C = 1 or 3, values in
            ``[0, data_range]``; 2-D sizes >= 32 (AlexNet) or 16 (VGG16).
        data_range: a number or ``[B]``.
        net, weights_path, lpips_weights_path: build (and cache) an :class:`LPIPSNetwork` from
            local files; both paths are required.
        network: a ready :class:`LPIPSNetwork` (then the three arguments above are ignored).
        mask: region of interest; each layer's distance map is upsampled bilinearly to the image
            size (the reference's ``spatial=True`` mode) and averaged over the mask.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B]``).
    """
    check_reduction(reduction)
    pred, target = check_pair(pred, target)
    if network is None:
        if weights_path is None or lpips_weights_path is None:
            raise InputError(f"weights_path: {_missing_weights_message(net)}")
        network = _load_network(net, str(weights_path), str(lpips_weights_path))
    network = network.to(device=pred.device, dtype=pred.dtype)
    r = batch_values("data_range", data_range, pred)
    b = pred.shape[0]
    depth = pred.shape[4] if pred.dim() == 5 else 1
    x0 = to_three_channel_slices(pred, r)
    x1 = to_three_channel_slices(target, r)
    if mask is None:
        values = network(x0, x1).reshape(b, depth).mean(1)
        return reduce(values, reduction)
    m = check_mask(mask, pred)[:, :1]
    if m.dim() == 5:
        m = m.permute(0, 4, 1, 2, 3).reshape(-1, 1, m.shape[2], m.shape[3])
    size = x0.shape[-2:]
    total = sum(F.interpolate(d, size=size, mode="bilinear", align_corners=False)
                for d in network.distance_maps(x0, x1))
    m = m.to(total.dtype)
    values = (total * m).reshape(b, -1).sum(1) / m.reshape(b, -1).sum(1)
    return reduce(values, reduction)
