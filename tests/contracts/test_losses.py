"""Contract: every registered loss and every study's composite loss behaves like a loss.

The cases are generated from the registries themselves, so a loss is tested the moment it is
registered: every key of :data:`spectdl.losses.builder.LOSS_TYPES` (built through
``build_loss({"terms": {key: ...}})``, plus every adversarial mode) and every study of
:data:`spectdl.losses.builder.STUDY_DEFAULTS` (``build_loss(study)``, alone and with deep
supervision, whose prediction is ``(fused, [sides])``), each on 2-D and 3-D images.

The contracts, for a prediction ``p`` and a target ``t``:

* identical inputs: ``ℓ(t, t)`` equals the loss's value at a perfect prediction, which is 0 for
  every term except two whose minimum is not 0 by design, each with an independent reference:
  the intensity BCE (its minimum is the mean binary entropy of the target, ``H(t/L)``), and the
  adversarial term, which never sees ``p`` or ``t`` directly, only the discriminator's logits in
  the context (its value is the generator loss of those logits, from the published equations);
  a composite's value is the weighted sum of its terms' values;
* ``t`` is a stationary point: the gradient with respect to ``p`` at ``p = t`` is 0;
* different inputs: ``ℓ(p, t) > ℓ(t, t)`` (strictly positive for the zero-minimum terms); a lone
  adversarial term gives the same value for every ``p`` when the logits are held fixed;
* gradient: with the discriminator's logits computed from ``p`` (as in training), the gradient
  with respect to ``p`` (every output, for deep supervision) is finite and non-zero somewhere;
* adversarial terms (where "zero on identical" has no meaning): the generator loss is lower when
  the discriminator's logits say "real" than when they say "fake", in every mode, and its
  gradient with respect to the logits is finite and non-zero;
* a dimensionality a loss does not support (three-plane SSIM is 3-D only) is refused with an
  ``InputError`` that names the shape.

Losses need context beyond ``(pred, target)``. :func:`context_for` derives it in one place: the
keywords named in the signatures of the loss's ``forward``/``_loss`` (and of every loss inside
it), plus those a loss asks for at call time through the library's ``require_context``
convention, each built by its entry in :data:`CONTEXT_FACTORIES`. Constructor arguments without a
usable default come from :data:`CONSTRUCTOR_FACTORIES` (the perceptual loss gets a tiny random
conv net instead of the VGG19 weights file). A loss that needs a keyword or a constructor argument
with no factory fails its tests with a message saying what to add (checked below with losses
registered for the test).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from spectdl.errors import InputError
from spectdl.losses import (
    LOSS_TYPES,
    STUDY_DEFAULTS,
    AdversarialLoss,
    CompositeLoss,
    DeepSupervision,
    IntensityBCELoss,
    Loss,
    ThreePlaneSobelLoss,
    ThreePlaneSSIMLoss,
    build_loss,
)
from spectdl.losses._base import require_context
from spectdl.losses.adversarial import MODES

F64 = torch.float64
ZERO_ATOL = 1e-6  # "zero" for a loss at a perfect prediction, float64
GRAD_ATOL = 1e-9  # "zero" for its gradient there
N_SIDES = 3  # deep supervision: fused + 2 side outputs
SHAPES = {2: (2, 1, 16, 16), 3: (2, 1, 12, 12, 12)}  # SSIM's 11-voxel window fits


# ---------------------------------------------------------------------------- tiny seeded networks
def _seeded(module: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Parameters drawn from a seeded generator (modules are built with ``skip_init``, so the
    global RNG is never touched)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


class TinyFeatures(nn.Module):
    """A random two-layer 2-D feature extractor: a stand-in for VGG19 (no weights file)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.c1 = skip_init(nn.Conv2d, 3, 4, 3, padding=1, dtype=F64)
        self.c2 = skip_init(nn.Conv2d, 4, 4, 3, padding=1, stride=2, dtype=F64)
        _seeded(self, seed)

    def forward(self, x):
        f1 = torch.tanh(self.c1(x))
        return {"c1": f1, "c2": torch.tanh(self.c2(f1))}


