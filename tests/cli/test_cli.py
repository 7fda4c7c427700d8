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


# --- Reliability: every failure is one line, and no input is ever written over -------------------

def _tiny_checkpoint(tmp_path, features=(4, 8)):
    from spectdl.models import build
    from spectdl.training.checkpoint import save_checkpoint

    kwargs = {"in_channels": 1, "out_channels": 1, "spatial_dims": 2, "features": list(features)}
    return save_checkpoint(tmp_path / "ckpt" / "best.json", build("unet", **kwargs), model_name="unet",
                           model_kwargs=kwargs)


def _tiny_nifti(path):
    import nibabel as nib
    import numpy as np

    arr = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), path)
    return path


def _snapshot(*paths):
    """The bytes of every file under ``paths`` (files or folders)."""
    from pathlib import Path

    out = {}
    for p in map(Path, paths):
        for f in ([p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())):
            out[str(f)] = f.read_bytes()
    return out


@pytest.mark.parametrize("device, expected", [("cuda", "has no CUDA device"), ("tpu", "--device: 'tpu'")])
@pytest.mark.parametrize("command", ["enhance", "reconstruct"])
def test_a_bad_device_is_one_line_before_anything_is_read(tmp_path, capsys, device, expected, command):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if command == "enhance":
        argv = ["enhance", "--checkpoint", str(_tiny_checkpoint(tmp_path)), str(_tiny_nifti(tmp_path / "in.nii.gz")),
                "-o", str(tmp_path / "out.nii.gz")]
    else:
        (tmp_path / "proj.dcm").write_bytes(b"not read")
        argv = ["reconstruct", str(tmp_path / "proj.dcm"), "-o", str(tmp_path / "out")]
    line = _one_line_error([*argv, "--device", device], capsys)
    assert "--device" in line and expected in line
    assert not (tmp_path / "out.nii.gz").exists() and not (tmp_path / "out").exists()


def _enhance_argv(tmp_path, checkpoint):
    return ["enhance", "--checkpoint", str(checkpoint), str(_tiny_nifti(tmp_path / "in.nii.gz")),
            "-o", str(tmp_path / "out.nii.gz")]


def test_a_sidecar_that_is_not_json_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    line = _one_line_error(_enhance_argv(tmp_path, bad), capsys)
    assert str(bad) in line and "not valid JSON" in line
    bad.write_bytes(b"\xff\xfe\x00garbage")
    line = _one_line_error(_enhance_argv(tmp_path, bad), capsys)
    assert str(bad) in line and "UTF-8" in line


def test_a_sidecar_that_is_a_folder_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "dir.json").mkdir()
    line = _one_line_error(_enhance_argv(tmp_path, tmp_path / "dir.json"), capsys)
    assert str(tmp_path / "dir.json") in line and "is a folder" in line


def test_a_pickle_checkpoint_is_refused_in_one_line_and_never_unpickled(tmp_path, capsys):
    import json
    import pickle

    import torch

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    pt = tmp_path / "model.pt"
    torch.save({"x": 1}, pt)
    line = _one_line_error(_enhance_argv(tmp_path, pt), capsys)
    assert str(pt) in line and "pickle" in line
    # A sidecar whose weights_file points at a pickle file (with a matching SHA-256).
    ckpt = _tiny_checkpoint(tmp_path)
    evil = ckpt.parent / "evil.pkl"
    evil.write_bytes(pickle.dumps(Boom()))
    doc = json.loads(ckpt.read_text())
    from spectdl.io.atomic import file_sha256

    doc["weights_file"], doc["weights_sha256"] = evil.name, file_sha256(evil)
    ckpt.write_text(json.dumps(doc))
    line = _one_line_error(_enhance_argv(tmp_path, ckpt), capsys)
    assert str(ckpt) in line and "evil.pkl" in line and "safetensors" in line
    # Even named .safetensors, a pickle's bytes are not read as a checkpoint.
    fake = ckpt.parent / "fake.safetensors"
    fake.write_bytes(pickle.dumps(Boom()))
    doc["weights_file"], doc["weights_sha256"] = fake.name, file_sha256(fake)
    ckpt.write_text(json.dumps(doc))
    line = _one_line_error(_enhance_argv(tmp_path, ckpt), capsys)
    assert str(ckpt) in line and "not a readable safetensors file" in line


