"""enhance_file and enhance_volume: NIfTI and DICOM round trips read back with nibabel/pydicom,
values against the network's known formula, and the refusals (channels, modality, outputs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.inference import enhance_file, enhance_volume
from spectdl.training import save_checkpoint

nib = pytest.importorskip("nibabel")


def _data(shape=(7, 6, 5), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0.0, 10.0, shape), 3).astype(np.float32)


def _ckpt(tmp_path: Path, model, name: str, kwargs: dict, modality: str = "spect", file="ckpt.json", **extra) -> Path:
    path = save_checkpoint(tmp_path / file, model, model_name=name, model_kwargs=kwargs, modality=modality)
    if extra:  # metadata the training side may add (normalization, inference settings)
        import json

        doc = json.loads(path.read_text())
        doc["spectdl"].update(extra)
        path.write_text(json.dumps(doc))
    return path


def _digest(path: Path) -> str:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.fixture
def affine_ckpt(tmp_path, affine_registered, affine_net):
    def make(in_channels=1, weights=None, modality="spect", spatial_dims=3, file="ckpt.json", **extra):
        kwargs = dict(in_channels=in_channels, spatial_dims=spatial_dims, weights=weights, bias=0.5)
        return _ckpt(tmp_path, affine_net(**kwargs), affine_registered, kwargs, modality, file, **extra)

    return make


# --------------------------------------------------------------------------------------------------
# NIfTI


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_keeps_the_affine_and_applies_the_network(tmp_path, nifti_file, affine_ckpt, suffix):
    data = _data()
    src = nifti_file("in" + suffix, data)
    before = _digest(src)
    out = enhance_file(affine_ckpt(), src, tmp_path / ("out" + suffix), batch_size=2)
    img_in, img_out = nib.load(str(src)), nib.load(str(out))
    np.testing.assert_array_equal(img_out.affine, img_in.affine)
    np.testing.assert_array_equal(img_out.get_sform(), img_in.get_sform())
    assert img_out.shape == data.shape
    # the network is y = 2x + 0.5, applied by windows; float32 arithmetic throughout
    np.testing.assert_array_equal(np.asarray(img_out.dataobj), data * np.float32(2.0) + np.float32(0.5))
    assert _digest(src) == before


def test_nifti_two_channels_from_an_extra_input(tmp_path, nifti_file, affine_ckpt):
    a, b = _data(seed=1), _data(seed=2)
    src, mu = nifti_file("in.nii", a), nifti_file("mu.nii", b)
    ckpt = affine_ckpt(in_channels=2, weights=[1.0, -3.0])
    out = enhance_file(ckpt, src, tmp_path / "out.nii", extra_inputs=[mu])
    expected = a * np.float32(1.0) + b * np.float32(-3.0) + np.float32(0.5)
    np.testing.assert_allclose(np.asarray(nib.load(str(out)).dataobj), expected, rtol=1e-6, atol=1e-5)


def test_extra_input_on_another_grid_is_refused(tmp_path, nifti_file, affine_ckpt):
    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    src, mu = nifti_file("in.nii", _data()), nifti_file("mu.nii", _data(), ras)
    with pytest.raises(InputError, match="extra_inputs\\[0\\].*affine"):
        enhance_file(affine_ckpt(in_channels=2), src, tmp_path / "out.nii", extra_inputs=[mu])
    small = nifti_file("small.nii", _data((7, 6, 4)))
    with pytest.raises(InputError, match="extra_inputs\\[0\\].*shape"):
        enhance_file(affine_ckpt(in_channels=2, file="c2.json"), src, tmp_path / "out.nii", extra_inputs=[small])
    assert not (tmp_path / "out.nii").exists()


def test_channel_mismatch_names_checkpoint_and_counts(tmp_path, nifti_file, affine_ckpt):
    src = nifti_file("in.nii", _data())
    ckpt = affine_ckpt(in_channels=2)
    with pytest.raises(InputError) as info:
        enhance_file(ckpt, src, tmp_path / "out.nii")
    msg = str(info.value)
    assert str(ckpt) in msg and "expects 2 input channel" in msg and "found 1" in msg
    one = affine_ckpt(in_channels=1, file="one.json")
    with pytest.raises(InputError, match="expects 1 input channel.*found 2"):
        enhance_file(one, src, tmp_path / "out.nii", extra_inputs=[src])
    assert not (tmp_path / "out.nii").exists()


def test_modality_mismatch_is_refused(tmp_path, nifti_file, affine_ckpt):
    src = nifti_file("in.nii", _data())
    proj = affine_ckpt(modality="projections", file="proj.json")
    with pytest.raises(InputError, match=r"proj\.json.*'projections'"):
        enhance_file(proj, src, tmp_path / "out.nii")
    ct = affine_ckpt(modality="ct", file="ct.json")
    with pytest.raises(InputError, match=r"ct\.json.*'ct'.*found an input of modality 'spect'"):
        enhance_file(ct, src, tmp_path / "out.nii", input_modality="spect")
    # NIfTI carries no modality: without a declaration only the checkpoint's own kind is checked
    assert enhance_file(ct, src, tmp_path / "out.nii").exists()


def test_outputs_never_replace_inputs_and_need_overwrite(tmp_path, nifti_file, affine_ckpt):
    src = nifti_file("in.nii", _data())
    ckpt = affine_ckpt()
    before = _digest(src)
    with pytest.raises(InputError, match="input"):
        enhance_file(ckpt, src, src, overwrite=True)
    with pytest.raises(InputError, match="input"):
        enhance_file(ckpt, src, tmp_path / "." / "in.nii", overwrite=True)
    with pytest.raises(InputError, match="expected a .nii"):
        enhance_file(ckpt, src, tmp_path / "outdir")
    out = enhance_file(ckpt, src, tmp_path / "out.nii")
    with pytest.raises(InputError, match="already exists"):
        enhance_file(ckpt, src, out)
    assert enhance_file(ckpt, src, out, overwrite=True) == out
    assert _digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def test_two_d_network_runs_slice_by_slice(tmp_path, nifti_file):
    from spectdl.models import UNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = UNet(2, 1, 1, features=(4, 8)).eval()
    kwargs = dict(in_channels=1, out_channels=1, spatial_dims=2, features=[4, 8])
    ckpt = _ckpt(tmp_path, net, "unet", kwargs)
    data = _data((8, 6, 5))
    out = enhance_file(ckpt, nifti_file("in.nii", data), tmp_path / "out.nii", batch_size=2)
    got = np.asarray(nib.load(str(out)).dataobj)
    with torch.no_grad():  # reference: the network on each axial slice, one at a time
        ref = np.stack([net(torch.from_numpy(data[None, None, :, :, k]))[0, 0].numpy() for k in range(5)], -1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_three_d_unet_with_normalization_and_roi_from_metadata(tmp_path, nifti_file):
    from spectdl.models import UNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        net = UNet(3, 1, 1, features=(4, 8)).eval()
    kwargs = dict(in_channels=1, out_channels=1, spatial_dims=3, features=[4, 8])
    ckpt = _ckpt(tmp_path, net, "unet", kwargs, normalization={"inputs": ["mean_positive"], "output": 0},
                 inference={"roi_size": [4, 4, 4]})
    data = _data((9, 6, 5))
    out = enhance_file(ckpt, nifti_file("in.nii", data), tmp_path / "out.nii", overlap=0.25)
    got = torch.from_numpy(np.asarray(nib.load(str(out)).dataobj))
    x = torch.from_numpy(data)[None]
    scale = float(x[x > 0].double().mean())
    from spectdl.inference import predict_sliding_window

    ref = predict_sliding_window(net, x / scale, (4, 4, 4), 0.25, 8)[0] * scale
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_enhance_volume_refuses_non_finite_input(affine_net):
    v = torch.ones(1, 4, 4, 4)
    v[0, 1, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        enhance_volume(affine_net(), v)


# --------------------------------------------------------------------------------------------------
# DICOM


def test_dicom_round_trip_keeps_geometry_and_identity(tmp_path, pt_series, affine_ckpt):
    import pydicom

    data = _data((6, 5, 4))
    src = pt_series("series_in", data)
    before = _digest(src)
    out = enhance_file(affine_ckpt(), src, tmp_path / "series_out", batch_size=3)
    assert out == tmp_path / "series_out"
    assert _digest(src) == before

    def by_position(folder):
        slices = [pydicom.dcmread(str(p)) for p in sorted(folder.iterdir())]
        return sorted(slices, key=lambda d: float(d.ImagePositionPatient[2]))

    a, b = by_position(src), by_position(out)
    assert len(a) == len(b) == 4
    def floats(value):
        return [float(v) for v in value]

    for k, (da, db) in enumerate(zip(a, b)):
        for tag, atol in [("ImagePositionPatient", 1e-4), ("ImageOrientationPatient", 1e-6), ("PixelSpacing", 1e-6)]:
            np.testing.assert_allclose(floats(db.get(tag)), floats(da.get(tag)), atol=atol, err_msg=tag)
        assert db.FrameOfReferenceUID == da.FrameOfReferenceUID and db.StudyInstanceUID == da.StudyInstanceUID
        assert db.PatientID == da.PatientID and db.SeriesInstanceUID != da.SeriesInstanceUID
        assert db.Units == "BQML"
        values = db.pixel_array.astype(np.float64) * float(db.RescaleSlope) + float(db.RescaleIntercept)
        expected = data[:, :, k].T.astype(np.float64) * 2.0 + 0.5
        np.testing.assert_allclose(values, expected, atol=float(db.RescaleSlope) / 2 + 1e-6)


def test_dicom_modality_is_checked(tmp_path, pt_series, affine_ckpt):
    src = pt_series("series_in", _data((6, 5, 3)), modality="PT")
    with pytest.raises(InputError, match=r"ct\.json.*'ct' images.*found an input of modality 'PT'"):
        enhance_file(affine_ckpt(modality="ct", file="ct.json"), src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dicom_output_folder_rules(tmp_path, pt_series, affine_ckpt):
    src = pt_series("series_in", _data((6, 5, 3)))
    ckpt = affine_ckpt()
    with pytest.raises(InputError, match="input"):
        enhance_file(ckpt, src, src, overwrite=True)
    with pytest.raises(InputError, match="input"):
        enhance_file(ckpt, src, tmp_path, overwrite=True)  # the parent of the input folder
    with pytest.raises(InputError, match="folder for the DICOM series"):
        enhance_file(ckpt, src, tmp_path / "out.nii")
    out = enhance_file(ckpt, src, tmp_path / "out")
    with pytest.raises(InputError, match="not empty"):
        enhance_file(ckpt, src, out)
    enhance_file(ckpt, src, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["IM_0001.dcm", "IM_0002.dcm", "IM_0003.dcm"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="notes.txt"):
        enhance_file(ckpt, src, out, overwrite=True)
    (tmp_path / "empty").mkdir()
    assert enhance_file(ckpt, src, tmp_path / "empty").is_dir()


def test_dicom_write_failure_leaves_no_partial_series(tmp_path, pt_series, affine_ckpt, monkeypatch):
    import spectdl.io

    src = pt_series("series_in", _data((6, 5, 3)))
    real = spectdl.io.write_dicom_series

    def write_then_crash(volume, reference, description, out_dir, **kw):
        real(volume, reference, description, out_dir, **kw)  # files are on disk when the crash comes
        raise KeyboardInterrupt

    monkeypatch.setattr(spectdl.io, "write_dicom_series", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        enhance_file(affine_ckpt(), src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temporary folder removed
