import pytest
import torch

from spectdl.data.transforms import AxialSlice, Crop, RandomAxialSlice, RandomCrop, replay
from spectdl.errors import InputError


def test_random_patches_have_the_size_and_come_from_the_image():
    img = torch.arange(1024 * 256, dtype=torch.float32).reshape(1, 1024, 256)
    sample = {"input": img, "target": img + 1, "lesion_mask": (img % 7 == 0).float()}
    g = torch.Generator().manual_seed(0)
    starts = []
    for _ in range(200):
        out, spec = RandomCrop((192, 192))(sample, g)
        i, j = spec["start"]
        starts.append((i, j))
        assert out["input"].shape == (1, 192, 192)
        assert torch.equal(out["input"], img[:, i:i + 192, j:j + 192])
        assert torch.equal(out["target"], out["input"] + 1)
        assert torch.equal(out["lesion_mask"], (out["input"] % 7 == 0).float())
    rows, cols = zip(*starts)
    assert 0 <= min(rows) and max(rows) <= 1024 - 192 and 0 <= min(cols) and max(cols) <= 256 - 192
    # Uniform start positions: means near the middle of [0, 832] and [0, 64] (≈ 3.5 standard errors).
    assert sum(rows) / 200 == pytest.approx(416, abs=60) and sum(cols) / 200 == pytest.approx(32, abs=5)
    assert torch.equal(replay(sample, spec)["input"], out["input"])


def test_slices_of_a_volume():
    vol = torch.rand(2, 5, 6, 7)
    s = {"input": vol, "target": vol * 2}
    out = AxialSlice(3).apply(s)
    assert torch.equal(out["input"], vol[..., 3]) and out["target"].shape == (2, 5, 6)
    g = torch.Generator().manual_seed(1)
    picked = {RandomAxialSlice().draw(s, g).index for _ in range(200)}
    assert picked == set(range(7))
    assert torch.equal(Crop([1, 2, 3], [2, 2, 2]).apply(s)["input"], vol[:, 1:3, 2:4, 3:5])
    # One view of projections [C, views, u, v]: slices across axis 0, replayable.
    view = AxialSlice(4, axis=0).apply(s)
    assert torch.equal(view["input"], vol[:, 4]) and view["target"].shape == (2, 6, 7)
    drawn = {RandomAxialSlice(axis=0).draw(s, g).index for _ in range(100)}
    assert drawn == set(range(5))
    t = RandomAxialSlice(axis=0).draw(s, g)
    assert torch.equal(replay(s, t.spec())["input"], t.apply(s)["input"])


def test_crop_errors():
    with pytest.raises(InputError, match="larger than the sample"):
        RandomCrop((192, 192)).draw({"x": torch.zeros(1, 100, 256)}, torch.Generator())
    with pytest.raises(InputError, match="2-D patch for a 3-D sample"):
        RandomCrop((4, 4)).draw({"x": torch.zeros(1, 8, 8, 8)}, torch.Generator())
    with pytest.raises(InputError, match="outside the 7 slices of axis 2"):
        AxialSlice(7).apply({"x": torch.zeros(1, 4, 4, 7)})
    with pytest.raises(InputError, match="outside the 4 slices of axis 0"):
        AxialSlice(5, axis=0).apply({"x": torch.zeros(1, 4, 4, 7)})
    with pytest.raises(InputError, match="axis 3"):
        RandomAxialSlice(axis=3)
    with pytest.raises(InputError, match="leaves axis 1"):
        Crop([0, 5], [4, 4]).apply({"x": torch.zeros(1, 8, 8)})


def test_channel_takes_one_view_of_every_multi_view_key_and_keeps_single_channel_masks():
    from spectdl.data.transforms import Channel, RandomChannel, from_spec

    views = torch.arange(2 * 6 * 4, dtype=torch.float32).reshape(2, 6, 4)
    sample = {"input": views, "target": views + 100, "labels": torch.ones(1, 6, 4, dtype=torch.int64)}
    out = Channel(1).apply(sample)
    assert torch.equal(out["input"], views[1:2]) and torch.equal(out["target"], views[1:2] + 100)
    assert out["labels"] is sample["labels"]
    assert torch.equal(from_spec(Channel(1).spec()).apply(sample)["input"], views[1:2])  # replayable
    picked = []
    for s in range(200):
        t = RandomChannel().draw(sample, torch.Generator().manual_seed(s))
        o = t.apply(sample)
        assert torch.equal(o["target"] - o["input"], torch.full((1, 6, 4), 100.0))  # the same view for both
        picked.append(t.index)
    # Both views drawn, about equally often (binomial 200 × 1/2: 100 ± 3.5 SD).
    assert 75 < sum(picked) < 125
    with pytest.raises(InputError, match="Channel: index 2 is outside the 2 channels of 'input'"):
        Channel(2).apply(sample)
    with pytest.raises(InputError, match=r"RandomChannel: the keys have \[2, 3\] channels"):
        RandomChannel().draw({"a": views, "b": torch.zeros(3, 6, 4)}, torch.Generator())