class TinyDiscriminator(nn.Module):
    """A random patch discriminator, 2-D or 3-D: ``[B, 1, *spatial]`` → logits ``[B, 1, *patches]``."""

    def __init__(self, dims: int, seed: int = 1) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.c1 = skip_init(conv, 1, 4, 3, stride=2, dtype=F64)
        self.c2 = skip_init(conv, 4, 1, 3, dtype=F64)
        _seeded(self, seed)

    def forward(self, x):
        return self.c2(torch.tanh(self.c1(x)))


# ---------------------------------------------------------------------------- context
@dataclass
class Images:
    """The tensors one case works on: the fused prediction ``pred`` and the target."""

    pred: torch.Tensor
    target: torch.Tensor
    live: bool  # discriminator logits from ``pred`` (training) or fixed, from the target


def _box(shape, lo: float, hi: float) -> torch.Tensor:
    """``[B, 1, *spatial]`` bool box over the fraction ``[lo, hi)`` of every spatial axis."""
    m = torch.zeros(shape, dtype=torch.bool)
    idx = (slice(None), slice(None)) + tuple(slice(int(lo * n), int(hi * n)) for n in shape[2:])
    m[idx] = True
    return m


def _logits(images: Images, of: str) -> torch.Tensor:
    disc = TinyDiscriminator(images.target.dim() - 2)
    if of == "pred" and images.live:
        return disc(images.pred)  # the generator's gradient flows through the discriminator
    return disc(images.target).detach()


#: Context keyword → its value for the given images. One entry per keyword any loss may ask for.
CONTEXT_FACTORIES: dict[str, Callable[[Images], Any]] = {
    "lesion_mask": lambda im: _box(im.target.shape, 0.3, 0.7),
    "masks": lambda im: {
        "myocardium": _box(im.target.shape, 0.2, 0.8) & ~_box(im.target.shape, 0.4, 0.6),
        "blood_pool": _box(im.target.shape, 0.4, 0.6),
    },
    "fake_logits": lambda im: _logits(im, "pred"),
    "real_logits": lambda im: _logits(im, "target"),
}

#: Constructor argument → value, for arguments whose default is unusable in a test.
CONSTRUCTOR_FACTORIES: dict[str, Callable[[], Any]] = {
    "feature_extractor": TinyFeatures,  # PerceptualLoss's default needs the VGG19 weights file
}

_NOT_CONTEXT = {"self", "pred", "target", "input", "return_components"}
# The library's messages for a missing context keyword: require_context's, and the relativistic
# generator loss's own ("real_logits: None; ...").
_ASKED = (re.compile(r"needs the context keyword (\w+)="), re.compile(r"^(\w+): None;"))


def _is_loss(module: nn.Module) -> bool:
    return isinstance(module, Loss) or type(module) in LOSS_TYPES.values()


def declared_context_keys(loss: nn.Module) -> set[str]:
    """Keywords that ``forward``/``_loss`` of the loss, or of any loss inside it, name explicitly."""
    keys: set[str] = set()
    for module in loss.modules():
        if not _is_loss(module):
            continue  # feature extractors and discriminators are not called with a context
        for fn in (type(module).forward, getattr(type(module), "_loss", None)):
            if fn is None:
                continue
            for p in inspect.signature(fn).parameters.values():
                named = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                if named and p.name not in _NOT_CONTEXT and p.default is p.empty:
                    keys.add(p.name)
    return keys


def _build_context_value(key: str, images: Images, label: str):
    if key not in CONTEXT_FACTORIES:
        pytest.fail(
            f"{label} needs the context keyword {key}=..., which tests/contracts/test_losses.py cannot "
            f"build: add a factory for {key!r} to CONTEXT_FACTORIES (known: {sorted(CONTEXT_FACTORIES)})",
            pytrace=False,
        )
    return CONTEXT_FACTORIES[key](images)


