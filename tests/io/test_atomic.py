import hashlib
import os

import pytest

from spectdl.errors import InputError
from spectdl.io import atomic
from spectdl.io.atomic import AtomicFile, atomic_write, file_sha256


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


def test_fsync_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = atomic.os.fsync, atomic.os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else None))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic_write(tmp_path / "c.bin", lambda p: p.write_bytes(b"x"), overwrite=True, fsync=True)
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"]
    if events[0][1] is not None:  # on Linux: the first sync is of a file, the last of the folder
        assert (events[0][1], events[2][1]) == (False, True)
    events.clear()
    atomic_write(tmp_path / "d.bin", lambda p: p.write_bytes(b"y"), overwrite=True)
    assert [e[0] for e in events] == ["replace"]  # no sync unless asked


def test_without_overwrite_a_name_taken_while_writing_is_never_clobbered(tmp_path):
    target = tmp_path / "e.txt"

    def racing_writer(p):
        p.write_text("mine")
        target.write_text("theirs")  # another process creates the name meanwhile

    with pytest.raises(InputError, match="appeared while writing"):
        atomic_write(target, racing_writer)
    assert target.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["e.txt"]


def test_atomic_file_commits_or_leaves_nothing(tmp_path):
    target = tmp_path / "f.h5"
    with AtomicFile(target, fsync=True) as f:
        assert f.tmp.parent == tmp_path and f.tmp.name.startswith(".f.h5.") and f.tmp.name.endswith(".tmp")
        f.tmp.write_bytes(b"part")
    assert list(tmp_path.iterdir()) == []  # left without commit: aborted
    with AtomicFile(target) as f:
        f.tmp.write_bytes(b"one")
        f.tmp.write_bytes(b"whole")
        assert f.commit() == target
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["f.h5"]
    with pytest.raises(InputError, match="protected|input of this operation"):
        AtomicFile(target, overwrite=True, protected=(target,))


def test_file_sha256_matches_hashlib_over_several_blocks(tmp_path):
    data = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MiB: more than one 1 MiB block
    path = tmp_path / "g.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_check_outputs_refuses_an_output_that_is_or_lies_inside_an_input(tmp_path):
    from spectdl.io.atomic import check_outputs

    (tmp_path / "ct").mkdir()
    (tmp_path / "proj.dcm").write_bytes(b"p")
    inputs = [tmp_path / "proj.dcm", tmp_path / "ct"]
    with pytest.raises(InputError, match=r"-o: .*proj.dcm is, or lies inside, the input .*proj.dcm"):
        check_outputs([tmp_path / "x" / ".." / "proj.dcm"], inputs)
    with pytest.raises(InputError, match="lies inside, the input .*ct"):
        check_outputs([tmp_path / "ct" / "new" / "recon.nii.gz"], inputs)
    with pytest.raises(InputError, match="--out: "):
        check_outputs([tmp_path / "ct"], inputs, option="--out")
    (tmp_path / "link").symlink_to(tmp_path / "ct")
    with pytest.raises(InputError, match="lies inside"):
        check_outputs([tmp_path / "link" / "a.nii"], inputs)
    # Beside the inputs, or a folder holding a file input, is fine.
    check_outputs([tmp_path / "out", tmp_path, tmp_path / "proj.dcm.nii.gz", None], inputs + [None])
