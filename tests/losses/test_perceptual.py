import pytest
import torch
from torch import nn

from spectdl.errors import InputError
from spectdl.losses import PerceptualLoss
from spectdl.metrics.backbones import VGGFeatures


class TinyFeatures(nn.Module):
    """Two random conv layers on 3-channel input, returning named maps like VGGFeatures."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1).double()
        self.c2 = nn.Conv2d(4, 5, 3, padding=1, stride=2).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))

    def forward(self, x):
        if x.shape[1] != 3:
            raise ValueError("TinyFeatures needs 3 channels")
        a = torch.relu(self.c1(x))
        return {"a": a, "b": torch.relu(self.c2(a))}


def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64) * 5, torch.rand(shape, generator=g, dtype=torch.float64) * 5


def test_perceptual_loss_equals_weighted_feature_l1_of_grey_images_repeated_to_rgb():
    p, t = _pair((2, 1, 9, 10))
    net = TinyFeatures()
    loss = PerceptualLoss(net, layers=["a", "b"], layer_weights=[1.0, 0.25], data_range=5.0)
    with torch.no_grad():
        fp, ft = net(p.repeat(1, 3, 1, 1) / 5.0), net(t.repeat(1, 3, 1, 1) / 5.0)
    expected_a = (fp["a"] - ft["a"]).abs().mean()
    expected_b = (fp["b"] - ft["b"]).abs().mean()
    total, parts = loss(p, t, return_components=True)
    assert float(total) == pytest.approx(float(expected_a + 0.25 * expected_b), rel=1e-12)
    assert float(parts["b"]) == pytest.approx(float(expected_b), rel=1e-12)
    assert float(loss(t, t)) == 0.0
    l2 = PerceptualLoss(net, layers=["b"], criterion="l2", data_range=5.0)
    assert float(l2(p, t)) == pytest.approx(float(((fp["b"] - ft["b"]) ** 2).mean()), rel=1e-12)


def test_volumes_are_compared_slice_by_slice_and_gradients_reach_pred_only():
    p, t = _pair((1, 1, 6, 7, 3), seed=1)
    net = TinyFeatures(seed=1)
    loss = PerceptualLoss(net, layers=["a"])
    span = float(t.max() - t.min())  # default data range
    with torch.no_grad():
        slices = lambda v: v[0, 0].permute(2, 0, 1).unsqueeze(1).repeat(1, 3, 1, 1) / span  # noqa: E731
        expected = (net(slices(p))["a"] - net(slices(t))["a"]).abs().mean()
    p.requires_grad_(True)
    value = loss(p, t)
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-12)
    value.backward()
    assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0
    assert all(q.grad is None and not q.requires_grad for q in net.parameters())
    loss.train()
    assert not net.training


def test_vgg19_from_a_local_weights_file_with_imagenet_normalisation(tmp_path):
    vgg = VGGFeatures("vgg19", layers=["relu1_2", "relu2_1"], generator=torch.Generator().manual_seed(0))
    path = tmp_path / "vgg19.pth"
    torch.save(vgg.state_dict(), path)
    loss = PerceptualLoss(layers=["relu1_2", "relu2_1"], layer_weights={"relu2_1": 2.0}, weights_path=path, data_range=2.0)
    assert loss.imagenet_normalize and isinstance(loss.feature_extractor, VGGFeatures)
    g = torch.Generator().manual_seed(5)
    p, t = torch.rand(1, 1, 8, 8, generator=g) * 2, torch.rand(1, 1, 8, 8, generator=g) * 2
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        fp = vgg((p.repeat(1, 3, 1, 1) / 2.0 - mean) / std)
        ft = vgg((t.repeat(1, 3, 1, 1) / 2.0 - mean) / std)
    expected = (fp["relu1_2"] - ft["relu1_2"]).abs().mean() + 2.0 * (fp["relu2_1"] - ft["relu2_1"]).abs().mean()
    assert float(loss(p, t)) == pytest.approx(float(expected), rel=1e-5)


def test_bad_configurations_raise():
    net = TinyFeatures()
    p, t = _pair((1, 1, 8, 8))
    with pytest.raises(InputError, match="weights_path"):
        PerceptualLoss()
    with pytest.raises(InputError, match="layers"):
        PerceptualLoss(net, layers=["zz"])(p, t)
    with pytest.raises(InputError, match="layer_weights"):
        PerceptualLoss(net, layers=["a"], layer_weights=[1.0, 2.0])
    with pytest.raises(InputError, match="criterion"):
        PerceptualLoss(net, criterion="huber")
