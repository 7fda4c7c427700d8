from __future__ import annotations

import pytest
import torch

import spectdl.models as models
from spectdl.errors import ConfigError
from spectdl.models import registry

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
