"""Planar whole-body scans: the real NEMA NM1 bone scan, its lossy pydicom copy, synthetic two-view files."""

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from spectdl.errors import InputError
from spectdl.io import read_planar

NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"


@pytest.mark.shared
def test_real_wholebody_bone_scan(shared_data):
    scan = read_planar(shared_data / "real/bone_wholebody/NM1_wholebody_bone.dcm")
    assert list(scan.views) == ["anterior"]
    assert scan.pixel_spacing_mm == (2.26, 2.26)
    view = scan.views["anterior"]
    assert view.shape == (256, 1024)  # [X across, Y head-to-feet] of a 1024 x 256 image
    # the pixel sum is the Counts Accumulated tag (3 596 452, "about 3.6 M" in the README)
    assert scan.counts("anterior") == scan.counts_accumulated == 3596452
    assert scan.frame_duration_s == pytest.approx(1210.434)


def test_lossy_copy_in_pydicom():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("JPEG2000.dcm")
    try:
        scan = read_planar(path)
    except InputError as exc:
        if "decoded" in str(exc):
            pytest.skip(f"no JPEG 2000 decoder installed: {exc}")
        raise
    assert scan.pixel_spacing_mm == (2.26, 2.26)
    # lossy compression keeps the counts within 3 % of the uncompressed 3 596 452
    assert scan.counts("anterior") == pytest.approx(3596452, rel=0.03)


def _two_view_file(write_dataset, name, *, codes=True, text=None):
    ant = np.zeros((8, 4), dtype=np.uint16)
    post = np.zeros((8, 4), dtype=np.uint16)
    ant[2, 1] = 100  # a source nearer the front: bright anterior, at column 1
    post[2, 2] = 40  # posterior view sees it mirrored left-right
    ds = Dataset()
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "WHOLE BODY", "EMISSION"]
    ds.NumberOfFrames = 2
    ds.Rows, ds.Columns = 8, 4
    ds.PixelSpacing = [3.0, 2.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]
    ds.EnergyWindowVector = [1, 1]
    ds.DetectorVector = [2, 1]  # posterior frame stored first
    items = []
    for meaning in ("anterior", "posterior"):
        item = Dataset()
        if codes:
            code = Dataset()
            code.CodeValue = "X"
            code.CodingSchemeDesignator = "99TEST"
            code.CodeMeaning = meaning
            item.ViewCodeSequence = Sequence([code])
        items.append(item)
    ds.DetectorInformationSequence = Sequence(items)
    if text:
        ds.ImageID = text
    ds.PixelData = np.stack([post, ant]).tobytes()
    return write_dataset(ds, NM_STORAGE, name)


def test_views_from_view_codes(write_dataset):
    scan = read_planar(_two_view_file(write_dataset, "wb.dcm"))
    assert set(scan.views) == {"anterior", "posterior"}
    assert scan.counts("anterior") == 100 and scan.counts("posterior") == 40
    assert scan.pixel_spacing_mm == (2.0, 3.0)
    assert float(scan.views["anterior"][1, 2]) == 100.0  # [x = column, y = row]
    gm = scan.geometric_mean()
    assert float(gm[1, 2]) == pytest.approx((100 * 40) ** 0.5)  # posterior mirrored onto the anterior
    assert float(gm.sum()) == pytest.approx((100 * 40) ** 0.5)


def test_views_from_detector_order_without_codes(write_dataset):
    scan = read_planar(_two_view_file(write_dataset, "wb.dcm", codes=False))
    assert scan.counts("anterior") == 100  # detector 1 is anterior by default
    renamed = read_planar(_two_view_file(write_dataset, "wb2.dcm", codes=False), view_names=("A", "B"))
    assert set(renamed.views) == {"A", "B"} and renamed.counts("B") == 40


def test_planar_bad_input(nm_file, write_dataset):
    with pytest.raises(InputError, match="use read_projections for TOMO"):
        read_planar(nm_file())
    scan = read_planar(_two_view_file(write_dataset, "wb.dcm"))
    with pytest.raises(InputError, match="view: 'lateral' not in this scan"):
        scan.counts("lateral")