def context_for(loss: nn.Module, outputs, images: Images, label: str) -> dict[str, Any]:
    """The context ``loss`` needs: the keywords its signatures declare, then the ones it asks for
    (by ``InputError``) when called with what it has so far. Any other error propagates."""
    keys = declared_context_keys(loss)
    for _ in range(len(CONTEXT_FACTORIES) + 2):
        ctx = {k: _build_context_value(k, images, label) for k in sorted(keys)}
        try:
            with torch.no_grad():
                loss(outputs, images.target, **ctx)
            return ctx
        except InputError as exc:
            asked = next((m.group(1) for r in _ASKED if (m := r.search(str(exc)))), None)
            if asked is None or asked in keys:
                raise  # not a missing keyword, or the factory's value was refused
            keys.add(asked)
    pytest.fail(f"{label}: kept asking for more context keywords after {sorted(keys)}")


# ---------------------------------------------------------------------------- the cases
def _constructor_options(cls: type, label: str) -> dict[str, Any]:
    options = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.name in CONSTRUCTOR_FACTORIES:
            options[p.name] = CONSTRUCTOR_FACTORIES[p.name]()
        elif p.default is p.empty:
            pytest.fail(
                f"{label} ({cls.__name__}) has the required constructor argument {p.name!r}, which "
                f"tests/contracts/test_losses.py cannot build: add it to CONSTRUCTOR_FACTORIES",
                pytrace=False,
            )
    return options


def _type_case(key: str, extra: dict | None = None) -> Callable[[], nn.Module]:
    def build():
        cls = LOSS_TYPES[key]
        options = {**_constructor_options(cls, f"LOSS_TYPES[{key!r}]"), **(extra or {})}
        loss = build_loss({"terms": {key: {"weight": 1.0, **options}}})
        assert type(loss.terms[key]) is cls
        return loss

    return build


def _study_case(study: str, deep_supervision: int | None) -> Callable[[], nn.Module]:
    def build():
        options = {k: f() for k, f in CONSTRUCTOR_FACTORIES.items() if k in STUDY_DEFAULTS[study]}
        return build_loss(study, deep_supervision=deep_supervision, **options)

    return build


CASES: dict[str, Callable[[], nn.Module]] = {
    **{f"type:{key}": _type_case(key) for key in LOSS_TYPES},
    **{f"type:adversarial[{mode}]": _type_case("adversarial", {"mode": mode}) for mode in MODES},
    **{f"study:{s}": _study_case(s, None) for s in STUDY_DEFAULTS},
    **{f"study:{s}+deep_supervision": _study_case(s, N_SIDES) for s in STUDY_DEFAULTS},
}


def _leaves(loss: nn.Module):
    """The terms of a (deep-supervised) composite, recursively."""
    if isinstance(loss, DeepSupervision):
        yield from _leaves(loss.base_loss)
    elif isinstance(loss, CompositeLoss):
        for term in loss.terms.values():
            yield from _leaves(term)
    else:
        yield loss


#: Spatial dimensionalities of the losses that do not take both.
ONLY_DIMS: dict[type, tuple[int, ...]] = {ThreePlaneSSIMLoss: (3,), ThreePlaneSobelLoss: (3,)}


def _target(dims: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + dims)
    t = torch.rand(SHAPES[dims], generator=gen, dtype=F64) + 0.05
    t[(slice(None), slice(None)) + (0,) * dims] = 0.0  # a background voxel: data range = max
    return t


