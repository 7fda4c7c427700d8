"""save_png: atomic PNG files that never replace an existing file unasked."""

import os

import pytest

from spectdl.errors import InputError
from spectdl.report import line_profiles, save_png


def test_save_png_is_atomic_and_does_not_overwrite(tmp_path):
    path = tmp_path / "fig.png"
    save_png(line_profiles({"a": [0.0, 1.0, 0.5]}), path)
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        save_png(line_profiles({"b": [1.0, 0.0, 0.5, 2.0]}), path)
    assert path.read_bytes() == before
    save_png(line_profiles({"b": [1.0, 0.0, 0.5, 2.0]}), path, overwrite=True)
    assert path.read_bytes() != before
    assert os.listdir(tmp_path) == ["fig.png"]  # no temporary file left behind
    with pytest.raises(InputError, match=".png"):
        save_png(line_profiles({"a": [0.0, 1.0]}), tmp_path / "fig.jpg")
    with pytest.raises(InputError, match="does not exist"):
        save_png(line_profiles({"a": [0.0, 1.0]}), tmp_path / "missing" / "fig.png")