@pytest.mark.parametrize("kwargs, expected", [
    ({"features": [8, 16]}, "weights do not fit"),
    ({"spatial_dims": 3}, "weights do not fit"),
    ({"no_such_kwarg": 1}, "model.kwargs"),
])
def test_checkpoint_kwargs_that_do_not_fit_the_weights_are_one_line(tmp_path, capsys, kwargs, expected):
    import json

    ckpt = _tiny_checkpoint(tmp_path)
    doc = json.loads(ckpt.read_text())
    doc["spectdl"]["model"]["kwargs"].update(kwargs)
    ckpt.write_text(json.dumps(doc))
    line = _one_line_error(_enhance_argv(tmp_path, ckpt), capsys)
    assert str(ckpt) in line and expected in line
    assert not (tmp_path / "out.nii.gz").exists()


def test_checkpoint_errors_are_input_errors_naming_the_file(tmp_path):
    from spectdl.errors import InputError
    from spectdl.training import load_model_from_checkpoint

    (tmp_path / "d.json").mkdir()
    with pytest.raises(InputError, match="d.json"):
        load_model_from_checkpoint(tmp_path / "d.json")
    import json

    ckpt = _tiny_checkpoint(tmp_path)
    doc = json.loads(ckpt.read_text())
    doc["spectdl"]["model"]["kwargs"]["features"] = [2, 2]
    ckpt.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="best.json"):
        load_model_from_checkpoint(ckpt)


def _cases_csv(tmp_path, n=2):
    import numpy as np

    rows = ["case_id,split,input,target"]
    for i in range(n):
        np.save(tmp_path / f"c{i}_low.npy", np.full((12, 12), 1.0 + i, np.float32))
        np.save(tmp_path / f"c{i}_ref.npy", np.full((12, 12), 2.0 + i, np.float32))
        rows.append(f"c{i},test,c{i}_low.npy,c{i}_ref.npy")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "cases.csv"


def _argv_with_out(command, tmp_path, out):
    (tmp_path / "sim.yaml").write_text(SIM_YAML)
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    (tmp_path / "proj.dcm").write_bytes(b"projections")
    (tmp_path / "pred").mkdir(exist_ok=True)
    return {
        "simulate": ["simulate", str(tmp_path / "sim.yaml"), "-o", str(out)],
        "train": ["train", str(tmp_path / "train.yaml"), "--data", str(_cases_csv(tmp_path)), "-o", str(out)],
        "evaluate": ["evaluate", str(_cases_csv(tmp_path)), "--predictions", str(tmp_path / "pred"), "-o", str(out)],
        "reconstruct": ["reconstruct", str(tmp_path / "proj.dcm"), "-o", str(out)],
    }[command]


@pytest.mark.parametrize("command", ["simulate", "train", "evaluate", "reconstruct"])
def test_an_out_that_is_an_existing_file_is_one_line(tmp_path, capsys, command):
    out = tmp_path / "taken"
    out.write_bytes(b"keep me")
    line = _one_line_error(_argv_with_out(command, tmp_path, out), capsys)
    assert str(out) in line and "not a folder" in line
    assert out.read_bytes() == b"keep me"


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root ignores folder permissions")
@pytest.mark.parametrize("command", ["simulate", "evaluate"])
def test_a_read_only_out_folder_is_one_line(tmp_path, capsys, command):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    argv = _argv_with_out(command, tmp_path, ro / "out")
    if command == "evaluate":
        import numpy as np

        for i in range(2):
            np.save(tmp_path / "pred" / f"c{i}.npy", np.full((12, 12), 2.0, np.float32))
    os.chmod(ro, 0o500)
    try:
        line = _one_line_error(argv, capsys)
    finally:
        os.chmod(ro, 0o700)
    assert "Permission denied" in line or "permission" in line.lower()
    assert str(ro) in line
    assert list(ro.iterdir()) == []


