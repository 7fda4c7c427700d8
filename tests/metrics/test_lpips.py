import pytest
import torch
import torch.nn.functional as F

from spectdl.errors import InputError
from spectdl.metrics import LPIPS
from spectdl.metrics.functional import LPIPSNetwork, lpips


@pytest.fixture(scope="module")
def alex():
    return LPIPSNetwork("alex", generator=torch.Generator().manual_seed(0)).double()


def _images(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64) * 4.0


def _reference_lpips(net, x0, x1, lin_weights):
    """The LPIPS equation written out directly, on 3-channel inputs in [-1, 1]."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=x0.dtype).reshape(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=x0.dtype).reshape(1, 3, 1, 1)
    f0 = net.backbone((x0 - shift) / scale)
    f1 = net.backbone((x1 - shift) / scale)
    total = 0.0
    for w, name in zip(lin_weights, f0):
        a = f0[name] / (f0[name].norm(dim=1, keepdim=True) + 1e-10)
        b = f1[name] / (f1[name].norm(dim=1, keepdim=True) + 1e-10)
        total = total + (((a - b) ** 2) * w.reshape(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_identity_zero_symmetry_and_equation(alex):
    x, y = _images((2, 1, 64, 64), 1), _images((2, 1, 64, 64), 2)
    assert torch.equal(lpips(x, x, 4.0, network=alex, reduction="none"), torch.zeros(2, dtype=torch.float64))
    d_xy = lpips(x, y, 4.0, network=alex, reduction="none")
    d_yx = lpips(y, x, 4.0, network=alex, reduction="none")
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-12, atol=0)
    assert bool((d_xy > 0).all())
    ones = [torch.ones(c, dtype=torch.float64) for c in (64, 192, 384, 256, 256)]
    x3, y3 = (x / 2 - 1).expand(-1, 3, -1, -1), (y / 2 - 1).expand(-1, 3, -1, -1)
    expected = _reference_lpips(alex, x3, y3, ones)
    torch.testing.assert_close(d_xy, expected, rtol=1e-7, atol=0)
    assert float(lpips(x, y, 4.0, network=alex)) == pytest.approx(float(d_xy.mean()), rel=1e-12)


def test_lpips_linear_layers_load_from_the_published_file_layout(tmp_path):
    g = torch.Generator().manual_seed(9)
    weights = [torch.rand(1, c, 1, 1, generator=g) for c in (64, 128, 256, 512, 512)]
    # the published v0.1 files hold keys lin<k>.model.1.weight (a dropout sits at model.0)
    torch.save({f"lin{k}.model.1.weight": w for k, w in enumerate(weights)}, tmp_path / "vgg.pth")
    net = LPIPSNetwork("vgg", lpips_weights_path=tmp_path / "vgg.pth",
                       generator=torch.Generator().manual_seed(5)).double()
    x, y = _images((1, 3, 32, 32), 3), _images((1, 3, 32, 32), 4)
    expected = _reference_lpips(net, x / 2 - 1, y / 2 - 1, [w.double().reshape(-1) for w in weights])
    torch.testing.assert_close(lpips(x, y, 4.0, network=net, reduction="none"), expected, rtol=1e-7, atol=0)
    torch.save({"lin0.model.1.weight": weights[0]}, tmp_path / "short.pth")
    with pytest.raises(InputError, match="lin0..lin4"):
        LPIPSNetwork("vgg", lpips_weights_path=tmp_path / "short.pth")


def test_lpips_grey_3d_mask_and_gradient(alex):
    x, y = _images((1, 1, 40, 40, 3), 5), _images((1, 1, 40, 40, 3), 6)
    # grey input is repeated to 3 channels
    grey = float(lpips(x[..., 0], y[..., 0], 4.0, network=alex))
    rgb = float(lpips(x[..., 0].repeat(1, 3, 1, 1), y[..., 0].repeat(1, 3, 1, 1), 4.0, network=alex))
    assert grey == pytest.approx(rgb, rel=1e-12)
    # a volume is the mean over its axial slices
    per_slice = [float(lpips(x[..., k], y[..., k], 4.0, network=alex)) for k in range(3)]
    assert float(lpips(x, y, 4.0, network=alex)) == pytest.approx(sum(per_slice) / 3, rel=1e-12)
    # a mask averages the distance maps, upsampled to the image, over the region
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[5:20, 10:30] = True
    x2, y2 = x[..., 0], y[..., 0]
    maps = alex.distance_maps((x2 / 2 - 1).expand(-1, 3, -1, -1), (y2 / 2 - 1).expand(-1, 3, -1, -1))
    up = sum(F.interpolate(m, size=(40, 40), mode="bilinear", align_corners=False) for m in maps)
    got = float(lpips(x2, y2, 4.0, network=alex, mask=mask))
    assert got == pytest.approx(float(up[0, 0][mask].mean()), rel=1e-10)
    p = x2.clone().requires_grad_(True)
    lpips(p, y2, 4.0, network=alex).backward()
    assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0


def test_lpips_class_and_missing_weights(alex, tmp_path):
    x, y = _images((3, 1, 48, 48), 7), _images((3, 1, 48, 48), 8)
    metric = LPIPS(4.0, network=alex)
    metric.update(x[:1], y[:1])
    metric.update(x[1:], y[1:])
    assert float(metric.compute()) == pytest.approx(float(lpips(x, y, 4.0, network=alex)), rel=1e-12)
    with pytest.raises(InputError, match="alexnet-owt-7be5be79.pth"):
        lpips(x, y, 4.0)
    with pytest.raises(InputError, match="vgg.pth"):
        LPIPS(4.0, net="vgg", weights_path=tmp_path / "vgg16.pth")
    with pytest.raises(InputError, match="does not exist"):
        lpips(x, y, 4.0, weights_path=tmp_path / "a.pth", lpips_weights_path=tmp_path / "b.pth")
    with pytest.raises(InputError, match="channels"):
        lpips(torch.rand(1, 2, 48, 48), torch.rand(1, 2, 48, 48), 1.0, network=alex)
    with pytest.raises(InputError, match="shape"):
        lpips(x, y[:, :, :40], 4.0, network=alex)
