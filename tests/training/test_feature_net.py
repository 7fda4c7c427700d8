import pytest
import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.metrics.backbones import PlanarFeatures, PooledFeatures
from spectdl.metrics.functional.fid import fid
from spectdl.metrics.functional.lpips import LPIPSNetwork, lpips
from spectdl.phantoms import wholebody_planar
from spectdl.training.feature_net import save_planar_features, train_planar_features


@pytest.fixture(scope="module")
def scans():
    p = wholebody_planar(VoxelGrid((800, 220), 2.26), batch_size=4, seed=2, height_mm=(1500.0, 1700.0),
                         total_counts=1.5e6)
    return p.anterior.float()


@pytest.fixture(scope="module")
def trained(scans):
    return train_planar_features(scans, seed=5, steps=30, batch_size=16, patch=48, channels=(8, 16, 32))


def test_training_is_deterministic_given_its_seed(scans, trained):
    net, record = trained
    again, _ = train_planar_features(scans, seed=5, steps=30, batch_size=16, patch=48, channels=(8, 16, 32))
    for (k, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    other, _ = train_planar_features(scans, seed=6, steps=30, batch_size=16, patch=48, channels=(8, 16, 32))
    assert not torch.equal(net.blocks[0][0].weight, other.blocks[0][0].weight)
    assert record["loss_last"] < record["loss_first"]  # the contrastive task is being learnt
    assert record["seed"] == 5 and record["channels"] == [8, 16, 32] and "contrastive" in record["kind"]
    assert not any(p.requires_grad for p in net.parameters())


def test_fallback_lpips_and_fid_behave_as_distances(scans, trained):
    net, _ = trained
    lp = LPIPSNetwork("planar", backbone=net)
    g = torch.Generator().manual_seed(0)
    ref = scans[:2]
    top = float(ref.max())
    half = torch.poisson(ref * 0.5, generator=g) / 0.5
    third = torch.poisson(ref / 3, generator=g) * 3
    d_same = lpips(ref, ref, top, network=lp, reduction="none")
    d_half = lpips(half, ref, top, network=lp, reduction="none")
    d_third = lpips(third, ref, top, network=lp, reduction="none")
    assert torch.all(d_same == 0) and torch.all(d_half > 0)
    assert torch.all(d_third > d_half)  # fewer counts, further from the reference
    extractor = PooledFeatures(net)
    sets = torch.cat([ref, ref]), torch.cat([third, third])
    assert float(fid(sets[0], sets[0], top, feature_extractor=extractor)) == pytest.approx(0.0, abs=1e-6)
    assert float(fid(sets[0], sets[1], top, feature_extractor=extractor)) > 0


def test_saved_weights_load_back(tmp_path, trained):
    net, record = trained
    path = save_planar_features(net, tmp_path / "planar.safetensors", record)
    back = PlanarFeatures((8, 16, 32), weights_path=path)
    for (k, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(Exception):
        save_planar_features(net, path, record)  # never overwrites unless asked


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="images"):
        train_planar_features(torch.rand(2, 3, 64, 64), seed=0)
    with pytest.raises(InputError, match="patch"):
        train_planar_features(torch.rand(2, 1, 32, 32), seed=0, patch=48)
    with pytest.raises(InputError, match="backbone"):
        LPIPSNetwork("planar")


def test_planar_loss_takes_the_fallback_features(tmp_path, scans, trained):
    from spectdl.losses import build_loss
    from spectdl.metrics.backbones import load_planar_features

    net, record = trained
    path = save_planar_features(net, tmp_path / "f.safetensors", record)
    assert load_planar_features(path).channels == (8, 16, 32)
    loss = build_loss({"study": "planar", "planar_features_path": str(path), "gan": 0.0, "bce": 0.0, "l1": 0.0})
    x = scans[:2, :, :192, :96]
    g = torch.Generator().manual_seed(1)
    noisy = (torch.poisson(x * 0.5, generator=g) / 0.5).requires_grad_(True)
    fake = torch.zeros(2, 1)
    same = loss(x, x, fake_logits=fake, real_logits=fake)
    worse = loss(noisy, x, fake_logits=fake, real_logits=fake)
    assert float(same.detach()) == 0.0 and float(worse.detach()) > 0
    worse.backward()
    assert torch.isfinite(noisy.grad).all() and float(noisy.grad.abs().sum()) > 0
    with pytest.raises(InputError, match="does not exist"):
        load_planar_features(tmp_path / "missing.safetensors")
