"""Per-case evaluation of enhanced images against their references, with paired statistics.

For every case of a manifest split, the prediction (a file or DICOM folder named after the case id
in a predictions folder, as ``spectdl enhance`` writes them) and the case's unprocessed ``input``
are compared with its ``target`` by :func:`spectdl.metrics.scoring.score_cases` in the
``reference_max`` convention (the bone SPECT paper's): PSNR in dB with peak = reference maximum,
SSIM with data range = reference maximum, NRMSE (Euclidean) and MAE (image units).

``metrics.csv`` is long format, one row per case, method and metric: columns ``case, method,
metric, value, convention``, with method ``prediction`` or ``input`` (the baseline) and metric
``psnr``, ``ssim``, ``nrmse`` or ``mae``. ``summary.json`` holds the means and the paired Wilcoxon
tests of prediction against input, keyed ``<m>_prediction``, ``<m>_baseline`` and ``<m>_wilcoxon``
for ``<m>`` in :data:`METRICS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from spectdl.data import load_manifest, manifest_inputs, read_case_image
from spectdl.errors import InputError
from spectdl.metrics.scoring import score_cases
from spectdl.stats.paired import wilcoxon_test
from spectdl.studies.runner import write_json, write_text as atomic_write_text

#: The summary's metric names (``<m>_prediction`` ...), which the CLI prints.
METRICS = ("psnr_db", "ssim", "nrmse", "mae")
#: The name of each in metrics.csv (:func:`spectdl.metrics.scoring.score_cases`).
SCORE_NAMES = {"psnr_db": "psnr", "ssim": "ssim", "nrmse": "nrmse", "mae": "mae"}
CONVENTION = "reference_max"
#: metrics.csv's method of each scored image, and the summary's suffix for it.
METHODS = {"prediction": "prediction", "input": "baseline"}


@dataclass
class EvaluationResult:
    metrics_csv: Path
    summary_json: Path
    summary: dict


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
    overwrite: bool = False,
) -> EvaluationResult:
    """Score every ``split`` case's prediction against its ``target``.

    With ``baseline`` the case's ``input`` (usually the low-count image) is scored the same way, and
    each metric is compared between prediction and input with a paired Wilcoxon signed-rank test.
    An existing ``metrics.csv`` or ``summary.json`` in ``out_dir`` is an InputError unless
    ``overwrite``; an output that is, or lies inside, an input (the manifest, a file it lists, the
    predictions) is always refused. Both checks run before anything is read or written.
    """
    import pandas as pd

    from spectdl.io.atomic import check_output_folder, check_outputs

    out = Path(out_dir)
    outputs = [out / "metrics.csv", out / "summary.json"]
    check_output_folder(out, option="out_dir", expected="a folder for metrics.csv and summary.json")
    existing = [p.name for p in outputs if p.exists()]
    if existing and not overwrite:
        raise InputError(f"out_dir: {out} already holds {', '.join(existing)}; pass overwrite=True (--overwrite) "
                         "to replace them, or choose another folder")
    manifest = load_manifest(manifest_path)
    check_outputs([out, *outputs], [*manifest_inputs(manifest_path), Path(predictions)], option="out_dir")
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
    rows: list[dict] = []
    for case in cases:
        ref = read_case_image(case.paths["target"], "target")
        sources = [("prediction", paths[case.case_id])] + ([("input", case.paths["input"])] if baseline else [])
        for method, path in sources:
            img = read_case_image(path, "input")
            if img.shape != ref.shape:
                raise InputError(
                    f"case {case.case_id}: {method} {path} has shape {tuple(img.shape)}; expected the "
                    f"target's {tuple(ref.shape)}"
                )
            # One case at a time: volumes of a whole test split need not fit in memory together.
            rows += score_cases({case.case_id: img}, {case.case_id: ref}, metrics=tuple(SCORE_NAMES.values()),
                                convention=CONVENTION, method=method)
    df = pd.DataFrame(rows, columns=["case", "method", "metric", "value", "convention"])
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "metrics.csv"
    atomic_write_text(csv, df.to_csv(index=False))
    # Wide: one row per case, one column per (metric, method), for the means and the paired tests.
    wide = df.pivot(index="case", columns=["metric", "method"], values="value")
    summary: dict[str, object] = {"manifest": str(manifest.path), "predictions": str(folder), "split": split,
                                  "n_cases": len(wide)}
    for m in METRICS:
        columns = {suffix: wide[(SCORE_NAMES[m], method)] for method, suffix in METHODS.items()
                   if (SCORE_NAMES[m], method) in wide.columns}
        summary[f"{m}_prediction"] = float(columns["prediction"].mean())
        if baseline:
            summary[f"{m}_baseline"] = float(columns["baseline"].mean())
            try:
                r = wilcoxon_test(pd.DataFrame(columns), a="prediction", b="baseline")
                summary[f"{m}_wilcoxon"] = {"statistic": r.statistic, "p_value": r.p_value,
                                            "effect_size": r.effect_size, "estimate": r.estimate, "n": r.n}
            except InputError as exc:
                summary[f"{m}_wilcoxon"] = {"error": str(exc), "p_value": math.nan}
    js = out / "summary.json"
    write_json(js, summary)
    return EvaluationResult(csv, js, summary)
