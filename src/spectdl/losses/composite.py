"""Weighted sums of named losses, and the deep-supervision wrapper."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from spectdl.errors import InputError
from spectdl.losses._base import Loss


def _weight(name: str, w) -> float:
    try:
        value = float(w)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a finite number as weight, found {w!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{name}: expected a finite number as weight, found {w!r}")
    return value


def _call_term(term: nn.Module, pred, target, context: dict):
    """``(value, components)`` of one term; plain ``nn.Module`` losses report no components."""
    if isinstance(term, Loss):
        return term(pred, target, return_components=True, **context)
    return term(pred, target), {}


class CompositeLoss(Loss):
    """``ℓ = Σ_k w_k · ℓ_k(pred, target, **context)`` over named terms.

    Args:
        terms: ``{name: (weight, loss_module)}``, in the order they are evaluated and reported.

    Components: each term's unweighted value under its name, plus the term's own components as
    ``"name.sub"``. ``weights`` gives ``{name: w_k}``; ``terms`` is an ``nn.ModuleDict`` (so the
    terms move with ``.to()`` and appear in ``state_dict``).
    """

    def __init__(self, terms: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not isinstance(terms, Mapping) or len(terms) == 0:
            raise InputError(f"terms: expected a non-empty mapping name -> (weight, loss), found {terms!r}")
        modules, weights = {}, {}
        for name, entry in terms.items():
            if "." in name:
                raise InputError(f"terms: name {name!r} contains '.', which separates nested component names")
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], nn.Module)):
                raise InputError(f"terms[{name!r}]: expected (weight, nn.Module), found {entry!r}")
            weights[name] = _weight(f"terms[{name!r}] weight", entry[0])
            modules[name] = entry[1]
        self.terms = nn.ModuleDict(modules)
        self.weights: dict[str, float] = weights

    def _loss(self, pred, target, **context):
        total = None
        components: dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            value, sub = _call_term(term, pred, target, context)
            components[name] = value
            components.update({f"{name}.{k}": v for k, v in sub.items()})
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        return total, components

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={w:g}" for k, w in self.weights.items())


def _flatten_outputs(outputs) -> list[torch.Tensor]:
    """``[fused, side1, ...]`` from a list of tensors or from ``(fused, [side1, ...])``."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if not isinstance(outputs, (list, tuple)):
        raise InputError(f"pred: expected a tensor or a sequence of tensors, found {type(outputs).__name__}")
    flat: list[torch.Tensor] = []
    for item in outputs:
        if isinstance(item, torch.Tensor):
            flat.append(item)
        elif isinstance(item, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in item):
            flat.extend(item)
        else:
            found = type(item).__name__
            raise InputError(f"pred: expected tensors or one nested sequence of tensors, found {found}")
    return flat


class DeepSupervision(Loss):
    """``ℓ = Σ_i w_i · base(out_i, target, **context)`` over a network's fused and side outputs.

    Args:
        base_loss: the loss applied to every output (any spectdl loss or ``nn.Module``).
        weights: one weight per output, fused first (U²-Net: ``(1,) * 7``, fused plus six sides).

    ``pred`` is a sequence ``[fused, side1, …]`` or ``(fused, [side1, …])`` (e.g. U²-Net with
    ``return_sides=True``); every output must already have the target's shape. A lone tensor is
    accepted when there is exactly one weight. Components: ``"fused"``, ``"side1"``, … (unweighted)
    and the base loss's components of the fused output as ``"fused.sub"``.
    """

    def __init__(self, base_loss: nn.Module, weights: Sequence[float] = (1.0,) * 7) -> None:
        super().__init__()
        if not isinstance(base_loss, nn.Module):
            raise InputError(f"base_loss: expected an nn.Module loss, found {type(base_loss).__name__}")
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) == 0:
            raise InputError(f"weights: expected a non-empty sequence of numbers, found {weights!r}")
        self.base_loss = base_loss
        self.weights = tuple(_weight(f"weights[{i}]", w) for i, w in enumerate(weights))

    def _loss(self, pred, target, **context):
        outputs = _flatten_outputs(pred)
        if len(outputs) != len(self.weights):
            raise InputError(
                f"pred: found {len(outputs)} outputs (fused + sides); expected {len(self.weights)}, one per weight"
            )
        total = None
        components: dict[str, torch.Tensor] = {}
        for i, (w, out) in enumerate(zip(self.weights, outputs)):
            name = "fused" if i == 0 else f"side{i}"
            if isinstance(target, torch.Tensor) and out.shape != target.shape:
                raise InputError(
                    f"pred[{i}] ({name}): shape {tuple(out.shape)}; expected the target's {tuple(target.shape)} "
                    "(upsample side outputs inside the network)"
                )
            value, sub = _call_term(self.base_loss, out, target, context)
            components[name] = value
            if i == 0:
                components.update({f"fused.{k}": v for k, v in sub.items()})
            total = w * value if total is None else total + w * value
        return total, components

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
