import numpy as np
import pytest
import torch
from matplotlib.image import imread

from spectdl.errors import InputError
from spectdl.report.consistency import residual_per_view_figure

ANGLES = np.arange(30) * 12.0


def _curves():
    t = np.deg2rad(ANGLES)
    return {
        "OSEM": 0.022 + 0.001 * np.sin(t),
        "enhanced": torch.tensor(0.026 + 0.003 * np.cos(t))[None],  # [1, n_views] as data_consistency gives
    }


def _check_png(path, height_in, width_in=6.4, dpi=100):
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[:2] == (round(height_in * dpi), round(width_in * dpi))
    assert img.std() > 0 and len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 10
    return img


def test_writes_a_png_with_one_panel(tmp_path):
    out = residual_per_view_figure(_curves(), ANGLES, tmp_path / "dev.png", title="data consistency")
    assert out == tmp_path / "dev.png"
    _check_png(out, 2.9 + 0.4)


def test_residual_panel_and_clockwise_angles(tmp_path):
    curves = _curves()
    per_view = dict(curves)
    per_view["OSEM"] = per_view["OSEM"].copy()
    per_view["OSEM"][3] = np.nan  # a view without counts leaves a gap
    residuals = {"enhanced": 0.01 * np.sin(np.deg2rad(ANGLES))}
    out = residual_per_view_figure(per_view, -ANGLES, tmp_path / "dev2.png", residuals=residuals)
    _check_png(out, 2 * 2.9 + 0.4)
    # an existing file is kept unless overwrite=True
    with pytest.raises(InputError, match="already exists"):
        residual_per_view_figure(per_view, ANGLES, out)
    residual_per_view_figure(per_view, ANGLES, out, overwrite=True)
    _check_png(out, 2.9 + 0.4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(per_view={}), "per_view: expected a non-empty mapping"),
        (dict(per_view={"a": np.ones(29)}), r"per_view\['a'\]: has 29 values; expected 30"),
        (dict(per_view={"a": np.ones((2, 30))}), r"per_view\['a'\]: expected one value per view"),
        (dict(per_view={"a": np.full(30, np.inf)}), "infinite"),
        (dict(per_view={"a": np.full(30, np.nan)}), "every value is NaN"),
        (dict(angles_deg=np.ones((2, 15))), "angles_deg: expected a 1-D sequence"),
        (dict(angles_deg=np.full(30, np.nan)), "angles_deg: contains 30 NaN"),
        (dict(residuals={"other": np.zeros(30)}), r"residuals: methods \['other'\] are not in per_view"),
        (dict(residuals={"OSEM": np.zeros(10)}), r"residuals\['OSEM'\]: has 10 values; expected 30"),
        (dict(path="dev.pdf"), "path: expected a file name ending in .png"),
    ],
)
def test_bad_input_raises(tmp_path, kwargs, match):
    args = dict(per_view=_curves(), angles_deg=ANGLES, path=tmp_path / "bad.png")
    args.update(kwargs)
    if not str(args["path"]).startswith(str(tmp_path)):
        args["path"] = tmp_path / args["path"]
    with pytest.raises(InputError, match=match):
        residual_per_view_figure(args.pop("per_view"), args.pop("angles_deg"), args.pop("path"), **args)
    assert not (tmp_path / "bad.png").exists()