def _perturbed(t: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return t * torch.exp(0.2 * torch.randn(t.shape, generator=gen, dtype=F64))


def _outputs(loss: nn.Module, target: torch.Tensor, identical: bool, grad: bool = False):
    """The prediction as the loss takes it: a tensor, or ``(fused, [sides])`` for deep supervision."""
    n = len(loss.weights) if isinstance(loss, DeepSupervision) else 1
    outs = [target.clone() if identical else _perturbed(target, 200 + i) for i in range(n)]
    outs = [o.requires_grad_(grad) for o in outs]
    packed = outs[0] if n == 1 else (outs[0], outs[1:])
    return packed, outs


@dataclass
class Setup:
    loss: nn.Module
    target: torch.Tensor
    label: str

    def call(self, identical: bool, live: bool = False, grad: bool = False):
        packed, outs = _outputs(self.loss, self.target, identical, grad)
        images = Images(outs[0], self.target, live)
        ctx = context_for(self.loss, packed, images, self.label)
        return self.loss(packed, self.target, **ctx), outs, ctx


def _setup(case: str, dims: int) -> Setup | None:
    """The case's loss on ``dims``-D images, or None after checking that it refuses them."""
    loss = CASES[case]()
    supported = set.intersection({2, 3}, *(set(ONLY_DIMS.get(type(leaf), (2, 3))) for leaf in _leaves(loss)))
    setup = Setup(loss, _target(dims), f"{case} ({dims}-D)")
    if dims not in supported:
        with pytest.raises(InputError, match=r"shape"):
            setup.call(identical=True)
        return None
    return setup


# ---------------------------------------------------------------------------- independent references
def _reference_generator_loss(mode: str, f: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
    """``L_G`` from the published equations (softplus form: ``−log σ(z) = softplus(−z)``)."""
    if mode == "vanilla":
        return F.softplus(-f).mean()
    if mode == "lsgan":
        return (f - 1.0).square().mean()
    return F.softplus(-(f - r.mean())).mean() + F.softplus(r - f.mean()).mean()


def _reference_bce_minimum(loss: IntensityBCELoss, target: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy ``H(q)``, ``q = t / L``: the cross-entropy of ``q`` with itself."""
    dr = loss.data_range if loss.data_range is not None else float(target.max() - target.min())
    q = (target / dr).clamp(0.0, 1.0)
    return -(torch.xlogy(q, q) + torch.xlogy(1.0 - q, 1.0 - q)).mean()


def _value_at_identical(loss: nn.Module, target: torch.Tensor, ctx: dict) -> float:
    """What ``loss(target, target, **ctx)`` must equal (see the module docstring)."""
    if isinstance(loss, DeepSupervision):
        return sum(w * _value_at_identical(loss.base_loss, target, ctx) for w in loss.weights)
    if isinstance(loss, CompositeLoss):
        return sum(loss.weights[n] * _value_at_identical(t, target, ctx) for n, t in loss.terms.items())
    if isinstance(loss, IntensityBCELoss):
        return float(_reference_bce_minimum(loss, target))
    if isinstance(loss, AdversarialLoss):
        assert loss.from_logits, "the reference takes logits"
        return float(_reference_generator_loss(loss.mode, ctx["fake_logits"], ctx.get("real_logits")))
    return 0.0


def _only_adversarial(loss: nn.Module) -> bool:
    return all(isinstance(leaf, AdversarialLoss) for leaf in _leaves(loss))


# ---------------------------------------------------------------------------- the contracts
CASE_IDS = list(CASES)
DIMS = pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])


def test_cases_follow_the_registries():
    """Every registered loss and study is a case, and every term of a study is a registered type
    (so the per-type contracts cover the studies' terms too)."""
    assert {c[5:] for c in CASES if c.startswith("type:") and "[" not in c} == set(LOSS_TYPES)
    assert {c[6:] for c in CASES if c.startswith("study:") and "+" not in c} == set(STUDY_DEFAULTS)
    registered = set(LOSS_TYPES.values())
    for study in STUDY_DEFAULTS:
        for leaf in _leaves(CASES[f"study:{study}"]()):
            name = type(leaf).__name__
            assert type(leaf) in registered, f"study {study!r} uses the unregistered loss {name}"


@DIMS
@pytest.mark.parametrize("case", CASE_IDS)
def test_value_at_a_perfect_prediction(case, dims):
    s = _setup(case, dims)
    if s is None:
        return
    value, _, ctx = s.call(identical=True)
    assert value.dim() == 0 and value.dtype == F64
    expected = _value_at_identical(s.loss, s.target, ctx)
    assert abs(float(value) - expected) <= ZERO_ATOL * max(1.0, abs(expected)), (
        f"{s.label}: ℓ(t, t) = {float(value)!r}, expected {expected!r}"
    )
    if all(type(leaf) not in (IntensityBCELoss, AdversarialLoss) for leaf in _leaves(s.loss)):
        assert abs(float(value)) <= ZERO_ATOL


@DIMS
@pytest.mark.parametrize("case", CASE_IDS)
def test_a_perfect_prediction_is_stationary(case, dims):
    s = _setup(case, dims)
    if s is None:
        return
    value, outs, _ = s.call(identical=True, grad=True)
    if not value.requires_grad:  # with fixed logits a lone adversarial term does not depend on p
        assert _only_adversarial(s.loss), f"{s.label}: ℓ does not depend on the prediction"
        return
    grads = torch.autograd.grad(value, outs, allow_unused=True)
    for i, g in enumerate(grads):
        if g is None:
            assert _only_adversarial(s.loss), f"{s.label}: output {i} gets no gradient"
            continue
        assert torch.isfinite(g).all()
        worst = float(g.abs().max())
        assert worst <= GRAD_ATOL, f"{s.label}: |∂ℓ/∂p| = {worst:.3g} at p = t (output {i})"


@DIMS
@pytest.mark.parametrize("case", CASE_IDS)
def test_a_different_prediction_costs_more(case, dims):
    s = _setup(case, dims)
    if s is None:
        return
    same, _, _ = s.call(identical=True)
    diff, _, _ = s.call(identical=False)
    if _only_adversarial(s.loss):
        # The term sees the images only through the logits in the context, held fixed here.
        assert float(diff) == pytest.approx(float(same), rel=1e-12, abs=1e-15)
        return
    message = f"{s.label}: ℓ(p, t) = {float(diff)!r}, ℓ(t, t) = {float(same)!r}"
    assert float(diff) > float(same) + ZERO_ATOL, message
    assert float(diff) > 0
    for leaf in _leaves(s.loss):  # and each term on its own
        if isinstance(leaf, AdversarialLoss):
            continue
        name = f"{s.label} term {type(leaf).__name__}"
        pred = _perturbed(s.target, 200)
        ctx = context_for(leaf, pred, Images(pred, s.target, live=False), name)
        same_leaf, diff_leaf = leaf(s.target.clone(), s.target, **ctx), leaf(pred, s.target, **ctx)
        detail = f"{name}: ℓ(p, t) = {float(diff_leaf)!r}, ℓ(t, t) = {float(same_leaf)!r}"
        assert float(diff_leaf) > float(same_leaf) + ZERO_ATOL, detail


@DIMS
@pytest.mark.parametrize("case", CASE_IDS)
def test_gradient_is_finite_and_nonzero(case, dims):
    s = _setup(case, dims)
    if s is None:
        return
    value, outs, _ = s.call(identical=False, live=True, grad=True)
    assert torch.isfinite(value)
    grads = torch.autograd.grad(value, outs)
    for i, g in enumerate(grads):
        assert torch.isfinite(g).all(), f"{s.label}: non-finite gradient for output {i}"
        assert float(g.abs().max()) > 0, f"{s.label}: zero gradient for output {i}"


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probabilities"])
@pytest.mark.parametrize("mode", MODES)
def test_adversarial_generator_prefers_logits_that_say_real(mode, from_logits):
    """A generator loss has no "perfect prediction"; its contract is the direction of its signal:
    lower when the discriminator takes the fakes for real, with a finite, non-zero gradient."""
    loss = AdversarialLoss(mode=mode, from_logits=from_logits)
    gen = torch.Generator().manual_seed(5)
    noise = 0.3 * torch.randn(2, 1, 4, 4, generator=gen, dtype=F64)
    says_real, says_fake = 3.0 + noise, -3.0 + noise  # raw logits
    if not from_logits:  # a discriminator ending in a sigmoid (LSGAN then compares p with 1 and 0)
        says_real, says_fake = torch.sigmoid(says_real), torch.sigmoid(says_fake)
    values = {}
    for name, fake, real in (("real", says_real, says_fake), ("fake", says_fake, says_real)):
        f = fake.clone().requires_grad_(True)
        value = loss(None, None, fake_logits=f, real_logits=real)
        (g,) = torch.autograd.grad(value, f)
        value = value.detach()
        assert torch.isfinite(value) and torch.isfinite(g).all() and float(g.abs().max()) > 0
        values[name] = float(value)
        if from_logits:
            reference = float(_reference_generator_loss(mode, fake, real))
            assert float(value) == pytest.approx(reference, rel=1e-12)
    assert values["real"] < values["fake"], values
    # The discriminator's own loss points the other way: low when it tells them apart.
    d_right = float(loss.discriminator_loss(real_logits=says_real, fake_logits=says_fake))
    d_wrong = float(loss.discriminator_loss(real_logits=says_fake, fake_logits=says_real))
    assert d_right < d_wrong


# ---------------------------------------------------------------------------- the harness can fail
class _NeedsDoseMap(Loss):
    """Asks for its context at call time, the library's way."""

    def _loss(self, pred, target, **context):
        dose = require_context(context, "dose_map", "_NeedsDoseMap")
        return ((pred - target).abs() * dose).mean(), {}


class _NamesWeightMap(Loss):
    """Names its context keyword in its signature."""

    def _loss(self, pred, target, *, weight_map, **context):
        return ((pred - target).abs() * weight_map).mean(), {}


class _NeedsKernel(Loss):
    def __init__(self, kernel):
        super().__init__()
        self.kernel = kernel

    def _loss(self, pred, target, **context):
        return (pred - target).abs().mean(), {}


@pytest.mark.parametrize(
    ("cls", "missing"),
    [(_NeedsDoseMap, "dose_map"), (_NamesWeightMap, "weight_map"), (_NeedsKernel, "kernel")],
)
def test_a_loss_without_a_factory_fails_with_a_clear_message(monkeypatch, cls, missing):
    monkeypatch.setitem(LOSS_TYPES, "contract_probe", cls)
    monkeypatch.setitem(CASES, "type:contract_probe", _type_case("contract_probe"))
    with pytest.raises(pytest.fail.Exception) as info:
        _setup("type:contract_probe", 2).call(identical=True)
    message = str(info.value)
    assert missing in message and "contract_probe" in message
    assert ("CONTEXT_FACTORIES" if missing != "kernel" else "CONSTRUCTOR_FACTORIES") in message


def test_a_registered_loss_with_a_factory_is_accepted(monkeypatch):
    """The same probe loss passes every contract once its keyword has a factory."""
    monkeypatch.setitem(LOSS_TYPES, "contract_probe", _NeedsDoseMap)
    monkeypatch.setitem(CASES, "type:contract_probe", _type_case("contract_probe"))
    monkeypatch.setitem(CONTEXT_FACTORIES, "dose_map", lambda im: torch.ones_like(im.target))
    s = _setup("type:contract_probe", 2)
    value, _, ctx = s.call(identical=True)
    assert set(ctx) == {"dose_map"} and float(value) == 0.0
    assert float(s.call(identical=False)[0]) > 0
