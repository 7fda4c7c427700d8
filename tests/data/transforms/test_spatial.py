import pytest
import torch
from scipy import ndimage

from spectdl.data.transforms import (
    Flip,
    RandomFlip,
    RandomRot90,
    RandomRotate,
    Rot90,
    Rotate,
    replay,
    rotation_matrix,
)
from spectdl.errors import InputError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _disc(n=64, r=12.0, dx=7.0, dy=-4.0):
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    x, y = torch.meshgrid(c, c, indexing="ij")
    return ((x - dx) ** 2 + (y - dy) ** 2 <= r * r).to(torch.float32)[None]


@pytest.mark.parametrize("angle, k", [(90, 1), (180, 2), (270, 3), (-90, 3), (450, 1)])
def test_rotate_by_quarter_turns_matches_torch_rot90(angle, k):
    x = torch.rand(2, 9, 9, generator=_gen())
    labels = torch.randint(0, 5, (1, 9, 9), generator=_gen(1))
    out = Rotate(angle).apply({"input": x, "labels": labels})
    torch.testing.assert_close(out["input"], torch.rot90(x, k, (1, 2)), atol=1e-6, rtol=0)
    assert torch.equal(out["labels"], torch.rot90(labels, k, (1, 2)))
    assert torch.equal(Rot90(k).apply({"input": x})["input"], torch.rot90(x, k, (1, 2)))


