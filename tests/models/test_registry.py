from __future__ import annotations

import pytest
import torch

import spectdl.models as models
from spectdl.errors import ConfigError
from spectdl.models import ModelExample, Violation, registry

SPEC_CLASSES = [
    "U2Net", "U2NetSmall", "Pix2PixGenerator", "PatchDiscriminator", "RRDBNet", "VGGDiscriminator",
    "SPECTnetEncoder", "SPECTnetDecoder", "SPECTnet", "DynConv3d", "DynUNet3d", "EDSR", "RCAN", "UNet",
]


def test_every_public_class_is_importable_and_registered():
    names = models.available()
    registered = set(registry._REGISTRY.values())
    for cls_name in SPEC_CLASSES:
        cls = getattr(models, cls_name)
        if cls_name == "SPECTnet":
            assert cls.from_channels in registered
        else:
            assert cls in registered, cls_name
    assert names == sorted(names) and len(names) >= len(SPEC_CLASSES)


@pytest.mark.parametrize(
    "name, kwargs, cls_name",
    [
        ("unet", dict(in_channels=2, out_channels=1, features=(4, 8)), "UNet"),
        ("EDSR", dict(in_channels=1, out_channels=1, num_blocks=1, features=8), "EDSR"),
        ("dynunet3d", dict(in_channels=2, out_channels=1, features=4, mode="static"), "DynUNet3d"),
        ("spectnet", dict(in_channels=2, out_channels=1), "SPECTnet"),
    ],
)
def test_build_by_name(name, kwargs, cls_name):
    model = models.build(name, **kwargs)
    assert isinstance(model, getattr(models, cls_name))


def test_build_unknown_name_lists_known_models():
    with pytest.raises(ConfigError) as err:
        models.build("u3net")
    assert "u3net" in str(err.value) and "u2net" in str(err.value) and "rcan" in str(err.value)


def test_register_rejects_a_second_object_under_one_name():
    @registry.register("test_only_dummy")
    class Dummy(torch.nn.Module):
        pass

    try:
        with pytest.raises(ConfigError):
            registry.register("test_only_dummy")(torch.nn.Identity)
        assert models.build("test_only_dummy").__class__ is Dummy
    finally:
        registry._REGISTRY.pop("test_only_dummy")


def test_example_is_stored_with_the_registration_and_read_only():
    ex = ModelExample(kwargs={"in_channels": 1}, input_shape=[2, 1, 4], output_shape=(2, 1, 4))
    assert ex.input_shape == (2, 1, 4)

    @registry.register("test_only_with_example", example=ex)
    class WithExample(torch.nn.Module):
        def __init__(self, in_channels: int = 1):
            super().__init__()

    try:
        assert registry.example("TEST_ONLY_WITH_EXAMPLE") is ex
        assert models.example("test_only_with_example") is ex
        with pytest.raises(TypeError):
            ex.kwargs["in_channels"] = 2  # read-only mapping
        assert isinstance(models.build("test_only_with_example", **ex.kwargs), WithExample)
    finally:
        registry._REGISTRY.pop("test_only_with_example")
        registry._EXAMPLES.pop("test_only_with_example")
    assert registry.example("unet").kwargs["spatial_dims"] == 2
    with pytest.raises(ConfigError, match="u3net"):
        registry.example("u3net")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ModelExample(kwargs=[1], input_shape=(1,), output_shape=(1,)), "kwargs"),
        (lambda: ModelExample(kwargs={}, input_shape=(1, 0), output_shape=(1,)), "input_shape"),
        (lambda: ModelExample(kwargs={}, input_shape=(1,), output_shape=()), "output_shape"),
        (lambda: ModelExample(kwargs={}, input_shape=(1,), output_shape=(1,), violations=[1]), "violations"),
        (lambda: Violation((2, 1), ""), "match"),
        (lambda: registry.register("x", example={"kwargs": {}}), "expected a ModelExample"),
    ],
)
def test_example_validation(make, match):
    with pytest.raises(ConfigError, match=match):
        make()
