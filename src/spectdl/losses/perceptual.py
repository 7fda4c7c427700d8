"""Perceptual loss: distances between feature maps of a fixed network (VGG19 by default).

``ℓ = Σ_l w_l · mean |φ_l(x̂) − φ_l(x)|`` (``criterion="l1"``) or ``mean (φ_l(x̂) − φ_l(x))²``
(``criterion="l2"``), where ``φ_l`` are the extractor's feature maps at the chosen layers and
``x̂ = pred / L``, ``x = target / L`` are the images divided by the data range ``L``.

Input handling, in order:

1. scale by ``1 / L`` (``data_range``; ``None`` takes ``max − min`` of the target batch, detached),
   so that non-negative images land in about [0, 1], the range ImageNet networks were trained on;
2. a 3-D volume ``[B, C, X, Y, Z]`` becomes the batch of its axial slices ``[B·Z, C, X, Y]``
   (2-D networks see one slice at a time);
3. a grey image (``C = 1``) is repeated to 3 channels when ``repeat_grey=True``;
4. with ``imagenet_normalize`` (the default for a :class:`spectdl.metrics.backbones.VGGFeatures`
   extractor, which expects it), ``(x − [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`` per channel;
   a :class:`spectdl.metrics.backbones.PlanarFeatures` extractor (spectdl's own fallback, trained
   on [−1, 1]) gets ``2x − 1`` instead;
5. the feature extractor runs.

The extractor's parameters are frozen (``requires_grad=False``) and it is kept in eval mode;
the gradient still flows to ``pred`` through it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from spectdl.errors import InputError
from spectdl.losses._base import Loss, check_pair, first_given, resolve_data_range
from spectdl.metrics.backbones import WEIGHT_FILES, PlanarFeatures, VGGFeatures

CRITERIA = ("l1", "l2")
#: Layers used when none are given: the deepest VGG19 block, as in SRGAN/ESRGAN perceptual losses.
DEFAULT_LAYERS = ("relu5_4",)
#: ImageNet channel statistics that torchvision's pretrained networks were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _features_as_dict(out, layers: Sequence[str] | None) -> dict[str, torch.Tensor]:
    """Name the extractor's output: a dict as is, a tensor as ``"out"``, a sequence by position."""
    if isinstance(out, Mapping):
        feats = dict(out)
    elif isinstance(out, torch.Tensor):
        feats = {"out": out}
    elif isinstance(out, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in out):
        named = layers is not None and len(layers) == len(out)
        names = list(layers) if named else [str(i) for i in range(len(out))]
        feats = dict(zip(names, out))
    else:
        raise InputError(
            f"feature_extractor: returned {type(out).__name__}; expected a dict of feature maps, a tensor "
            "or a sequence of tensors"
        )
    return feats


