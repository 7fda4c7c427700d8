import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.io.interfile import read_interfile, read_interfile_header, write_interfile


def _px(*sizes) -> list[str]:
    return [f"scaling factor (mm/pixel) [{i}] := {s}" for i, s in enumerate(sizes, start=1)]


def _write(tmp_path: Path, array_xyz: np.ndarray, dtype: str, lines: list[str], offset: int = 0,
           name: str = "img") -> Path:
    """Header + raw file written by hand (independent of write_interfile): x fastest on disk."""
    raw = np.asarray(array_xyz).transpose(tuple(reversed(range(array_xyz.ndim)))).astype(dtype)
    (tmp_path / f"{name}.i33").write_bytes(b"\x7f" * offset + np.ascontiguousarray(raw).tobytes())
    header = tmp_path / f"{name}.h33"
    header.write_text("\n".join(["!INTERFILE :=", f"!name of data file := {name}.i33", *lines,
                                 "!END OF INTERFILE :="]) + "\n")
    return header


def test_reads_little_endian_uint16_volume_in_x_y_z_order(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 60000, size=(5, 4, 3)).astype(np.uint16)
    h = _write(tmp_path, a, "<u2", [
        "imagedata byte order := LITTLEENDIAN", "!matrix size [1] := 5", "!matrix size [2] := 4",
        "!number format := unsigned integer", "!number of bytes per pixel := 2",
        "scaling factor (mm/pixel) [1] := 0.939453", "scaling factor (mm/pixel) [2] := 0.939453",
        "!number of slices := 3", "slice thickness (pixels) := 1.25"])
    image, grid, header = read_interfile(h)
    assert image.shape == (1, 1, 5, 4, 3) and image.dtype == torch.float32
    np.testing.assert_array_equal(image[0, 0].numpy(), a.astype(np.float32))
    assert grid == VoxelGrid((5, 4, 3), (0.939453, 0.939453, 1.25))
    assert header["matrix size [1]"] == "5" and header["number format"] == "unsigned integer"


def test_big_endian_signed_with_offset_and_fortran_numbers(tmp_path):
    a = np.arange(-12, 12, dtype=np.int16).reshape(3, 4, 2)
    h = _write(tmp_path, a, ">i2", [
        "imagedata byte order := BIGENDIAN", "!data offset in bytes := 7", "!matrix size [1] := 3",
        "!matrix size [2] := 4", "!number format := signed integer", "!number of bytes per pixel := 2",
        "scaling factor (mm/pixel) [1] :=+2.000000+00", "scaling factor (mm/pixel) [2] :=+2.500000-01",
        "!number of slices := 2", "centre-centre slice separation (pixels) :=+4.000000+00"], offset=7)
    image, grid, _ = read_interfile(h, dtype=torch.float64)
    np.testing.assert_array_equal(image[0, 0].numpy(), a.astype(np.float64))
    assert grid.voxel_size_mm == (2.0, 0.25, 4.0)


def test_float_2d_image_and_slice_units_in_pixels(tmp_path):
    a = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    h = _write(tmp_path, a, "<f4", ["imagedata byte order := LITTLEENDIAN", "matrix size[1] := 4",
                                    "matrix size [ 2 ] := 3", "!number format := float", *_px(3, 3)])
    image, grid, _ = read_interfile(h)
    assert image.shape == (1, 1, 4, 3) and grid == VoxelGrid((4, 3), 3.0)
    np.testing.assert_array_equal(image[0, 0].numpy(), a)
    v = np.ones((2, 2, 3), np.float32)
    h3 = _write(tmp_path, v, "<f4", ["imagedata byte order := LITTLEENDIAN", "!matrix size [1] := 2",
                                     "!matrix size [2] := 2", "!number format := float", *_px(3, 3),
                                     "!number of slices := 3", "slice thickness (pixels) := 2"], name="v")
    assert read_interfile(h3)[1].voxel_size_mm == (3.0, 3.0, 2.0)
    assert read_interfile(h3, slice_units="pixels")[1].voxel_size_mm == (3.0, 3.0, 6.0)


def test_rescale_slope_and_default_big_endian(tmp_path):
    a = np.array([[[1.0, 2.0]]], np.float32)  # (1, 1, 2)
    h = _write(tmp_path, a, ">f4", ["!matrix size [1] := 1", "!matrix size [2] := 1", "!matrix size [3] := 2",
                                    "!number format := float", *_px(1, 1, 5),
                                    "data rescale slope := 2", "data rescale offset := -1"])
    image, grid, _ = read_interfile(h)
    np.testing.assert_allclose(image.flatten().numpy(), [1.0, 3.0])
    assert grid.voxel_size_mm[2] == 5.0


