import errno
import time

import h5py
import numpy as np
import pytest

from spectdl.data.shards import ShardWriteError, ShardWriter, remove_stale_temporaries
from spectdl.errors import SpectdlError
from spectdl.io.atomic import file_sha256


def _write(path, compression="none"):
    rng = np.random.default_rng(0)
    with ShardWriter(path, 4, compression, {"shard": 0}) as w:
        w.write(0, {"image": rng.random((2, 1, 8, 8), dtype=np.float32), "index": np.arange(2), "params/a": np.ones(2)})
        w.write(2, {"image": rng.random((2, 1, 8, 8), dtype=np.float32), "index": np.arange(2, 4), "params/a": np.zeros(2)})
        return w.commit()


def test_shard_bytes_do_not_depend_on_the_time_of_writing(tmp_path):
    kinds = ("none", "gzip", "lzf")
    first = {c: _write(tmp_path / f"{c}-1.h5", c) for c in kinds}
    time.sleep(1.1)  # HDF5 object timestamps have a resolution of one second
    second = {c: _write(tmp_path / f"{c}-2.h5", c) for c in kinds}
    assert first == second
    assert first["none"] == file_sha256(tmp_path / "none-1.h5") and len(set(first.values())) == 3
    with h5py.File(tmp_path / "gzip-1.h5") as f:
        assert f["image"].chunks == (1, 1, 8, 8) and f["image"].compression == "gzip"
        assert f["index"][:].tolist() == [0, 1, 2, 3]
        assert f["params/a"][:].tolist() == [1, 1, 0, 0]
        assert f.attrs["format"] == "spectdl-simulation-shard"
    assert len(list(tmp_path.iterdir())) == 6  # no temporaries left


def test_leaving_without_commit_or_on_error_removes_the_temporary(tmp_path):
    with ShardWriter(tmp_path / "s.h5", 2) as w:
        w.write(0, {"x": np.zeros((1, 3))})
        assert len(list(tmp_path.glob(".s.h5.*.tmp"))) == 1
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SpectdlError, match="exceed its 2 rows"):
        with ShardWriter(tmp_path / "s.h5", 2) as w:
            w.write(1, {"x": np.zeros((2, 3))})
    assert list(tmp_path.iterdir()) == []


def test_os_errors_become_shard_write_errors(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Group, "create_dataset", no_space)
    with pytest.raises(ShardWriteError, match=r"\[Errno 28\] shard .*s.h5: write failed \(No space left on device\)"):
        with ShardWriter(tmp_path / "s.h5", 2) as w:
            w.write(0, {"x": np.zeros((2, 3))})
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".shard-00003.h5.999.tmp").write_bytes(b"half")
    (tmp_path / "shard-00000.h5").write_bytes(b"kept")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".shard-00003.h5.999.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["shard-00000.h5"]


def test_shard_write_error_survives_the_trip_back_from_a_worker_process():
    import pickle

    err = pickle.loads(pickle.dumps(ShardWriteError(errno.ENOSPC, "shard /d/shard-00001.h5: write failed")))
    assert isinstance(err, ShardWriteError) and err.errno == errno.ENOSPC
    assert str(err) == "[Errno 28] shard /d/shard-00001.h5: write failed"
