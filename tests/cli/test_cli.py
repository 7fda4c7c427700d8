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


SIM_YAML = """\
phantom: brain2d
grid: {shape: [32, 32], voxel_size_mm: 8.0}
n_samples: 8
batch_size: 4
shard_size: 8
orbit: {n_angles: 16}
counts: {total: 2.0e+5, levels: {full: 1.0, low: 0.25}}
recon: {iterations: 2, subsets: 4}
splits: {train: 0.5, val: 0.5, test: 0.0}
"""

TRAIN_YAML = """\
task: supervised
seed: 0
model: {name: unet, kwargs: {in_channels: 1, out_channels: 1, spatial_dims: 2, features: [4, 8]}}
loss: {terms: {l1: 1.0}}
optim: {name: adam, lr: 1.0e-3}
data: {batch_size: 2, num_workers: 0}
trainer: {max_epochs: 1, enable_progress_bar: false}
"""


def test_simulate_then_train_from_the_command_line(tmp_path):
    from spectdl.training import load_model_from_checkpoint

    (tmp_path / "sim.yaml").write_text(SIM_YAML)
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    main(["simulate", str(tmp_path / "sim.yaml"), "-o", str(tmp_path / "sim"), "--workers", "1"])
    manifest = tmp_path / "sim" / "manifest.json"
    assert manifest.is_file()
    main(["train", str(tmp_path / "train.yaml"), "--data", str(manifest), "-o", str(tmp_path / "run"),
          "--inputs", "recon_low", "--targets", "recon_full"])
    model, meta = load_model_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.json")
    assert meta["model"]["name"] == "unet" and sum(p.numel() for p in model.parameters()) > 0


def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: supervised\nmodel: {name: unet}\noptim: {lr: fast}\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(bad), "--data", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr" in err[0]