class PerceptualLoss(Loss):
    """Weighted feature-space distance between ``pred`` and ``target``; see the module docstring.

    Args:
        feature_extractor: any ``nn.Module`` mapping ``[N, 3 (or C), H, W]`` to a dict of named
            feature maps, one tensor or a sequence of tensors. ``None`` builds
            ``VGGFeatures(variant="vgg19", layers=layers, weights_path=weights_path)``.
        layers: the feature maps to compare (names in the extractor's dict); ``None`` uses every
            map the extractor returns (with a VGG built here: :data:`DEFAULT_LAYERS`).
        layer_weights: ``{layer: w}`` or one weight per entry of ``layers``; 1 for each by default.
        weights_path: local file of the VGG19 ImageNet weights (torchvision's
            ``vgg19-dcbb9e9d.pth`` state dict), required when the VGG is built here: a randomly
            initialised VGG is no perceptual feature space.
        criterion: ``"l1"`` or ``"l2"``.
        data_range: ``L``; ``None`` takes ``max − min`` of the target batch.
        repeat_grey: repeat single-channel images to 3 channels before the extractor.
        imagenet_normalize: apply the ImageNet mean/std after scaling; ``None`` means "when the
            extractor is a ``VGGFeatures``".

    Components: ``"layer name"`` → the unweighted distance of that layer.
    """

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        layers: Sequence[str] | None = None,
        layer_weights: Mapping[str, float] | Sequence[float] | None = None,
        weights_path=None,
        criterion: str = "l1",
        data_range: float | None = None,
        repeat_grey: bool = True,
        imagenet_normalize: bool | None = None,
    ) -> None:
        super().__init__()
        if criterion not in CRITERIA:
            raise InputError(f"criterion: expected one of {CRITERIA}, found {criterion!r}")
        if isinstance(layers, str):
            layers = (layers,)
        if feature_extractor is None:
            if weights_path is None:
                raise InputError(
                    "weights_path: None; the VGG19 perceptual loss needs a local weights file, "
                    f"expected {WEIGHT_FILES['vgg19']} (or pass feature_extractor=...)"
                )
            layers = tuple(layers) if layers is not None else DEFAULT_LAYERS
            feature_extractor = VGGFeatures(variant="vgg19", layers=list(layers), weights_path=weights_path)
        elif not isinstance(feature_extractor, nn.Module):
            found = type(feature_extractor).__name__
            raise InputError(f"feature_extractor: expected an nn.Module or None, found {found}")
        if imagenet_normalize is None:
            imagenet_normalize = isinstance(feature_extractor, VGGFeatures)
        self.imagenet_normalize = bool(imagenet_normalize)
        self.signed = isinstance(feature_extractor, PlanarFeatures)
        self.layers = None if layers is None else tuple(layers)
        self.layer_weights = self._weights_dict(layer_weights)
        self.criterion = criterion
        self.data_range = None if data_range is None else resolve_data_range(data_range, torch.zeros(()))
        self.repeat_grey = bool(repeat_grey)
        for p in feature_extractor.parameters():
            p.requires_grad_(False)
        self.feature_extractor = feature_extractor.eval()

    def _weights_dict(self, layer_weights) -> dict[str, float]:
        if layer_weights is None:
            return {}
        if isinstance(layer_weights, Mapping):
            if self.layers is not None:
                unknown = sorted(set(layer_weights) - set(self.layers))
                if unknown:
                    raise InputError(f"layer_weights: layers {unknown} are not among layers={list(self.layers)}")
            return {str(k): float(v) for k, v in layer_weights.items()}
        weights = [float(w) for w in layer_weights]
        if self.layers is None or len(weights) != len(self.layers):
            raise InputError(
                f"layer_weights: {len(weights)} values; expected one per entry of layers={self.layers} "
                "(or give a dict {layer: weight})"
            )
        return dict(zip(self.layers, weights))

    def train(self, mode: bool = True):
        # The extractor is a fixed measuring device: BatchNorm or dropout in it must not switch.
        super().train(mode)
        self.feature_extractor.eval()
        return self

    def _prepare(self, x: torch.Tensor, dr) -> torch.Tensor:
        x = x / dr
        if x.dim() == 5:
            b, c, nx, ny, nz = x.shape
            x = x.permute(0, 4, 1, 2, 3).reshape(b * nz, c, nx, ny)
        if self.repeat_grey and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.signed:
            x = 2.0 * x - 1.0
        if self.imagenet_normalize:
            if x.shape[1] != 3:
                raise InputError(f"pred: {x.shape[1]} channels; ImageNet normalisation expects 3 (or 1, repeated)")
            mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        if pred.dim() not in (4, 5):
            raise InputError(f"pred: shape {tuple(pred.shape)}; expected [B, C, H, W] or [B, C, X, Y, Z]")
        dr = resolve_data_range(first_given(context.get("data_range"), self.data_range), target)
        both = self._prepare(torch.cat([pred, target], dim=0), dr)
        feats = _features_as_dict(self.feature_extractor(both), self.layers)
        names = list(self.layers) if self.layers is not None else list(feats)
        missing = [n for n in names if n not in feats]
        if missing:
            raise InputError(
                f"layers: {missing} not in the feature extractor's output (it gave {sorted(feats)})"
            )
        n = both.shape[0] // 2
        total = None
        components: dict[str, torch.Tensor] = {}
        for name in names:
            f_pred, f_target = feats[name][:n], feats[name][n:]
            diff = f_pred - f_target.detach()
            value = diff.abs().mean() if self.criterion == "l1" else diff.square().mean()
            components[name] = value
            weighted = self.layer_weights.get(name, 1.0) * value
            total = weighted if total is None else total + weighted
        return total, components