def test_a_multi_line_error_is_one_summary_line_with_the_rest_in_a_file(tmp_path, capsys):
    bad = tmp_path / "cases.csv"
    bad.write_text("case_id,split,input,target\n,test,a.npy,b.npy\n,test,c.npy,d.npy\n,test,e.npy,f.npy\n")
    (tmp_path / "pred").mkdir()
    argv = ["evaluate", str(bad), "--predictions", str(tmp_path / "pred"), "-o", str(tmp_path / "eval")]
    line = _one_line_error(argv, capsys)
    assert "3 problems" in line and "more problems; run with --verbose, or see " in line
    saved = line.rsplit("or see ", 1)[1].rstrip(")")
    text = open(saved, encoding="utf-8").read()
    assert text.count("empty case_id") == 3
    with pytest.raises(SystemExit):
        main(["--verbose", *argv])
    assert capsys.readouterr().err.count("empty case_id") >= 3


def test_a_one_line_error_is_printed_as_it_is(tmp_path, capsys):
    line = _one_line_error(["report", str(tmp_path / "nope")], capsys)
    assert "more problems" not in line


def test_reconstruct_never_replaces_an_input_inside_its_out_folder(tmp_path, capsys):
    out = tmp_path / "DIR"
    out.mkdir()
    proj = out / "recon.nii.gz"
    proj.write_bytes(b"these are the projections")
    before = _snapshot(out)
    line = _one_line_error(["reconstruct", str(proj), "-o", str(out), "--overwrite"], capsys)
    assert "is, or lies inside, the input" in line and str(proj) in line
    assert _snapshot(out) == before


def test_reconstruct_never_replaces_the_ct_slices(tmp_path, capsys):
    ct = tmp_path / "X" / "dicom"
    ct.mkdir(parents=True)
    for i in range(3):
        (ct / f"IM_{i + 1:04d}.dcm").write_bytes(f"ct slice {i}".encode())
    (tmp_path / "proj.dcm").write_bytes(b"projections")
    before = _snapshot(tmp_path)
    line = _one_line_error(["reconstruct", str(tmp_path / "proj.dcm"), "--ct", str(ct), "-o", str(tmp_path / "X"),
                            "--overwrite"], capsys)
    assert "lies inside, the input" in line and str(ct) in line
    line = _one_line_error(["reconstruct", str(tmp_path / "proj.dcm"), "--ct", str(ct), "-o", str(ct / "sub")],
                           capsys)
    assert "lies inside, the input" in line
    assert _snapshot(tmp_path) == before


def test_enhance_never_writes_over_its_checkpoint(tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path)
    inp = _tiny_nifti(tmp_path / "in.nii.gz")
    before = _snapshot(tmp_path)
    line = _one_line_error(["enhance", "--checkpoint", str(ckpt), str(inp), "-o", str(ckpt), "--overwrite"], capsys)
    assert "input" in line
    line = _one_line_error(["enhance", "--checkpoint", str(ckpt), str(inp), "-o", str(inp), "--overwrite"], capsys)
    assert "input" in line
    assert _snapshot(tmp_path) == before


