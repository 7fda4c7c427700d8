"""Adversarial losses for GAN training: vanilla (BCE), least squares and relativistic average.

Notation: ``C(x)`` is the discriminator's raw output (a logit, any shape, e.g. a PatchGAN map
``[B, 1, h, w]``), ``σ`` the logistic sigmoid, ``r`` real and ``f`` fake (generated) samples,
``E`` the mean over every element. The three modes:

* ``"vanilla"`` (Goodfellow et al. 2014, non-saturating generator):
  ``L_D = −E log σ(C(r)) − E log(1 − σ(C(f)))``, ``L_G = −E log σ(C(f))``.
* ``"lsgan"`` (Mao et al. 2017, targets 1 for real and 0 for fake, on the raw output):
  ``L_D = E (C(r) − 1)² + E C(f)²``, ``L_G = E (C(f) − 1)²``.
* ``"relativistic"`` (relativistic average GAN, Jolicoeur-Martineau 2018, as in ESRGAN), with
  ``D(a, b) = σ(C(a) − E C(b))``:
  ``L_D = −E log D(r, f) − E log(1 − D(f, r))``,
  ``L_G = −E log D(f, r) − E log(1 − D(r, f))``.

The discriminator loss is the sum of its real and fake terms (no factor ½).

``from_logits=False`` says the discriminator ends in a sigmoid and gives probabilities ``p``;
vanilla and relativistic losses then use ``C = logit(p)`` (clamped to ``[ε, 1 − ε]``), which gives
the same values as the BCE on ``p``. LSGAN compares the output itself with 0 and 1, whichever of
the two it is, so the flag does not change it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spectdl.errors import InputError
from spectdl.losses._base import Loss, require_context

MODES = ("vanilla", "lsgan", "relativistic")


def _check_logits(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of discriminator outputs, found {type(x).__name__}")
    if not x.is_floating_point() or x.numel() == 0:
        raise InputError(
            f"{name}: expected a non-empty floating tensor, found dtype {x.dtype}, shape {tuple(x.shape)}"
        )
    return x


def _bce_with_target(logits: torch.Tensor, value: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


class AdversarialLoss(Loss):
    """Generator and discriminator losses of one GAN flavour.

    Args:
        mode: ``"vanilla"``, ``"lsgan"`` or ``"relativistic"`` (equations in the module docstring).
        from_logits: ``True`` when the discriminator gives raw logits, ``False`` for probabilities.
        eps: clamp for ``logit(p)`` when ``from_logits=False``.

    Called as a term of a composite loss, ``loss(pred, target, fake_logits=..., real_logits=...)``
    returns :meth:`generator_loss`; ``pred`` and ``target`` are not used (the training loop runs
    the discriminator and passes its outputs in the context). ``real_logits`` is needed by the
    relativistic mode only, and should be detached by the caller when the discriminator is not
    being trained in that step.
    """

    def __init__(self, mode: str = "vanilla", from_logits: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if mode not in MODES:
            raise InputError(f"mode: expected one of {MODES}, found {mode!r}")
        if not 0 < eps < 0.5:
            raise InputError(f"eps: expected a value in (0, 0.5), found {eps}")
        self.mode = mode
        self.from_logits = bool(from_logits)
        self.eps = float(eps)

    def _raw(self, name: str, x) -> torch.Tensor:
        x = _check_logits(name, x)
        if self.from_logits or self.mode == "lsgan":
            return x
        return torch.logit(x, eps=self.eps)

    def generator_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        """``L_G``: small when the discriminator takes fakes for real. Scalar."""
        f = self._raw("fake_logits", fake_logits)
        if self.mode == "vanilla":
            return _bce_with_target(f, 1.0)
        if self.mode == "lsgan":
            return (f - 1.0).square().mean()
        if real_logits is None:
            raise InputError(
                "real_logits: None; the relativistic generator loss needs the discriminator output on real data"
            )
        r = self._raw("real_logits", real_logits)
        return _bce_with_target(f - r.mean(), 1.0) + _bce_with_target(r - f.mean(), 0.0)

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """``L_D``: small when the discriminator tells real from fake. Scalar."""
        r = self._raw("real_logits", real_logits)
        f = self._raw("fake_logits", fake_logits)
        if self.mode == "vanilla":
            return _bce_with_target(r, 1.0) + _bce_with_target(f, 0.0)
        if self.mode == "lsgan":
            return (r - 1.0).square().mean() + f.square().mean()
        return _bce_with_target(r - f.mean(), 1.0) + _bce_with_target(f - r.mean(), 0.0)

    def _loss(self, pred, target, **context):
        fake = require_context(context, "fake_logits", f"AdversarialLoss(mode={self.mode!r})")
        return self.generator_loss(fake, context.get("real_logits")), {}
