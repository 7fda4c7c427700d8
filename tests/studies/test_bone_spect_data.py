"""bone-spect on a user's own paired scans (`--data cases.csv`): simulation and reconstruction are
skipped, every method trains on the manifest's slices and is scored against its targets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from spectdl.geometry import VoxelGrid
from spectdl.phantoms import bone_torso
from spectdl.studies import run_study


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    ph = bone_torso(VoxelGrid((48, 48, 24), 10.0), batch_size=4, seed=3, lesions=(1, 3))
    g = torch.Generator().manual_seed(0)
    lines = ["case_id,split,input,target,ct,lesion_mask"]
    for b, split in enumerate(("train", "train", "val", "test")):
        full = torch.poisson(ph.activity[b, 0].double() * 40, generator=g) / 40
        fast = torch.poisson(ph.activity[b, 0].double() * 6, generator=g) / 6
        for name, arr in (("low", fast), ("full", full), ("ct", ph.ct_hu[b, 0]), ("les", ph.info["lesion_mask"][b, 0])):
            np.save(root / f"p{b}_{name}.npy", arr.numpy().astype(np.float32))
        lines.append(f"p{b},{split},p{b}_low.npy,p{b}_full.npy,p{b}_ct.npy,p{b}_les.npy")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root / "cases.csv"


@pytest.mark.slow
def test_study_runs_on_a_manifest_of_real_cases(manifest, tmp_path):
    from spectdl.report.study import build_study_report

    res = run_study("bone-spect", scale="smoke", data=manifest, out=tmp_path / "results", reporter=build_study_report)
    run = res.run_dir
    for stage in ("simulate", "reconstruct"):
        assert "skipped" in json.loads((run / stage / "done.json").read_text())["result"]
    df = pd.read_csv(run / "metrics.csv", dtype={"case": str})
    assert set(df.case) == {"p3"}
    assert {"input", "u2net", "edsr", "rcan", "esrgan", "u2net_no_ct", "u2net_no_lesion"} <= set(df.method)
    # The input's PSNR is the scorer's on the files as given (peak = the target's maximum).
    from skimage.metrics import peak_signal_noise_ratio

    low, full = np.load(manifest.parent / "p3_low.npy"), np.load(manifest.parent / "p3_full.npy")
    ours = df[(df.method == "input") & (df.metric == "psnr")].value.iloc[0]
    assert ours == pytest.approx(peak_signal_noise_ratio(full, low, data_range=float(full.max())), rel=1e-5)
    summary = json.loads((run / "summary.json").read_text())
    nema = [c for c in summary["claims"] if "NEMA" in c["text"]]
    assert nema and all(c["holds"] is None for c in nema)  # no phantom scans among real cases
    assert (run / "report.html").is_file()
