"""Tests of spectdl.metrics.backbones: the frozen feature networks of LPIPS, FID and the perceptual loss."""

import pytest
import torch

from spectdl.errors import InputError
from spectdl.metrics.backbones import (
    AlexNetFeatures,
    InceptionV3Features,
    VGGFeatures,
    vgg19_features,
)


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def nets():
    """Each real-size network built once (random weights from a fixed generator)."""
    g = torch.Generator().manual_seed(0)
    return {
        "vgg16": VGGFeatures("vgg16", generator=g),
        "vgg19": vgg19_features(["relu1_2", "relu3_4", "relu5_4"], generator=g),
        "alexnet": AlexNetFeatures(generator=g),
        "inception": InceptionV3Features(resize_input=False, generator=g),
    }


def test_parameter_counts_equal_the_published_networks(nets):
    # torchvision's published totals minus their classifier heads:
    # VGG16 138,357,544 and VGG19 143,667,240 minus 123,642,856 (three FC layers);
    # AlexNet 61,100,840 minus 58,631,144; Inception-v3 27,161,264 minus AuxLogits 3,326,696
    # and fc 2,049,000.
    assert _n_params(nets["vgg16"]) == 14_714_688
    assert _n_params(nets["vgg19"]) == 20_024_384
    assert _n_params(nets["alexnet"]) == 2_469_696
    assert _n_params(nets["inception"]) == 21_785_568


def test_state_dict_names_follow_the_published_files(nets):
    vgg16 = nets["vgg16"].state_dict()
    assert vgg16["features.28.weight"].shape == (512, 512, 3, 3) and "features.29.weight" not in vgg16
    assert nets["vgg19"].state_dict()["features.34.weight"].shape == (512, 512, 3, 3)
    assert nets["alexnet"].state_dict()["features.10.weight"].shape == (256, 256, 3, 3)
    inc = nets["inception"].state_dict()
    assert inc["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert inc["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert inc["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)


def test_named_layers_and_shapes(nets):
    net = nets["vgg19"]
    out = net(torch.rand(1, 3, 32, 32))
    assert list(out) == ["relu1_2", "relu3_4", "relu5_4"]
    assert out["relu1_2"].shape == (1, 64, 32, 32) and out["relu3_4"].shape == (1, 256, 8, 8)
    assert out["relu5_4"].shape == (1, 512, 2, 2) and bool((out["relu5_4"] >= 0).all())
    alex = nets["alexnet"](torch.rand(2, 3, 64, 64))
    assert [v.shape[1] for v in alex.values()] == [64, 192, 384, 256, 256]
    inc = nets["inception"]
    feats = inc(torch.rand(2, 3, 75, 75) * 2 - 1)
    assert feats.shape == (2, 2048) and bool(torch.isfinite(feats).all())
    assert not any(p.requires_grad for p in inc.parameters()) and not inc.training
    with pytest.raises(InputError, match="unknown"):
        VGGFeatures("vgg16", ["relu5_4"])
    with pytest.raises(InputError, match="3, H, W"):
        net(torch.rand(1, 1, 32, 32))
    with pytest.raises(InputError, match="75"):
        inc(torch.rand(1, 3, 40, 40))


def test_random_init_is_reproducible_from_the_generator():
    a = AlexNetFeatures(generator=torch.Generator().manual_seed(3))
    b = AlexNetFeatures(generator=torch.Generator().manual_seed(3))
    c = AlexNetFeatures(generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_weights_load_from_a_published_style_file(tmp_path, nets):
    src = VGGFeatures("vgg16", ["relu2_2"], generator=torch.Generator().manual_seed(1))
    state = dict(src.state_dict())
    state["classifier.0.weight"] = torch.zeros(3, 3)  # a full torchvision file also has the head
    torch.save(state, tmp_path / "vgg16-397923af.pth")
    loaded = VGGFeatures("vgg16", ["relu2_2"], weights_path=tmp_path / "vgg16-397923af.pth")
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded(x)["relu2_2"], src(x)["relu2_2"])
    from safetensors.torch import save_file

    inc = nets["inception"]
    inc_state = {k: v for k, v in inc.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(inc_state, str(tmp_path / "inception.safetensors"))
    inc2 = InceptionV3Features(tmp_path / "inception.safetensors", resize_input=False)
    x = torch.rand(1, 3, 75, 75)
    assert torch.equal(inc(x), inc2(x))


def test_missing_or_wrong_weights_explain_how_to_get_them(tmp_path, nets):
    with pytest.raises(InputError, match="vgg19-dcbb9e9d.pth"):
        VGGFeatures("vgg19", ["relu5_4"], weights_path=tmp_path / "nope.pth")
    with pytest.raises(InputError, match="pt_inception-2015-12-05-6726825d.pth"):
        InceptionV3Features(tmp_path / "nope.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(InputError, match="missing keys"):
        AlexNetFeatures(weights_path=tmp_path / "partial.pth")
    state = dict(nets["alexnet"].state_dict())
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, tmp_path / "bad_shape.pth")
    with pytest.raises(InputError, match="shape"):
        AlexNetFeatures(weights_path=tmp_path / "bad_shape.pth")