@pytest.mark.parametrize("plane, dims", [("xy", (1, 2)), ("xz", (1, 3)), ("yz", (2, 3))])
def test_3d_rotations_in_each_plane_match_rot90(plane, dims):
    v = torch.rand(1, 6, 6, 6, generator=_gen())
    torch.testing.assert_close(Rotate({plane: 90}).apply({"x": v})["x"], torch.rot90(v, 1, dims), atol=1e-6, rtol=0)
    assert torch.equal(Rot90({plane: 1}).apply({"x": v})["x"], torch.rot90(v, 1, dims))
    # An arbitrary angle against scipy's trilinear rotation in the same plane.
    ref = ndimage.rotate(v[0].numpy(), 30.0, axes=(dims[0] - 1, dims[1] - 1), reshape=False, order=1,
                         mode="grid-constant")  # zeros beyond the edge, interpolated as grid_sample does
    torch.testing.assert_close(Rotate({plane: 30}).apply({"x": v})["x"][0], torch.from_numpy(ref), atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle", [30.0, 60.0, 17.5])
def test_rotating_a_disc_moves_its_centre_and_keeps_its_sum(angle):
    disc = _disc()
    out = Rotate(angle).apply({"input": disc})["input"]
    assert float(out.sum()) == pytest.approx(float(disc.sum()), rel=0.01)
    # Reference: scipy.ndimage.rotate of the same array (linear interpolation about the centre).
    ref = ndimage.rotate(disc[0].numpy(), angle, axes=(0, 1), reshape=False, order=1)
    assert float((out[0] - torch.from_numpy(ref)).abs().max()) < 1e-4
    # The centre of mass turns about the array centre, from +x towards +y.
    c = torch.arange(64, dtype=torch.float64) - 31.5
    com = [float((out[0].double().sum(1 - a) * c).sum() / out.sum()) for a in (0, 1)]
    t = torch.deg2rad(torch.tensor(angle, dtype=torch.float64))
    expected = [7 * torch.cos(t) + 4 * torch.sin(t), 7 * torch.sin(t) - 4 * torch.cos(t)]
    assert com == pytest.approx([float(e) for e in expected], abs=0.05)


def test_one_draw_keeps_input_target_and_masks_aligned():
    x = torch.rand(1, 16, 16, 8, generator=_gen())
    mask = (x > 0.5).to(torch.int64)
    sample = {"input": x, "target": 3 * x, "lesion_mask": (x > 0.5).float(), "labels": mask, "case_id": "a"}
    t = RandomRotate(("xy", "xz", "yz"), step_deg=30.0)
    out, spec = t(sample, _gen(4))
    torch.testing.assert_close(out["target"], 3 * out["input"])
    assert set(out["labels"].unique().tolist()) <= {0, 1}  # nearest: no blended label values
    assert set(out["lesion_mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out["lesion_mask"], out["labels"].float())
    assert out["case_id"] == "a"
    assert all(a % 30 == 0 for a in spec["angles_deg"].values())
    again = replay(sample, spec)
    assert all(torch.equal(again[k], out[k]) for k in ("input", "target", "labels"))


def test_random_rotate_steps_cover_all_multiples_of_the_step():
    t = RandomRotate(("xy",), step_deg=30.0)
    g = _gen(2)
    sample = {"x": torch.zeros(1, 4, 4)}
    seen = {t.draw(sample, g).angles_deg["xy"] for _ in range(300)}
    assert seen == {30.0 * k for k in range(12)}
    lo_hi = [RandomRotate(range_deg=(-10, 10)).draw(sample, g).angles_deg["xy"] for _ in range(100)]
    assert -10 <= min(lo_hi) < -5 and 5 < max(lo_hi) <= 10


def test_random_flip_probability_and_replay():
    g = _gen(3)
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    draws = [RandomFlip((0, 1, 2), p=0.3).draw({"x": x}, g).axes for _ in range(2000)]
    freq = [sum(a in d for d in draws) / 2000 for a in (0, 1, 2)]
    assert freq == pytest.approx([0.3] * 3, abs=0.035)  # 3.4 binomial standard errors
    out, spec = RandomFlip((2,), p=1.0)({"x": x}, g)
    assert torch.equal(out["x"], torch.flip(x, [3])) and spec == {"transform": "flip", "axes": [2], "keys": None}
    assert torch.equal(Flip([0, 1]).apply({"x": x})["x"], torch.flip(x, [1, 2]))
    turns = RandomRot90(("xy", "xz")).draw({"x": x}, g).turns
    assert set(turns) == {"xy", "xz"} and all(0 <= k <= 3 for k in turns.values())


def test_rotation_matrix_is_orthonormal_and_ordered():
    R = rotation_matrix({"xy": 30.0, "yz": 45.0}, 3)
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64))
    assert float(torch.linalg.det(R)) == pytest.approx(1.0)
    e_x = R @ torch.tensor([1.0, 0, 0], dtype=torch.float64)  # xy first: x -> (cos30, sin30, 0), then yz
    assert e_x.tolist() == pytest.approx([0.8660254, 0.5 * 0.7071068, 0.5 * 0.7071068], abs=1e-6)


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="generator"):
        RandomFlip()({"x": torch.zeros(1, 2, 2)})
    with pytest.raises(InputError, match="needs 3 spatial axes"):
        Rotate({"xz": 30}).apply({"x": torch.zeros(1, 4, 4)})
    with pytest.raises(InputError, match="step_deg must divide 360"):
        RandomRotate(step_deg=7)
    with pytest.raises(InputError, match="planes"):
        RandomRotate(("zx",))
    with pytest.raises(InputError, match="different spatial shapes"):
        Flip([0]).apply({"a": torch.zeros(1, 4, 4), "b": torch.zeros(1, 4, 5)})


def test_random_rotate_one_plane_draws_the_34_rotations_of_the_cardiac_set():
    # One plane at a time: the identity or one of the 11 non-zero 30° multiples in one of 3 planes.
    t = RandomRotate(("xy", "xz", "yz"), step_deg=30.0, one_plane=True)
    g = _gen(3)
    sample = {"x": torch.zeros(1, 4, 4, 4)}
    seen = {tuple(sorted(t.draw(sample, g).angles_deg.items())) for _ in range(2000)}
    expected = {(("xy", 0.0),)} | {((p, 30.0 * k),) for p in ("xy", "xz", "yz") for k in range(1, 12)}
    assert seen == expected and len(seen) == 34
    # A drawn rotation is Rotate's: a quarter turn in xz equals torch.rot90 over those axes.
    vol = torch.arange(2 * 5 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5, 5)
    out = Rotate({"xz": 90.0}).apply({"x": vol})["x"]
    assert torch.allclose(out, torch.rot90(vol, 1, dims=(1, 3)), atol=1e-5)
    with pytest.raises(InputError, match="step_deg"):
        RandomRotate(("xy",), one_plane=True)
