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


def test_train_on_a_case_manifest_records_the_normalisation_that_enhance_applies(tmp_path):
    import nibabel as nib
    import numpy as np
    import torch

    from spectdl.training import load_model_from_checkpoint

    rng = np.random.default_rng(0)
    rows = ["case_id,split,input,target"]
    for i, split in enumerate(["train", "train", "val"]):
        full = (rng.random((12, 12, 4)) * 10 + 5 * (i + 1)).astype(np.float32)
        low = full + rng.normal(0, 1, full.shape).astype(np.float32)
        for name, arr in (("low", low), ("full", full)):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / f"c{i}_{name}.nii.gz")
        rows.append(f"c{i},{split},c{i}_low.nii.gz,c{i}_full.nii.gz")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    main(["train", str(tmp_path / "train.yaml"), "--data", str(tmp_path / "cases.csv"), "-o", str(tmp_path / "run"),
          "--normalize", "mean_positive"])
    ckpt = tmp_path / "run" / "checkpoints" / "last.json"
    model, meta = load_model_from_checkpoint(ckpt)
    assert meta["normalization"] == {"inputs": ["mean_positive"], "output": 0}
    out = tmp_path / "enhanced.nii.gz"
    main(["enhance", "--checkpoint", str(ckpt), str(tmp_path / "c2_low.nii.gz"), "-o", str(out)])
    low = nib.load(tmp_path / "c2_low.nii.gz").get_fdata().astype(np.float32)
    s = float(low[low > 0].mean())
    x = torch.from_numpy(low).permute(2, 0, 1).unsqueeze(1) / s  # slices [Z, 1, X, Y], normalised
    with torch.no_grad():
        expected = (model.eval()(x) * s)[:, 0].permute(1, 2, 0).numpy()
    got = nib.load(out).get_fdata()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _one_line_error(argv, capsys, code=2):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.mark.parametrize("argv, expected", [
    (["study", "run", "nope"], "unknown study 'nope'; expected one of ['bone-spect'"),
    (["study", "run", "bone-spect", "--scale", "huge"], "--scale: 'huge'; expected one of"),
    (["study", "run", "bone-spect", "--set", "evaluation.cnr=3"], "unknown key 'cnr' in evaluation"),
    (["study", "run", "bone-spect", "--set", "evaluation.cnr_threshold=high"],
     "evaluation.cnr_threshold: expected a float, found 'high'"),
    (["study", "run", "bone-spect", "--device", "cuda:0"], "--device"),
    (["study", "run", "bone-spect", "--device", "tpu"], "--device: 'tpu'"),
])
def test_study_run_bad_input_is_one_line_and_no_run_folder(tmp_path, capsys, argv, expected):
    import torch

    if "cuda:0" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = _one_line_error([*argv, "-o", str(tmp_path / "out")], capsys)
    assert expected in line
    assert not (tmp_path / "out").exists()


def test_study_list_names_every_study():
    out = subprocess.run([sys.executable, "-m", "spectdl.cli", "study", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "bone-spect" in out.stdout and "1/7" in out.stdout


def test_usage_errors_need_no_click_module():
    # typer >= 0.29 carries its own click; a fresh install has no `click` at all.
    code = ("import sys; sys.modules['click'] = None\n"
            "from spectdl.cli import main\n"
            "main(['demo', '--seed', 'abc'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "--seed" in out.stderr


def test_an_unexpected_exception_is_one_line_naming_the_saved_traceback(tmp_path):
    code = ("import sys; sys.modules['click'] = None\n"
            "import spectdl.cli as c\n"
            "def boom(run_dir): raise ZeroDivisionError('boom')\n"
            "import spectdl.report.study as s; s.build_study_report = boom\n"
            f"c.main(['report', {str(tmp_path)!r}])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "bug in spectdl" in lines[0] and "ZeroDivisionError" in lines[0]
    saved = lines[0].rsplit("traceback saved to ", 1)[1].strip()
    assert "Traceback" in open(saved).read()
