"""`spectdl simulate --shards START:STOP` and `spectdl simulate --finalize DIR`."""

import pytest

from spectdl.cli import main

SIM_YAML = """\
phantom: brain2d
grid: {shape: [32, 32], voxel_size_mm: 8.0}
n_samples: 6
batch_size: 2
shard_size: 2
orbit: {n_angles: 16}
counts: {total: 2.0e+5, levels: {full: 1.0, low: 0.25}}
splits: {train: 0.5, val: 0.5, test: 0.0}
"""


def _one_line_error(argv, capsys, code=2):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture()
def yaml(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text(SIM_YAML)
    return str(path)


def test_ranges_on_separate_calls_then_finalize_equal_one_run(tmp_path, yaml, capsys):
    parts = tmp_path / "parts"
    main(["simulate", yaml, "-o", str(parts), "--shards", "0:1", "--workers", "1"])
    main(["simulate", yaml, "-o", str(parts), "--shards", "1:3", "--workers", "1"])
    out = capsys.readouterr().out
    assert "shards 1:3" in out and "--finalize" in out
    assert not (parts / "manifest.json").exists()
    main(["simulate", "--finalize", str(parts)])
    main(["simulate", yaml, "-o", str(tmp_path / "one"), "--workers", "1"])
    assert _files(parts) == _files(tmp_path / "one")


def test_errors_are_one_line(tmp_path, yaml, capsys):
    parts = str(tmp_path / "parts")
    assert "--shards: '1-2'; expected START:STOP" in _one_line_error(["simulate", yaml, "-o", parts, "--shards", "1-2"], capsys)
    assert "--shards: 2:5; expected START:STOP with 0 <= START < STOP <= 3" in _one_line_error(
        ["simulate", yaml, "-o", parts, "--shards", "2:5"], capsys)
    main(["simulate", yaml, "-o", parts, "--shards", "0:1", "--workers", "1"])
    main(["simulate", yaml, "-o", parts, "--shards", "2:3", "--workers", "1"])
    capsys.readouterr()
    err = _one_line_error(["simulate", "--finalize", parts], capsys)
    assert "missing 1 of 3 shards: shard-00001.h5; make them with --shards 1:2" in err
    main(["simulate", yaml, "-o", parts, "--shards", "1:2", "--workers", "1"])
    capsys.readouterr()
    path = tmp_path / "parts" / "shard-00000.h5"
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    err = _one_line_error(["simulate", "--finalize", parts], capsys)
    assert "corrupt shards" in err and "shard-00000.h5 (SHA-256" in err and "--shards 0:1 --overwrite" in err
    assert "expected no CONFIG" in _one_line_error(["simulate", yaml, "--finalize", parts], capsys)
    assert "expected CONFIG and -o/--out" in _one_line_error(["simulate", yaml], capsys)
