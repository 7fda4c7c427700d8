import nibabel as nib
import numpy as np
import pytest

from spectdl.data import load_manifest, read_case_image, validate_manifest
from spectdl.errors import InputError


def nifti(path, shape, seed=0, integer=False):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 4, shape).astype(np.int16) if integer else rng.random(shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), str(path))
    return data


def write_csv(path, rows):
    header = "case_id,split,input,target,ct,lesion_mask,organ_labels"
    path.write_text("\n".join([header] + [",".join(r) for r in rows]) + "\n")
    return path


def test_csv_paths_resolve_against_the_manifest_folder(tmp_path):
    nifti(tmp_path / "cases/a_low.nii.gz", (8, 8, 5))
    nifti(tmp_path / "cases/a_std.nii.gz", (8, 8, 5), 1)
    nifti(tmp_path / "cases/a_les.nii.gz", (8, 8, 5), integer=True)
    m = load_manifest(write_csv(tmp_path / "m.csv", [
        ["a", "train", "cases/a_low.nii.gz", "cases/a_std.nii.gz", "", "cases/a_les.nii.gz", ""],
    ]))
    (case,) = m.cases
    assert case.paths["input"] == tmp_path / "cases/a_low.nii.gz" and "ct" not in case.paths
    assert m.columns == ("input", "target", "lesion_mask")
    shapes = validate_manifest(m)
    assert shapes == {"a": {"input": (8, 8, 5), "target": (8, 8, 5), "lesion_mask": (8, 8, 5)}}
    assert m.validated


def test_validator_lists_every_missing_file_and_shape_mismatch_at_once(tmp_path):
    nifti(tmp_path / "a_low.nii.gz", (8, 8, 5))
    nifti(tmp_path / "a_std.nii.gz", (8, 8, 6))            # shape mismatch
    nifti(tmp_path / "b_low.nii.gz", (8, 8, 5))
    nifti(tmp_path / "b_std.nii.gz", (8, 8, 5))
    (tmp_path / "c_low.nii.gz").write_bytes(b"not a nifti")   # unreadable
    nifti(tmp_path / "c_std.nii.gz", (8, 8, 5))
    m = load_manifest(write_csv(tmp_path / "m.csv", [
        ["a", "train", "a_low.nii.gz", "a_std.nii.gz", "", "", ""],
        ["b", "val", "b_low.nii.gz", "b_std.nii.gz", "b_ct.nii.gz", "b_les.nii.gz", ""],  # 2 missing
        ["c", "test", "c_low.nii.gz", "c_std.nii.gz", "", "", ""],
    ]))
    with pytest.raises(InputError) as err:
        validate_manifest(m)
    msg = str(err.value)
    assert "4 problems" in msg
    lines = [line for line in msg.splitlines() if line.startswith("  - ")]
    assert len(lines) == 4
    assert f"case a, column target: shape (8, 8, 6) differs from the input's (8, 8, 5): {tmp_path / 'a_std.nii.gz'}" in msg
    assert f"case b, column ct: file not found: {tmp_path / 'b_ct.nii.gz'}" in msg
    assert f"case b, column lesion_mask: file not found: {tmp_path / 'b_les.nii.gz'}" in msg
    assert f"case c, column input: cannot be read: {tmp_path / 'c_low.nii.gz'}" in msg
    assert not m.validated
    # Without shapes only existence is checked.
    with pytest.raises(InputError, match="2 problems"):
        validate_manifest(m, check_shapes=False)


def test_table_problems_are_reported_together(tmp_path):
    bad = write_csv(tmp_path / "m.csv", [
        ["a", "train", "x.nii", "y.nii", "", "", ""],
        ["a", "training", "x.nii", "", "", "", ""],
        ["", "test", "x.nii", "y.nii", "", "", ""],
    ])
    with pytest.raises(InputError) as err:
        load_manifest(bad)
    msg = str(err.value)
    assert "4 problems" in msg
    assert "case a: case_id repeated (rows 1 and 2)" in msg
    assert "case a, column split: 'training' is not one of ['train', 'val', 'test']" in msg
    assert "case a, column target: empty; expected a path" in msg
    assert "row 3: empty case_id" in msg
    (tmp_path / "cols.csv").write_text("case_id,split,input,target,mask_path\n")
    with pytest.raises(InputError, match=r"unknown columns \['mask_path'\]"):
        load_manifest(tmp_path / "cols.csv")
    (tmp_path / "req.csv").write_text("case_id,input\n")
    with pytest.raises(InputError, match=r"missing required columns \['split', 'target'\]"):
        load_manifest(tmp_path / "req.csv")


def test_yaml_manifest_with_root_and_npy_and_2d_images(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data/p.npy", data)
    nifti(tmp_path / "data/q.nii", (4, 3, 1))
    (tmp_path / "m.yaml").write_text(
        "root: data\n"
        "cases:\n"
        "  - {case_id: p1, split: train, input: p.npy, target: q.nii}\n"
    )
    m = load_manifest(tmp_path / "m.yaml")
    assert m.cases[0].paths["target"] == (tmp_path / "data/q.nii").resolve()
    assert validate_manifest(m)["p1"] == {"input": (4, 3), "target": (4, 3)}
    assert read_case_image(m.cases[0].paths["input"]).tolist() == data.tolist()
    labels = read_case_image(m.cases[0].paths["target"], "organ_labels")
    assert labels.dtype.is_floating_point is False and labels.shape == (4, 3)
    (tmp_path / "bad.yaml").write_text("cases: {a: 1}\n")
    with pytest.raises(InputError, match="list of mappings"):
        load_manifest(tmp_path / "bad.yaml")
