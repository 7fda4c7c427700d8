"""Contracts every registered model keeps, checked on the tiny example it is registered with.

The tests are parametrized on ``spectdl.models.available()``, so a model is tested from the moment it
is registered, and a model registered without a ``ModelExample`` fails here. For each model:

* forward and backward in training mode: the output shape of the example, a finite output, and a
  finite gradient for the input and for every parameter that requires one;
* the output shape in eval mode;
* every documented constraint of the example (``Violation``): the offending input raises
  ``spectdl.errors.InputError`` with the documented text and the offending value, not an error from
  inside torch;
* determinism: two builds under the same seed have identical weights and identical eval outputs,
  and another seed gives other weights;
* no global state left behind: default dtype, grad and inference mode, deterministic-algorithm and
  matmul-precision settings, ``torch.backends`` flags, thread count and, across an eval forward,
  the global RNG state.
"""

from __future__ import annotations

import re

import pytest
import torch

import spectdl.models as models
from spectdl.errors import InputError
from spectdl.models import registry

NAMES = models.available()


def _example(name: str) -> registry.ModelExample:
    ex = registry.example(name)
    if ex is None:
        pytest.fail(
            f"model {name!r} is registered without an example; register it with "
            "register(name, example=ModelExample(kwargs=..., input_shape=..., output_shape=...))"
        )
    return ex


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    # Weight initialisation draws from the global generator: fork it so that the tests neither
    # depend on their order nor move the generator of the tests after them.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return models.build(name, **_example(name).kwargs)


def _input(shape, seed: int = 1) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=torch.Generator().manual_seed(seed))


def _output(y):
    return y[0] if isinstance(y, tuple) else y


def _global_state() -> dict:
    b = torch.backends
    return {
        "default_dtype": torch.get_default_dtype(),
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "num_threads": torch.get_num_threads(),
        "cudnn.enabled": b.cudnn.enabled,
        "cudnn.benchmark": b.cudnn.benchmark,
        "cudnn.deterministic": b.cudnn.deterministic,
        "cudnn.allow_tf32": b.cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": b.cuda.matmul.allow_tf32,
        "cuda.matmul.allow_fp16_reduced": b.cuda.matmul.allow_fp16_reduced_precision_reduction,
        "mkldnn.enabled": b.mkldnn.enabled,
    }


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_an_example(name):
    ex = _example(name)
    assert len(ex.input_shape) >= 2 and len(ex.output_shape) >= 2
    assert ex.input_shape[0] == ex.output_shape[0], "the example must keep the batch size"


def test_a_model_without_an_example_fails_the_contract():
    @registry.register("contract_test_no_example")
    class NoExample(torch.nn.Module):
        pass

    try:
        assert "contract_test_no_example" in models.available()
        assert registry.example("contract_test_no_example") is None
        with pytest.raises(pytest.fail.Exception, match="registered without an example"):
            _example("contract_test_no_example")
    finally:
        registry._REGISTRY.pop("contract_test_no_example")


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_and_output_shape(name):
    ex = _example(name)
    model = _build(name).train()
    x = _input(ex.input_shape).requires_grad_(True)
    out = _output(model(x))
    assert tuple(out.shape) == ex.output_shape
    assert torch.isfinite(out).all()
    # A random weighting: a loss such as mean(out²) can be constant after a final BatchNorm.
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weight).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, "the model has no trainable parameter"
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    not_finite = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not not_finite, f"parameters with a non-finite gradient: {not_finite[:5]}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)

    model.eval()
    with torch.no_grad():
        out_eval = _output(model(_input(ex.input_shape, seed=3)))
    assert tuple(out_eval.shape) == ex.output_shape and torch.isfinite(out_eval).all()


def _names_the_found_value(message: str, shape) -> bool:
    shape = tuple(shape)
    found = (str(shape), str(shape[2:]), f"batch size {shape[0]}")
    return any(f in message for f in found)


@pytest.mark.parametrize("name", NAMES)
def test_documented_constraints_raise_input_error(name):
    ex = _example(name)
    model = _build(name)
    for violation in ex.violations:
        model.train(violation.training)
        with pytest.raises(InputError, match=re.escape(violation.match)) as err:
            model(_input(violation.input_shape))
        message = str(err.value)
        assert _names_the_found_value(message, violation.input_shape), message
    # The example's own input passes the same checks in the same modes.
    for training in sorted({v.training for v in ex.violations} | {False}):
        model.train(training)
        with torch.no_grad():
            assert tuple(_output(model(_input(ex.input_shape))).shape) == ex.output_shape


@pytest.mark.parametrize("name", NAMES)
def test_seeded_builds_are_identical(name):
    ex = _example(name)
    first, second, other = _build(name, seed=5), _build(name, seed=5), _build(name, seed=6)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert list(a) == list(b) == list(c)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a), "the seed does not reach the initialisation"
    x = _input(ex.input_shape)
    first.eval(), second.eval()
    with torch.no_grad():
        assert torch.equal(_output(first(x)), _output(second(x)))


@pytest.mark.parametrize("name", NAMES)
def test_no_global_state_left_behind(name):
    ex = _example(name)
    before = _global_state()
    model = _build(name).train()
    _output(model(_input(ex.input_shape))).sum().backward()
    model.eval()
    rng = torch.get_rng_state()
    with torch.no_grad():
        _output(model(_input(ex.input_shape)))
    _output(model(_input(ex.input_shape)))
    assert torch.equal(torch.get_rng_state(), rng), "an eval forward moved the global RNG"
    assert _global_state() == before


@pytest.mark.parametrize("name", NAMES)
def test_constructor_order(name):
    """``(spatial_dims, in_channels, out_channels, *, ...)`` for N-D networks, ``(in_channels,
    out_channels, *, ...)`` for fixed-dimension ones: the rest keyword-only (MONAI's order)."""
    import inspect

    params = list(inspect.signature(registry._REGISTRY[name]).parameters.values())
    leading = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    if "spatial_dims" in [p.name for p in params]:
        assert leading == ["spatial_dims", "in_channels", "out_channels"], leading
    else:
        assert leading == ["in_channels", "out_channels"], leading
    allowed = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    assert all(p.kind in allowed for p in params), "no *args or **kwargs in a model constructor"
