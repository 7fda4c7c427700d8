import numpy as np
import pytest
import torch

from spectdl.data.transforms import MatchCounts, NormalizeMean, Scale, replay
from spectdl.errors import InputError


def test_normalize_mean_divides_each_key_by_its_own_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 8, 8, generator=g, dtype=torch.float64) * 50
    y = torch.rand(1, 8, 8, generator=g, dtype=torch.float64) * 300
    mask = (y > 150).float()
    out, spec = NormalizeMean()({"input": x, "target": y, "lesion_mask": mask})
    assert out["input"].numpy().reshape(2, -1).mean(1) == pytest.approx([1.0, 1.0])
    assert out["target"].numpy().mean() == pytest.approx(1.0)
    assert torch.equal(out["lesion_mask"], mask)  # masks are never scaled
    assert spec["factors"]["target"] == pytest.approx([1 / np.mean(y.numpy())])
    restored = Scale(spec["factors"]).inverse().apply(out)
    torch.testing.assert_close(restored["target"], y)


def test_normalize_by_a_reference_keeps_the_ratio():
    x = torch.full((1, 4, 4), 2.0)
    out, _ = NormalizeMean(reference="input")({"input": x, "target": 3 * x})
    assert out["input"].mean() == pytest.approx(1.0) and out["target"].mean() == pytest.approx(3.0)
    with pytest.raises(InputError, match="mean of 'input' is 0.0"):
        NormalizeMean(per_channel=False)({"input": torch.zeros(1, 4, 4), "target": x})


def test_count_consistency_for_planar_pairs():
    g = torch.Generator().manual_seed(1)
    target = torch.poisson(torch.full((1, 32, 16), 20.0), generator=g)
    low = torch.poisson(torch.full((1, 32, 16), 10.0), generator=g)  # a scan at twice the speed
    out, spec = MatchCounts()({"input": low, "target": target})
    assert float(out["input"].sum()) == pytest.approx(float(target.sum()), rel=1e-6)
    assert spec["factors"]["input"] == pytest.approx(float(target.sum() / low.sum()))
    sped = Scale({"input": 2.0}).apply({"input": low})
    assert torch.equal(sped["input"], 2 * low)
    assert torch.equal(replay({"input": low, "target": target}, spec)["input"], out["input"])
    with pytest.raises(InputError, match="channels"):
        Scale({"input": [1.0, 2.0]}).apply({"input": low})


def test_count_consistency_can_leave_the_bladder_out():
    g = torch.Generator().manual_seed(2)
    bladder = torch.zeros(1, 32, 16, dtype=torch.bool)
    bladder[:, 24:30, 5:11] = True
    lam = torch.full((1, 32, 16), 20.0)
    target = torch.poisson(torch.where(bladder, 20 * lam, lam), generator=g)
    low = torch.poisson(torch.where(bladder, 5 * lam, lam) / 2, generator=g)  # less urine in the earlier scan
    sample = {"input": low, "target": target, "bladder": bladder}
    out, spec = MatchCounts(exclude="bladder")(sample)
    assert float(out["input"][~bladder].sum()) == pytest.approx(float(target[~bladder].sum()), rel=1e-6)
    assert spec["factors"]["input"] == pytest.approx(2.0, rel=0.03)  # the speed factor, not the bladder's
    assert MatchCounts()(sample)[1]["factors"]["input"] > 3.0  # counting the bladder would overshoot
    with pytest.raises(InputError):
        MatchCounts(exclude="mask")({"input": low, "target": target})


def test_organ_masks_give_one_float_mask_per_region_and_collate_to_a_dict():
    from torch.utils.data import default_collate

    from spectdl.data.transforms import OrganMasks, replay

    lab = torch.tensor([[[0, 2, 3], [3, 4, 2]]])  # [1, 2, 3]
    t = OrganMasks({"myocardium": [2], "blood_pool": [3, 4]})
    out = t.apply({"organ_labels": lab})
    assert out["masks"]["myocardium"].dtype == torch.float32
    assert out["masks"]["myocardium"].tolist() == [[[0, 1, 0], [0, 0, 1]]]
    assert out["masks"]["blood_pool"].tolist() == [[[0, 0, 1], [1, 1, 0]]]
    again = replay({"organ_labels": lab}, t.spec())
    assert torch.equal(again["masks"]["blood_pool"], out["masks"]["blood_pool"])
    batch = default_collate([out, out])
    assert batch["masks"]["myocardium"].shape == (2, 1, 2, 3)
