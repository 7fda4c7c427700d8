"""Shard ranges made separately (several machines) and ``finalize``."""

import json
import shutil

import pytest

from spectdl.data import finalize, regenerate, read_sample, simulate, verify_shards
from spectdl.errors import InputError

from .conftest import tiny_config


def _cfg(**changes):
    # 4 shards of 2 samples, one batch each; 8 samples.
    return tiny_config(n_samples=8, batch_size=2, shard_size=2, **changes)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    return simulate(_cfg(), tmp_path_factory.mktemp("one") / "run", workers=1, progress=False)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """All 4 shards made in two separate calls, not finalized."""
    out = tmp_path_factory.mktemp("parts") / "sim"
    a = simulate(_cfg(), out, workers=1, progress=False, shards=(0, 2))
    b = simulate(_cfg(), out, workers=1, progress=False, shards="2:4")
    assert (a.made, b.made) == ((0, 1), (2, 3))
    assert not (out / "manifest.json").exists()
    return out


def _copy(parts, tmp_path):
    return shutil.copytree(parts, tmp_path / "sim")


def test_separate_ranges_then_finalize_equal_one_run_byte_for_byte(parts, one_run, tmp_path):
    out = _copy(parts, tmp_path)
    assert sorted(p.name for p in out.glob("*.json")) == [f"shard-0000{i}.json" for i in range(4)]
    res = finalize(out)
    assert res.manifest_path == out / "manifest.json" and res.n_samples == 8 and len(res.shards) == 4
    reference = _files(one_run.out_dir)
    assert sorted(reference) == ["manifest.json"] + [f"shard-0000{i}.h5" for i in range(4)]
    assert _files(out) == reference  # shards and manifest identical, sidecars removed
    m = json.loads((out / "manifest.json").read_text())
    assert [s["first"] for s in m["shards"]] == [0, 2, 4, 6] and len(m["samples"]) == 8
    assert verify_shards(out) == []
    stored, again = read_sample(out, 5), regenerate(out / "manifest.json", 5)
    assert all(bool((stored[k] == again[k]).all()) for k in stored)
    with pytest.raises(InputError, match="already holds manifest.json; it is finalized"):
        finalize(out)
    with pytest.raises(InputError, match="already holds manifest.json"):
        simulate(_cfg(), out, workers=1, progress=False, shards=(0, 1))


def test_a_range_with_two_workers_makes_the_same_bytes(parts, tmp_path):
    res = simulate(_cfg(), tmp_path / "w2", workers=2, progress=False, shards=(1, 3))
    assert res.workers == 2 and res.made == (1, 2)
    for name in ("shard-00001.h5", "shard-00002.h5", "shard-00001.json", "shard-00002.json"):
        assert (tmp_path / "w2" / name).read_bytes() == (parts / name).read_bytes(), name


def test_finalize_refuses_a_missing_shard_naming_it(parts, tmp_path):
    out = _copy(parts, tmp_path)
    (out / "shard-00001.h5").unlink()
    (out / "shard-00001.json").unlink()
    with pytest.raises(InputError, match=r"missing 1 of 4 shards: shard-00001\.h5; make them with --shards 1:2"):
        finalize(out)
    assert not (out / "manifest.json").exists() and (out / "shard-00000.json").exists()
    # A shard whose run died before its sidecar was written.
    (out / "shard-00003.json").unlink()
    with pytest.raises(InputError, match=r"shard-00003\.json \(shard-00003\.h5 is there without it.*--shards 1:2, 3:4"):
        finalize(out)


def test_finalize_refuses_a_corrupt_shard_naming_it_and_a_remake_fixes_it(parts, one_run, tmp_path):
    out = _copy(parts, tmp_path)
    path = out / "shard-00002.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"1 corrupt shards .*shard-00002\.h5 \(SHA-256 .*expected .*from shard-00002\.json"
                                         r"\); remake them with --shards 2:3 --overwrite"):
        finalize(out)
    assert not (out / "manifest.json").exists()
    with pytest.raises(InputError, match=r"already holds shard-00002\.h5; .*--overwrite"):
        simulate(_cfg(), out, workers=1, progress=False, shards=(2, 3))
    simulate(_cfg(), out, workers=1, progress=False, shards=(2, 3), overwrite=True)
    finalize(out)
    assert _files(out) == _files(one_run.out_dir)


def test_shards_of_another_config_are_refused(parts, tmp_path):
    out = _copy(parts, tmp_path)
    with pytest.raises(InputError, match=r"holds shard-00001\.json, made from a different config"):
        simulate(_cfg(seed=4), out, workers=1, progress=False, shards=(0, 1), overwrite=True)
    other = simulate(_cfg(seed=4), tmp_path / "other", workers=1, progress=False, shards=(3, 4)).out_dir
    for name in ("shard-00003.h5", "shard-00003.json"):
        shutil.copyfile(other / name, out / name)
    with pytest.raises(InputError, match=r"shard-00003\.json made from a different config than shard-00000\.json"):
        finalize(out)


def test_finalize_refuses_shards_of_another_forward_loop(parts, tmp_path):
    out = _copy(parts, tmp_path)
    side = out / "shard-00002.json"
    data = json.loads(side.read_text())
    assert data["forward_loop"].startswith("numba ")
    side.write_text(json.dumps(dict(data, forward_loop="torch")))
    with pytest.raises(InputError, match=r"shard-00002\.json \(.*loop torch\) made with other versions.*one forward loop"):
        finalize(out)


@pytest.mark.parametrize("shards", ["3:9", "2:2", "a:b", "1", (-1, 2), (0, 1.5), "0:5"])
def test_a_bad_range_is_refused_naming_the_option_and_writes_nothing(tmp_path, shards):
    with pytest.raises(InputError, match=r"--shards: .*expected START:STOP with 0 <= START < STOP <= 4 \(this config has 4"):
        simulate(_cfg(), tmp_path / "sim", workers=1, progress=False, shards=shards)
    assert not (tmp_path / "sim").exists()


def test_finalize_needs_sidecars_and_one_run_refuses_a_folder_of_parts(parts, tmp_path):
    with pytest.raises(InputError, match="holds no shard sidecars"):
        finalize(tmp_path)
    with pytest.raises(InputError, match="is not a folder"):
        finalize(tmp_path / "nope")
    out = _copy(parts, tmp_path)
    with pytest.raises(InputError, match="already holds a simulation"):
        simulate(_cfg(), out, workers=1, progress=False)
    (out / "shard-00000.json").write_text("{not json")
    with pytest.raises(InputError, match=r"shard-00000\.json cannot be read as JSON"):
        finalize(out)
