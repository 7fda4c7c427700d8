import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spectdl.data import ManifestDataset, load_manifest
from spectdl.data.transforms import RandomRotate, replay
from spectdl.errors import InputError

from .test_manifest import nifti, write_csv


@pytest.fixture
def cases(tmp_path):
    """Two training cases and one validation case of 12×10×4 volumes, with CT and masks."""
    data = {}
    rows = []
    for k, (cid, split) in enumerate([("a", "train"), ("b", "train"), ("c", "val")]):
        low = nifti(tmp_path / f"{cid}/low.nii.gz", (12, 10, 4), 10 * k)
        std = nifti(tmp_path / f"{cid}/std.nii.gz", (12, 10, 4), 10 * k + 1)
        ct = nifti(tmp_path / f"{cid}/ct.nii.gz", (12, 10, 4), 10 * k + 2)
        organs = nifti(tmp_path / f"{cid}/organs.nii.gz", (12, 10, 4), 10 * k + 3, integer=True)
        lesion = "" if cid == "b" else f"{cid}/lesion.nii.gz"
        les = nifti(tmp_path / lesion, (12, 10, 4), 10 * k + 4, integer=True) if lesion else np.zeros((12, 10, 4))
        data[cid] = dict(input=low, target=std, ct=ct, organ_labels=organs, lesion_mask=les)
        rows.append([cid, split, f"{cid}/low.nii.gz", f"{cid}/std.nii.gz", f"{cid}/ct.nii.gz", lesion,
                     f"{cid}/organs.nii.gz"])
    return write_csv(tmp_path / "m.csv", rows), data


def test_whole_volumes_with_ct_channel_and_masks(cases):
    path, data = cases
    ds = ManifestDataset(path, "train", input_columns=("input", "ct"))
    assert len(ds) == 2 and ds.columns == ["ct", "lesion_mask", "organ_labels"]
    s = ds[1]
    assert s["case_id"] == "b" and s["input"].shape == (2, 12, 10, 4)
    assert np.array_equal(s["input"][0].numpy(), data["b"]["input"])
    assert np.array_equal(s["input"][1].numpy(), data["b"]["ct"])
    assert np.array_equal(s["target"][0].numpy(), data["b"]["target"])
    assert s["organ_labels"].dtype == torch.int64
    assert np.array_equal(s["organ_labels"][0].numpy(), data["b"]["organ_labels"])
    assert float(s["lesion_mask"].abs().sum()) == 0.0  # case b has no lesion file: an empty mask
    a = ds[0]["lesion_mask"][0].numpy()
    assert np.array_equal(a, (data["a"]["lesion_mask"] > 0).astype(np.float32))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["input"].shape == (2, 2, 12, 10, 4) and batch["case_id"] == ["a", "b"]


def test_axial_slices_enumerate_every_slice_of_every_case(cases):
    path, data = cases
    ds = ManifestDataset(path, "train", mode="slices")
    assert len(ds) == 8
    s = ds[6]  # case b, slice 2
    assert (s["case_id"], s["slice"]) == ("b", 2) and s["input"].shape == (1, 12, 10)
    assert np.array_equal(s["input"][0].numpy(), data["b"]["input"][..., 2])
    assert np.array_equal(s["organ_labels"][0].numpy(), data["b"]["organ_labels"][..., 2])


def test_patches_are_seeded_and_keep_images_and_masks_aligned(cases):
    path, data = cases
    ds = ManifestDataset(load_manifest(path), "val", mode="patches", patch_size=(8, 8, 4), patches_per_case=3,
                         transform=RandomRotate(("xy",), step_deg=90.0), record_params=True, seed=2)
    assert len(ds) == 3
    s = ds[1]
    assert s["input"].shape == (1, 8, 8, 4)
    full = {k: torch.from_numpy(np.asarray(v, dtype=np.float32))[None] for k, v in data["c"].items()}
    full["organ_labels"] = full["organ_labels"].long()
    full["lesion_mask"] = (full["lesion_mask"] > 0).float()
    again = replay(full, s["transform_params"])
    for key in ("input", "target", "ct", "organ_labels", "lesion_mask"):
        assert torch.equal(again[key], s[key]), key
    assert torch.equal(ds[1]["input"], s["input"])
    ds.set_epoch(1)
    assert ds[1]["transform_params"] != s["transform_params"]


def test_dataset_validates_the_whole_manifest_first(cases, tmp_path):
    path, _ = cases
    (tmp_path / "c/std.nii.gz").unlink()  # a validation-split file
    with pytest.raises(InputError, match="case c, column target: file not found"):
        ManifestDataset(path, "train")
    with pytest.raises(InputError, match="has no 'test' cases"):
        ManifestDataset(path, "test", validate=False)
    with pytest.raises(InputError, match="patch_size"):
        ManifestDataset(path, "train", mode="patches", validate=False)


def test_slices_normalised_by_the_whole_volume(cases):
    path, data = cases
    ds = ManifestDataset(path, "train", mode="slices", input_columns=("input", "ct"), normalize="mean_positive")
    low = data["b"]["input"]
    s = low[low > 0].mean()  # one divisor per volume, never per slice
    sample = ds[6]  # case b, slice 2
    np.testing.assert_allclose(sample["input"][0].numpy(), low[..., 2] / s, rtol=1e-6)
    np.testing.assert_allclose(sample["target"][0].numpy(), data["b"]["target"][..., 2] / s, rtol=1e-6)
    assert np.array_equal(sample["input"][1].numpy(), data["b"]["ct"][..., 2])  # other channels unscaled
    assert ds.normalization == {"inputs": ["mean_positive"], "output": 0}
    with pytest.raises(InputError, match="normalize"):
        ManifestDataset(path, "train", normalize="median")