def test_evaluate_and_train_never_write_over_a_listed_file(tmp_path, capsys):
    import numpy as np

    manifest = _cases_csv(tmp_path)
    (tmp_path / "pred").mkdir()
    for i in range(2):
        np.save(tmp_path / "pred" / f"c{i}.npy", np.full((12, 12), 2.0, np.float32))
    # The manifest lists a file named metrics.csv in the folder given as -o.
    (tmp_path / "ev").mkdir()
    np.save(tmp_path / "ev" / "m.npy", np.full((12, 12), 2.0, np.float32))
    (tmp_path / "ev" / "metrics.csv").write_bytes((tmp_path / "ev" / "m.npy").read_bytes())
    manifest.write_text(manifest.read_text() + "c9,test,ev/metrics.csv,c0_ref.npy\n")
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    before = _snapshot(tmp_path)
    line = _one_line_error(["evaluate", str(manifest), "-p", str(tmp_path / "pred"), "-o", str(tmp_path / "ev"),
                            "--overwrite"], capsys)
    assert "metrics.csv" in line and "input" in line
    line = _one_line_error(["evaluate", str(manifest), "-p", str(tmp_path / "pred"), "-o", str(tmp_path / "pred")],
                           capsys)
    assert "lies inside, the input" in line
    # train's -o would write ev/ (config.yaml, checkpoints/...) where the manifest lists ev/metrics.csv: fine,
    # but -o ev/metrics.csv itself, or a folder the manifest lists, is refused.
    (tmp_path / "case_dir").mkdir()
    (tmp_path / "case_dir" / "config.yaml").write_text("a listed input")
    manifest.write_text(manifest.read_text() + "c8,train,case_dir/config.yaml,c0_ref.npy\n")
    before = _snapshot(tmp_path)
    line = _one_line_error(["train", str(tmp_path / "train.yaml"), "--data", str(manifest), "-o",
                            str(tmp_path / "case_dir")], capsys)
    assert "config.yaml" in line and "is, or lies inside, the input" in line
    assert _snapshot(tmp_path) == before


def test_evaluate_refuses_to_replace_metrics_without_overwrite(tmp_path, capsys):
    import numpy as np

    manifest = _cases_csv(tmp_path)
    (tmp_path / "pred").mkdir()
    for i in range(2):
        np.save(tmp_path / "pred" / f"c{i}.npy", np.full((12, 12), 2.5, np.float32))
    argv = ["evaluate", str(manifest), "-p", str(tmp_path / "pred"), "-o", str(tmp_path / "ev"), "--no-baseline"]
    main(argv)
    (tmp_path / "ev" / "metrics.csv").write_text("old")
    line = _one_line_error(argv, capsys)
    assert "metrics.csv" in line and "--overwrite" in line
    assert (tmp_path / "ev" / "metrics.csv").read_text() == "old"
    main([*argv, "--overwrite"])
    assert (tmp_path / "ev" / "metrics.csv").read_text().startswith("case,method")


def test_a_permission_error_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    # Independent of the user (root ignores chmod): the folder cannot be made.
    import pathlib

    real = pathlib.Path.mkdir

    def refuse(self, *a, **k):
        if "denied" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    (tmp_path / "sim.yaml").write_text(SIM_YAML)
    line = _one_line_error(["simulate", str(tmp_path / "sim.yaml"), "-o", str(tmp_path / "denied")], capsys)
    assert "Permission denied" in line and str(tmp_path / "denied") in line


def test_reconstruct_refuses_an_unknown_over_budget_mode_before_reading(tmp_path, capsys):
    (tmp_path / "proj.dcm").write_bytes(b"not read")
    line = _one_line_error(["reconstruct", str(tmp_path / "proj.dcm"), "-o", str(tmp_path / "out"),
                            "--over-budget", "drop"], capsys)
    assert "--over-budget: 'drop'" in line and "'half' or 'recompute'" in line
    assert not (tmp_path / "out").exists()


def test_the_command_line_waits_passively_unless_the_user_chose_an_openmp_policy():
    """Set before torch starts (spectdl.cli does not import it), in a fresh interpreter."""
    import os
    import subprocess
    import sys

    code = ("import sys; from spectdl.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "import os; print(os.environ.get('OMP_WAIT_POLICY'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "ACTIVE"
    probe = subprocess.run([sys.executable, "-c", "import sys, spectdl.cli; print('torch' in sys.modules)"],
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"  # so the setting reaches torch's OpenMP runtime
