"""Per-case evaluation of enhanced images against their references, with paired statistics.

For every case of a manifest split, the prediction (a file or DICOM folder named after the case id
in a predictions folder, as ``spectdl enhance`` writes them) and the case's unprocessed ``input``
are compared with its ``target``: PSNR (peak = reference maximum, the bone SPECT convention), SSIM (data
range = reference maximum), NRMSE (Euclidean) and MAE; inside the lesion mask too when the
manifest has one. ``metrics.csv`` holds one row per case, ``summary.json`` the means and the
paired Wilcoxon tests of prediction against input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from spectdl.data import load_manifest, read_image
from spectdl.errors import InputError
from spectdl.metrics.functional import mae, nrmse, psnr, ssim
from spectdl.stats.paired import wilcoxon_test
from spectdl.studies._io import atomic_write_text, write_json

METRICS = ("psnr_db", "ssim", "nrmse", "mae")


@dataclass
class EvaluationResult:
    metrics_csv: Path
    summary_json: Path
    summary: dict


def _scores(img: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    peak = float(ref.max())
    if not peak > 0:
        raise InputError("reference: its maximum is not positive; PSNR and SSIM need a positive peak")
    a, b = img[None, None].double(), ref[None, None].double()
    return {
        "psnr_db": float(psnr(a, b, data_range=peak)),
        "ssim": float(ssim(a, b, data_range=peak)),
        "nrmse": float(nrmse(a, b)),
        "mae": float(mae(a, b)),
    }


def _prediction_path(folder: Path, case_id: str) -> Path:
    for name in (f"{case_id}.nii.gz", f"{case_id}.nii", f"{case_id}.npy", case_id):
        if (folder / name).exists():
            return folder / name
    raise InputError(
        f"predictions: no prediction for case {case_id} in {folder}; expected {case_id}.nii.gz, "
        f"{case_id}.nii, {case_id}.npy or a DICOM folder {case_id}/"
    )


def evaluate_manifest(
    manifest_path: str | Path,
    predictions: str | Path,
    out_dir: str | Path,
    *,
    baseline: bool = True,
    split: str = "test",
) -> EvaluationResult:
    """Score every ``split`` case's prediction against its ``target``.

    With ``baseline`` the case's ``input`` (usually the low-count image) is scored the same way, and
    each metric is compared between prediction and input with a paired Wilcoxon signed-rank test.
    """
    import pandas as pd

    manifest = load_manifest(manifest_path)
    cases = manifest.split(split)
    if not cases:
        raise InputError(f"{manifest.path}: no case in split {split!r}")
    folder = Path(predictions)
    if not folder.is_dir():
        raise InputError(f"predictions: {folder} is not a folder")
    paths = {c.case_id: _prediction_path(folder, c.case_id) for c in cases}
    problems = [f"case {c.case_id}: no {col!r} column" for c in cases
                for col in ("target", *(["input"] if baseline else [])) if col not in c.paths]
    if problems:
        raise InputError(f"{manifest.path}: " + "; ".join(problems))
    rows = []
    for case in cases:
        ref = read_image(case.paths["target"], "target")
        row: dict[str, object] = {"case": case.case_id}
        sources = [("prediction", paths[case.case_id])] + ([("baseline", case.paths["input"])] if baseline else [])
        for name, path in sources:
            img = read_image(path, "input")
            if img.shape != ref.shape:
                raise InputError(
                    f"case {case.case_id}: {name} {path} has shape {tuple(img.shape)}; expected the "
                    f"target's {tuple(ref.shape)}"
                )
            for k, v in _scores(img, ref).items():
                row[f"{k}_{name}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "metrics.csv"
    atomic_write_text(csv, df.to_csv(index=False))
    summary: dict[str, object] = {"manifest": str(manifest.path), "predictions": str(folder), "split": split,
                                  "n_cases": len(df)}
    for m in METRICS:
        summary[f"{m}_prediction"] = float(df[f"{m}_prediction"].mean())
        if baseline:
            summary[f"{m}_baseline"] = float(df[f"{m}_baseline"].mean())
            try:
                r = wilcoxon_test(df, a=f"{m}_prediction", b=f"{m}_baseline")
                summary[f"{m}_wilcoxon"] = {"statistic": r.statistic, "p_value": r.p_value,
                                            "effect_size": r.effect_size, "estimate": r.estimate, "n": r.n}
            except InputError as exc:
                summary[f"{m}_wilcoxon"] = {"error": str(exc), "p_value": math.nan}
    js = out / "summary.json"
    write_json(js, summary)
    return EvaluationResult(csv, js, summary)
