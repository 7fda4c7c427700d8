import subprocess
import sys

import pytest

from spectdl.cli import main


def test_user_error_prints_one_red_line_and_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "no-such-run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no-such-run" in err[0]
    assert "Traceback" not in "\n".join(err)


def test_verbose_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--verbose", "report", str(tmp_path)])
    assert exc.value.code == 2
    assert "Traceback" in capsys.readouterr().err


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "spectdl.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("demo", "report"):
        assert cmd in out.stdout