@pytest.mark.parametrize("fmt", ["float", "unsigned integer"])
def test_write_then_read_round_trip(tmp_path, fmt):
    grid = VoxelGrid((6, 5, 4), (1.5, 2.0, 3.25))
    img = torch.arange(120, dtype=torch.float32).reshape(1, 1, 6, 5, 4) * 7.0
    write_interfile(tmp_path / "rt.h33", img, grid, number_format=fmt)
    back, g, header = read_interfile(tmp_path / "rt.h33")
    assert g == grid and torch.equal(back, img)
    assert read_interfile_header(tmp_path / "rt.h33")["name of data file"] == "rt.i33"


def _good_lines(n=(2, 2, 2)):
    return ["imagedata byte order := LITTLEENDIAN", f"!matrix size [1] := {n[0]}",
            f"!matrix size [2] := {n[1]}", "!number format := unsigned integer",
            "!number of bytes per pixel := 2", *_px(2, 2), f"!number of slices := {n[2]}"]


def test_bad_headers_raise_input_error_naming_file_and_key(tmp_path):
    a = np.zeros((2, 2, 2), np.uint16)
    h = _write(tmp_path, a, "<u2", _good_lines())
    (tmp_path / "img.i33").unlink()
    with pytest.raises(InputError, match=r"img\.h33.*name of data file.*does not exist"):
        read_interfile(h)

    h = _write(tmp_path, a, "<u2", _good_lines((2, 2, 3)), name="short")
    with pytest.raises(InputError, match=r"short\.h33.*16 bytes.*24"):
        read_interfile(h)

    h = _write(tmp_path, a, "<u2", [ln for ln in _good_lines() if "size [2]" not in ln], name="nosize")
    with pytest.raises(InputError, match=r"nosize\.h33.*'matrix size \[2\]' is missing"):
        read_interfile(h)

    bad = [ln.replace("unsigned integer", "bit") for ln in _good_lines()]
    with pytest.raises(InputError, match=r"'number format' 'bit'"):
        read_interfile(_write(tmp_path, a, "<u2", bad, name="fmt"))

    bad = [ln.replace(":= 2", ":= two") if "(mm/pixel) [1]" in ln else ln for ln in _good_lines()]
    with pytest.raises(InputError, match=r"scaling factor \(mm/pixel\) \[1\].*'two'; expected a number"):
        read_interfile(_write(tmp_path, a, "<u2", bad, name="num"))

    (tmp_path / "plain.h33").write_text("matrix size [1] := 2\n")
    with pytest.raises(InputError, match=r"plain\.h33: not an Interfile header"):
        read_interfile(tmp_path / "plain.h33")
    with pytest.raises(InputError, match="does not exist"):
        read_interfile(tmp_path / "missing.h33")


def test_missing_pixel_size_warns_and_assumes_1mm(tmp_path):
    a = np.zeros((2, 2), np.float32)
    h = _write(tmp_path, a, "<f4", ["imagedata byte order := LITTLEENDIAN", "!matrix size [1] := 2",
                                    "!matrix size [2] := 2", "!number format := float"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, grid, _ = read_interfile(h)
    assert grid.voxel_size_mm == (1.0, 1.0) and any("assuming 1 mm" in str(w.message) for w in caught)


@pytest.mark.shared
def test_reads_the_published_jaszczak_and_brain_headers(shared_data):
    folder = shared_data / "phantoms"
    image, grid, header = read_interfile(folder / "Jaszczak_phantom" / "Jaszczak_238x237x134.h33")
    # README: 238×237×134 voxels at 0.939453 × 0.939453 × 1.25 mm; values 0 (cold) to 10 (hot).
    assert grid == VoxelGrid((238, 237, 134), (0.939453, 0.939453, 1.25))
    assert float(image.min()) == 0.0 and float(image.max()) == 10.0
    att, agrid, _ = read_interfile(folder / "Brain_Perfusion_phantom" / "Brain_Perfusion_Attn_72x90x77.h33")
    # Fortran-style "+2.000000+00" pixel sizes; material indices 0..3.
    assert agrid == VoxelGrid((72, 90, 77), 2.0)
    assert sorted(torch.unique(att).tolist()) == [0.0, 1.0, 2.0, 3.0]
