from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from spectdl.errors import InputError
from spectdl.training.config import DataConfig
from spectdl.training.data import EpochSampler, make_loader, split_batch

from .conftest import BlurDataset


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(10, seed=3), EpochSampler(10, seed=3)
    a.set_epoch(2)
    for e in (0, 1, 2):  # b reaches epoch 2 by another path: same order
        b.set_epoch(e)
    assert list(a) == list(b)
    assert sorted(a) == list(range(10))
    orders = set()
    for e in range(4):
        a.set_epoch(e)
        orders.add(tuple(a))
    assert len(orders) == 4  # a new permutation every epoch
    c = EpochSampler(10, seed=4)
    c.set_epoch(2)
    a.set_epoch(2)
    assert list(c) != list(a)


def test_unshuffled_sampler_is_in_order():
    s = EpochSampler(5, seed=0, shuffle=False)
    s.set_epoch(7)
    assert list(s) == [0, 1, 2, 3, 4]


def test_processes_split_the_epoch_like_distributed_sampler(monkeypatch):
    s = EpochSampler(10, seed=1)
    s.set_epoch(1)
    full = list(s)
    parts = []
    for rank in range(3):
        monkeypatch.setattr(EpochSampler, "_layout", staticmethod(lambda r=rank: (r, 3)))
        assert len(s) == 4  # ceil(10 / 3)
        parts.append(list(s))
    padded = (full * 2)[:12]
    assert [padded[r::3] for r in range(3)] == parts
    assert set(sum(parts, [])) == set(range(10))


def test_make_loader_batches_dicts_and_seeds_workers():
    ds = BlurDataset(n=5)
    loader = make_loader(ds, DataConfig(batch_size=2), seed=0, train=True, name="train_data")
    batches = list(loader)
    assert [b["input"].shape[0] for b in batches] == [2, 2, 1]
    seen = torch.cat([b["input"] for b in batches])
    index = [next(i for i in range(5) if torch.equal(row, ds.x[i])) for row in seen]
    assert sorted(index) == list(range(5)) and index != list(range(5))  # every sample once, shuffled
    assert isinstance(loader.sampler, EpochSampler) and loader.generator is loader.sampler.worker_generator
    own = DataLoader(ds, batch_size=3)
    assert make_loader(own, DataConfig(), 0, True, "train_data") is own
    assert make_loader(None, DataConfig(), 0, False, "val_data") is None


def test_bad_data_and_batches():
    with pytest.raises(InputError, match="train_data: expected a torch Dataset"):
        make_loader(42, DataConfig(), 0, True, "train_data")
    with pytest.raises(InputError, match="train_data: the dataset is empty"):
        make_loader([], DataConfig(), 0, True, "train_data")
    with pytest.raises(InputError, match="missing key 'target'"):
        split_batch({"input": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(InputError, match="expected a dict with 'input' and 'target'"):
        split_batch((torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)))
    with pytest.raises(InputError, match=r"batch\['target'\]: found \(1, 4\)"):
        split_batch({"input": torch.zeros(1, 1, 4, 4), "target": torch.zeros(1, 4)})
    x, y, ctx = split_batch({"input": torch.zeros(1, 1, 4, 4), "target": torch.ones(1, 1, 4, 4), "lesion_mask": 1})
    assert ctx == {"lesion_mask": 1} and y.sum() == 16
