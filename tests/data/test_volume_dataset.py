import pytest
import torch

from spectdl.data import VolumeDataset
from spectdl.data.transforms import RandomRotate
from spectdl.errors import InputError


def _volumes():
    g = torch.Generator().manual_seed(0)
    return {c: {"a": torch.rand(1, 6, 6, 4, generator=g), "b": torch.rand(1, 6, 6, 4, generator=g),
                "t": torch.rand(1, 6, 6, 4, generator=g), "lab": torch.randint(0, 3, (1, 6, 6, 4), generator=g)}
            for c in ("c1", "c2")}


def test_samples_stack_the_keys_and_repeat_with_their_own_draws():
    vols = _volumes()
    ds = VolumeDataset(vols, input=["a", "b"], target=["t"], extras=["lab"], repeats=2, seed=1,
                       transform=RandomRotate(("xy",), step_deg=90.0))
    assert len(ds) == 4
    s = VolumeDataset(vols, input=["a", "b"], target=["t"], extras=["lab"])[1]
    assert s["case_id"] == "c2" and torch.equal(s["input"], torch.cat([vols["c2"]["a"], vols["c2"]["b"]]))
    assert torch.equal(s["target"], vols["c2"]["t"]) and torch.equal(s["lab"], vols["c2"]["lab"])
    # The same index gives the same draw; a repeat of a case may differ, and input and labels turn together.
    assert torch.equal(ds[2]["input"], ds[2]["input"])
    for i in range(4):
        x = ds[i]
        base = vols[x["case_id"]]
        k = next(k for k in range(4) if torch.allclose(x["target"], torch.rot90(base["t"], k, dims=(1, 2)), atol=1e-6))
        assert torch.equal(x["lab"], torch.rot90(base["lab"], k, dims=(1, 2)))


def test_missing_keys_and_bad_indices_are_named():
    with pytest.raises(InputError, match="case c1: no"):
        VolumeDataset(_volumes(), input=["zz"], target=["t"])
    with pytest.raises(InputError, match="index"):
        VolumeDataset(_volumes(), input=["a"], target=["t"])[5]
