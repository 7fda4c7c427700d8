import os

import pytest

from spectdl.errors import InputError
from spectdl.io.atomic import atomic_write


def test_atomic_write_gives_normal_permissions_and_refuses_overwrite(tmp_path):
    old = os.umask(0o022)
    try:
        out = atomic_write(tmp_path / "a.txt", lambda p: p.write_text("one"))
    finally:
        os.umask(old)
    assert out.read_text() == "one"
    assert (out.stat().st_mode & 0o777) == 0o644
    with pytest.raises(InputError, match="already exists"):
        atomic_write(out, lambda p: p.write_text("two"))
    assert out.read_text() == "one"
    atomic_write(out, lambda p: p.write_text("two"), overwrite=True)
    assert out.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")

    def boom(p):
        p.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, boom, overwrite=True)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["b.bin"]
