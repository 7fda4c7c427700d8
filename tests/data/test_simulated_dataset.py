import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from spectdl.data import SimulatedDataset, read_sample
from spectdl.data.transforms import RandomFlip, RandomRotate, replay
from spectdl.errors import InputError


def test_splits_cover_the_samples_and_defaults_pair_low_counts_with_activity(tiny_run):
    sets = {s: SimulatedDataset(tiny_run.out_dir, s) for s in ("train", "val", "test")}
    assert [len(d) for d in sets.values()] == [6, 2, 2]
    val = sets["val"]
    assert (val.input, val.target) == (("counts_low",), ("activity",))
    sample = val[1]
    stored = read_sample(tiny_run.out_dir, 7)  # val = samples 6 and 7
    assert torch.equal(sample["input"], stored["counts_low"])
    assert torch.equal(sample["target"], stored["activity"])
    assert len(SimulatedDataset(tiny_run.out_dir, None)) == 10
    with pytest.raises(InputError, match="split: 'valid' is not in the manifest"):
        SimulatedDataset(tiny_run.out_dir, "valid")


def test_spectnet_input_stacks_the_wrap_padded_sinogram_and_mu_map(tiny_run):
    with pytest.raises(InputError, match="sinogram_rows"):
        SimulatedDataset(tiny_run.out_dir, "train", input=("counts_full", "mu_per_cm"))
    ds = SimulatedDataset(tiny_run.out_dir, "train", keys=("input", "target", "labels", "index"),
                          input=("counts_full", "mu_per_cm"), sinogram_rows=32)
    s = ds[2]
    stored = read_sample(tiny_run.out_dir, 2)
    assert s["input"].shape == (2, 32, 32) and s["index"] == 2
    sino = stored["counts_full"][0]  # 16 views: rows 16..31 repeat views 0..15
    assert torch.equal(s["input"][0], torch.cat([sino, sino], 0))
    assert torch.equal(s["input"][1], stored["mu_per_cm"][0])
    assert s["labels"].dtype == torch.int64


def test_loader_batches_and_pickles_without_open_files(tiny_run):
    ds = SimulatedDataset(tiny_run.out_dir, "train", keys=("input", "target", "index"))
    _ = ds[0]  # opens a shard
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._files == {} and torch.equal(clone[3]["input"], ds[3]["input"])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["input"].shape == (4, 1, 16, 32) and batch["index"].tolist() == [0, 1, 2, 3]
    ds.close()


def test_transforms_draw_per_seed_epoch_and_index_and_replay(tiny_run):
    t = RandomRotate(("xy",), step_deg=30.0)
    ds = SimulatedDataset(tiny_run.out_dir, "train", keys=("target", "labels"), transform=t, seed=5,
                          record_params=True)
    first = ds[1]
    assert torch.equal(ds[1]["target"], first["target"])  # same seed, epoch, index: same draw
    plain = SimulatedDataset(tiny_run.out_dir, "train", keys=("target", "labels"))[1]
    again = replay({"target": plain["target"], "labels": plain["labels"]}, first["transform_params"])
    assert torch.equal(again["target"], first["target"]) and torch.equal(again["labels"], first["labels"])
    angles = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        angles.add(ds[1]["transform_params"])
    assert len(angles) > 1
    flips = SimulatedDataset(tiny_run.out_dir, "train", transform=RandomFlip((0,), p=1.0, keys=("target",)))
    assert torch.equal(flips[0]["target"], torch.flip(plain_target(tiny_run, 0), [1]))


def plain_target(run, index):
    return read_sample(run.out_dir, index, ["activity"])["activity"]
