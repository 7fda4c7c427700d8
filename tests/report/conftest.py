"""Shared by the report tests: rendering a figure to a PNG file and checking the picture."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from spectdl.report import save_png


@pytest.fixture
def render():
    """``render(fig, path) -> image``: save, read back and check pixel size and that the picture
    is not blank."""

    def check(fig, path):
        save_png(fig, path)
        img = imread(path)
        w_in, h_in = fig.get_size_inches()
        assert img.shape[:2] == (round(h_in * fig.dpi), round(w_in * fig.dpi))
        assert img.std() > 0
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 1
        return img

    return check
