"""Stage functions of the planar whole-body studies: real-pair files, perceptual scores, lesion
counts and the observer's diagnosis.

Images here are planar scans ``[1, V, H, W]`` (``V`` views, e.g. anterior and posterior, in one
pixel frame; rows head to feet). A case is scored on its views side by side, ``[H, V·W]``
(:func:`side_by_side`), as a whole-body scan is read.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.io.atomic import atomic_write


def side_by_side(views: torch.Tensor) -> torch.Tensor:
    """``[..., V, H, W]`` → ``[H, V·W]``: the views next to each other (anterior left)."""
    v = views.reshape(views.shape[-3:])
    return torch.cat(list(v), dim=-1)


def _save_npy(path: Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, array)
    data = buf.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite=True)


# --------------------------------------------------------------------------------------------------
# Real (or real-like) pairs: bladder exclusion and count-level normalisation, written as a manifest


def real_pair_manifests(folder: Path, splits: Mapping[str, Any], scans: Mapping[str, Mapping[str, torch.Tensor]],
                        speeds: Sequence[float], *, bladder_label: int, threshold: float = 0.5, dilate_px: int = 2,
                        margin_px: int = 6, view_names: Sequence[str] = ("ant", "post")) -> dict[str, Any]:
    """The preprocessed training pairs of fast and 1x scans as ``.npy`` files and one manifest per
    speed (``folder/pairs_<v>x.csv``: ``case_id``, ``split``, ``input``, ``target``, ``organ_labels``),
    one case per view, so that :class:`spectdl.data.ManifestDataset` reads them as it reads real pairs.

    ``splits[split]``: a :class:`~spectdl.studies.stages.CaseSet` with ``full`` (the 1x counts
    ``[1, V, H, W]``) and ``labels``; ``scans[split]["<case>/<v>"]``: the fast scan ``[V, H, W]``.
    Per view: the bladder mask (:func:`spectdl.data.planar_pairs.bladder_mask` on the 1x view within
    the phantom's bladder label dilated by ``margin_px``: the operator's pelvic ROI), then the fast
    scan scaled so that its counts outside the bladder equal the 1x scan's
    (:func:`spectdl.data.planar_pairs.count_normalise`); the mask is stored as ``organ_labels`` (1 =
    bladder). Returns ``{"manifests": {v: path}, "scales": {"<case>/<view>/<v>": s}}``.
    """
    from scipy import ndimage

    from spectdl.data.planar_pairs import bladder_mask, count_normalise

    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[float, list[dict[str, str]]] = {float(v): [] for v in speeds}
    scales: dict[str, float] = {}
    for split, cases in splits.items():
        for c in cases.ids:
            full = cases.get(c, "full").reshape(-1, *cases.get(c, "full").shape[-2:])
            labels = cases.get(c, "labels").reshape(cases.get(c, "labels").shape[-2:])
            region = ndimage.binary_dilation((labels == bladder_label).numpy(), iterations=int(margin_px))
            for k, view in enumerate(view_names[: full.shape[0]]):
                cid = f"{c}_{view}"
                if region.any():
                    bladder = bladder_mask(full[k], region, threshold=threshold, dilate_px=dilate_px)
                else:  # no bladder in view (a cropped field): nothing to leave out
                    bladder = torch.zeros(full.shape[-2:], dtype=torch.bool)
                target = _save_npy(folder / "files" / f"{cid}_1x.npy", full[k].numpy().astype(np.float32))
                mask = _save_npy(folder / "files" / f"{cid}_bladder.npy", bladder.numpy().astype(np.float32))
                for v in rows:
                    fast = scans[split][f"{c}/{v:g}"].reshape(full.shape)[k]
                    normalised, s = count_normalise(fast.double(), full[k].double(), bladder)
                    scales[f"{c}/{view}/{v:g}"] = float(s)
                    inp = _save_npy(folder / "files" / f"{cid}_{v:g}x.npy", normalised.numpy().astype(np.float32))
                    rows[v].append({"case_id": cid, "split": split, "input": str(inp.relative_to(folder)),
                                    "target": str(target.relative_to(folder)),
                                    "organ_labels": str(mask.relative_to(folder))})
    manifests = {}
    for v, table in rows.items():
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["case_id", "split", "input", "target", "organ_labels"])
        w.writeheader()
        w.writerows(table)
        text = buf.getvalue()
        path = folder / f"pairs_{v:g}x.csv"
        atomic_write(path, lambda tmp, t=text: Path(tmp).write_text(t, encoding="utf-8"), overwrite=True)
        manifests[f"{v:g}"] = str(path)
    return {"manifests": manifests, "scales": scales}


# --------------------------------------------------------------------------------------------------
# Perceptual scores against the 1x scan


def display_window(reference: torch.Tensor, body: torch.Tensor, percentile: float) -> float:
    """The upper end of the display window: the ``percentile`` of the reference's body pixels (a
    reader windows a bone scan so that the bladder and hot spots saturate)."""
    vals = reference.reshape(-1)[body.reshape(-1).bool()].double()
    if vals.numel() == 0:
        raise InputError("body: empty; expected the body's pixels")
    top = float(torch.quantile(vals, percentile / 100.0))
    return top if top > 0 else float(vals.max())


def perceptual_rows(images: Mapping[str, Mapping[str, torch.Tensor]], references: Mapping[str, torch.Tensor],
                    bodies: Mapping[str, torch.Tensor], *, lpips_network, fid_extractor, percentile: float = 99.5,
                    patch: int = 64, stride: int = 32, **columns: Any) -> list[dict[str, Any]]:
    """Per case (images ``[H, W]``): ``lpips`` and ``fid`` (the FID of the body tiles, as
    :func:`~spectdl.metrics.functional.patch_fid`: tiles at least half body) of every method against
    the reference, both on the reference's display window ``[0, L]`` (:func:`display_window`; values
    clipped to it); and per method the set-level FID of all its tiles against all the reference
    tiles (``fid_set``, case ``all``). Each tile set's features are computed once and serve both."""
    from spectdl.metrics.functional import fid_from_features, lpips, patch_features, patch_positions

    windows = {c: display_window(references[c], bodies[c], percentile) for c in references}
    clipped = {c: references[c].double().clamp(0, windows[c]) for c in references}
    corners = {c: patch_positions(references[c].shape[-2:], patch, stride, bodies[c], 0.5) for c in references}
    ref_feats = {c: patch_features(clipped[c], windows[c], fid_extractor, corners[c], patch, name="reference")
                 for c in references}
    rows: list[dict[str, Any]] = []
    for method, by_case in images.items():
        feats = []
        for c, img in by_case.items():
            L = windows[c]
            a = img.double().clamp(0, L)
            b = clipped[c]
            with torch.no_grad():
                d = float(lpips(a.float()[None, None], b.float()[None, None], L, network=lpips_network,
                                reduction="none")[0])
            f_img = patch_features(a, L, fid_extractor, corners[c], patch)
            feats.append(f_img)
            rows += [{"case": c, "method": method, "metric": "lpips", "value": d, **columns},
                     {"case": c, "method": method, "metric": "fid",
                      "value": float(fid_from_features(ref_feats[c], f_img)), **columns}]
        rows.append({"case": "all", "method": method, "metric": "fid_set",
                     "value": float(fid_from_features(torch.cat([ref_feats[c] for c in by_case]), torch.cat(feats))),
                     **columns})
    return rows


# --------------------------------------------------------------------------------------------------
# Count-level consistency of the hottest lesion


def hottest_lesions(references: Mapping[str, torch.Tensor], lesion_masks: Mapping[str, torch.Tensor],
                    dilate_px: int = 2) -> dict[str, torch.Tensor]:
    """Per case with lesions: the mask ``[H, W]`` of its hottest lesion in the reference (the
    connected lesion region holding the reference's highest count), dilated by ``dilate_px`` so
    that a small displacement between scans does not move the peak out of it."""
    from scipy import ndimage

    out = {}
    for c, ref in references.items():
        m = lesion_masks[c].reshape(ref.shape).bool().numpy()
        lab, n = ndimage.label(m)
        if n == 0:
            continue
        r = ref.double().numpy()
        peaks = ndimage.maximum(r, lab, index=np.arange(1, n + 1))
        hot = lab == int(np.argmax(peaks)) + 1
        if dilate_px:
            hot = ndimage.binary_dilation(hot, iterations=int(dilate_px))
        out[c] = torch.from_numpy(hot)
    return out


def lesion_count_rows(images: Mapping[str, Mapping[str, torch.Tensor]], references: Mapping[str, torch.Tensor],
                      hottest: Mapping[str, torch.Tensor], **columns: Any) -> list[dict[str, Any]]:
    """Per case with a lesion: ``max_lesion_count`` (the maximum count within its hottest lesion,
    :func:`hottest_lesions`) of every method and of the reference (method ``reference``), and
    each method's ``max_lesion_count_abs_error`` against the reference."""
    rows: list[dict[str, Any]] = []
    for c, m in hottest.items():
        ref = float(references[c].reshape(m.shape)[m].max())
        rows.append({"case": c, "method": "reference", "metric": "max_lesion_count", "value": ref, **columns})
        for method, by_case in images.items():
            if c not in by_case:
                continue
            v = float(by_case[c].reshape(m.shape)[m].max())
            rows += [{"case": c, "method": method, "metric": "max_lesion_count", "value": v, **columns},
                     {"case": c, "method": method, "metric": "max_lesion_count_abs_error", "value": abs(v - ref),
                      **columns}]
    return rows


def agreement_rows(rows: Sequence[Mapping[str, Any]], metric: str, methods: Sequence[str], *, reference: str,
                   name: str, **where: Any) -> list[dict[str, Any]]:
    """Set-level agreement of each method's per-case ``metric`` with the reference's (cases paired
    by id, rows selected by ``where``): Pearson ``r`` (``<name>_pearson``) and the Bland–Altman bias and
    95 % limits of agreement (``<name>_ba_bias``, ``…_ba_loa_low``, ``…_ba_loa_high``), case ``all``."""
    from spectdl.stats import bland_altman, pearson

    def values(method):
        return {r["case"]: float(r["value"]) for r in rows if r["metric"] == metric and r["method"] == method
                and r["case"] != "all" and all(r.get(k) == v for k, v in where.items())}

    ref = values(reference)
    out: list[dict[str, Any]] = []
    for method in methods:
        got = values(method)
        cases = sorted(set(got) & set(ref))
        if len(cases) < 3:
            continue
        a = np.array([got[c] for c in cases])
        b = np.array([ref[c] for c in cases])
        if a.std() == 0 or b.std() == 0:
            continue
        r = pearson(a, b)
        ba = bland_altman(a, b)
        for m, v, lo, hi in ((f"{name}_pearson", r.statistic, r.ci_low, r.ci_high),
                             (f"{name}_ba_bias", ba.bias, ba.bias_ci_low, ba.bias_ci_high),
                             (f"{name}_ba_loa_low", ba.loa_low, ba.loa_low_ci_low, ba.loa_low_ci_high),
                             (f"{name}_ba_loa_high", ba.loa_high, ba.loa_high_ci_low, ba.loa_high_ci_high)):
            out.append({"case": "all", "method": method, "metric": m, "value": float(v), "ci_low": float(lo),
                        "ci_high": float(hi), "n": len(cases), **where})
    return out


# --------------------------------------------------------------------------------------------------
# Diagnosis by a channelized Hotelling observer


def candidate_sites(reference: torch.Tensor, lesion_mask: torch.Tensor, labels: torch.Tensor, *, bone_label: int,
                    n_sites: int, min_distance_px: int) -> list[tuple[int, int]]:
    """Where the observer looks in one view ``[H, W]``: the centre (of mass) of every lesion region;
    in a case without lesions, the ``n_sites`` hottest bone spots of the reference (local maxima at
    least ``min_distance_px`` apart, :func:`skimage.feature.peak_local_max`), the spots a reader
    would check."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    m = lesion_mask.reshape(reference.shape).bool().numpy()
    lab, n = ndimage.label(m)
    if n:
        return [(int(round(r)), int(round(c))) for r, c in ndimage.center_of_mass(m, lab, range(1, n + 1))]
    bone = (labels.reshape(reference.shape) == bone_label).numpy()
    smooth = ndimage.gaussian_filter(reference.double().numpy(), 1.0)
    peaks = peak_local_max(np.where(bone, smooth, 0.0), min_distance=int(min_distance_px), num_peaks=int(n_sites),
                           exclude_border=False)
    return [(int(r), int(c)) for r, c in peaks]


def site_patches(image: torch.Tensor, sites: Sequence[tuple[int, int]], size: int) -> torch.Tensor:
    """``[N, size, size]`` patches of ``image [H, W]`` centred on ``sites`` (zero outside the image)."""
    h = size // 2
    padded = torch.nn.functional.pad(image.double().reshape(1, 1, *image.shape[-2:]), (h, h, h, h))[0, 0]
    return torch.stack([padded[r:r + size, c:c + size] for r, c in sites]) if sites else torch.zeros(0, size, size)


def fit_observer(train: Mapping[str, Any], *, patch: int, n_channels: int = 5,
                 width_px: float | None = None) -> dict[str, Any]:
    """The CHO (Laguerre–Gauss channels) that decides malignant versus benign-or-normal, fitted once.

    ``train``: ``{"patches_present": [N₁, p, p], "patches_absent": [N₀, p, p], "case_patches":
    {case: [n, p, p]}, "truth": {case: bool}}`` (:func:`observer_training`): the template is fitted on
    patches at malignant lesions (present) against patches at benign lesions and normal hot spots
    (absent) of the 1x training scans; a case's score is the largest statistic of its patches, and
    the threshold is the one that maximises Youden's J over the training cases. Returns ``cho``,
    ``threshold``, ``d_prime_train``, ``n_present`` and ``n_absent``."""
    from spectdl.metrics.observer import cho_train, laguerre_gauss_channels

    u = laguerre_gauss_channels((patch, patch), n_channels=n_channels, width_px=width_px)
    cho = cho_train(train["patches_present"], train["patches_absent"], u)
    tr = {c: _case_score(cho, p) for c, p in train["case_patches"].items()}
    t_true = np.array([bool(train["truth"][c]) for c in tr])
    s = np.array(list(tr.values()))
    candidates = np.unique(s)
    youden = [((s >= t) & t_true).sum() / max(t_true.sum(), 1) + ((s < t) & ~t_true).sum() / max((~t_true).sum(), 1)
              for t in candidates]
    return {"cho": cho, "threshold": float(candidates[int(np.argmax(youden))]), "d_prime_train": cho.d_prime_train,
            "n_present": int(len(train["patches_present"])), "n_absent": int(len(train["patches_absent"]))}


def _case_score(cho, patches: torch.Tensor) -> float:
    """A case's observer score: the largest statistic over its patches (``-inf`` without any)."""
    return float(cho.score(patches).max()) if len(patches) else float("-inf")


def observer_diagnosis(observer: Mapping[str, Any], test: Mapping[str, Mapping[str, Any]],
                       truth: Mapping[str, bool], **columns: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The fitted observer's (:func:`fit_observer`) decisions on every method's test images.

    ``test[method][case]``: that case's patches in the method's image (the same sites for every
    method). Rows per case: ``cho_score`` and ``malignant_called`` (0/1); per method (case ``all``):
    ``accuracy``, ``sensitivity``, ``specificity`` (per cent, Wilson 95 % CI) and ``auc`` (DeLong CI).
    Returns the rows and ``{"threshold", "d_prime_train", "n_present", "n_absent", "curves"}``, the
    ROC curves as ``{method: {"fpr": [...], "tpr": [...]}}``."""
    from spectdl.stats import diagnostic_accuracy, roc_analysis

    threshold = observer["threshold"]
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    for method, by_case in test.items():
        cases = [c for c in by_case if c in truth]
        scores = np.array([_case_score(observer["cho"], by_case[c]) for c in cases])
        called = scores >= threshold
        y = np.array([bool(truth[c]) for c in cases])
        for c, sc, d in zip(cases, scores, called):
            rows += [{"case": c, "method": method, "metric": "cho_score", "value": float(sc), **columns},
                     {"case": c, "method": method, "metric": "malignant_called", "value": float(d), **columns}]
        if y.all() or not y.any():
            continue
        acc = diagnostic_accuracy(y, called)
        for name, p in (("accuracy", acc.accuracy), ("sensitivity", acc.sensitivity), ("specificity", acc.specificity)):
            rows.append({"case": "all", "method": method, "metric": name, "value": 100.0 * p.estimate,
                         "ci_low": 100.0 * p.ci_low, "ci_high": 100.0 * p.ci_high, "n": len(cases), **columns})
        if min(y.sum(), (~y).sum()) < 2:  # an ROC curve and DeLong's interval need two of each
            continue
        finite = np.where(np.isfinite(scores), scores, np.nanmin(scores[np.isfinite(scores)]) - 1.0)
        roc = roc_analysis(y, finite)
        rows.append({"case": "all", "method": method, "metric": "auc", "value": float(roc.auc),
                     "ci_low": float(roc.ci_low), "ci_high": float(roc.ci_high), "n": len(cases), **columns})
        curves[method] = {"fpr": np.asarray(roc.fpr).tolist(), "tpr": np.asarray(roc.tpr).tolist()}
    info = {k: observer[k] for k in ("threshold", "d_prime_train", "n_present", "n_absent")}
    return rows, {**info, "curves": curves}


def mcnemar_rows(rows: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]], truth: Mapping[str, bool],
                 **where: Any) -> list[dict[str, Any]]:
    """McNemar tests of the observer's correctness between methods (cases paired by id; Table 3):
    one row per pair, metric ``mcnemar_p``, method ``a``, column ``versus`` = ``b``, case ``all``."""
    from spectdl.stats import mcnemar_test

    def calls(method):
        return {r["case"]: bool(r["value"]) for r in rows if r["metric"] == "malignant_called"
                and r["method"] == method and all(r.get(k) == v for k, v in where.items())}

    out = []
    for a, b in pairs:
        ca, cb = calls(a), calls(b)
        cases = sorted(set(ca) & set(cb) & set(truth))
        if len(cases) < 2:
            continue
        res = mcnemar_test([ca[c] for c in cases], [cb[c] for c in cases], truth=[bool(truth[c]) for c in cases])
        out.append({"case": "all", "method": a, "versus": b, "metric": "mcnemar_p", "value": float(res.p_value),
                    "n": len(cases), **where})
    return out


# --------------------------------------------------------------------------------------------------
# The whole-body study's sets, scores and the real scan

METHODS = ("rrdb_simu", "rrdb_real")


def stack_views(volumes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every view of every case as one image: ``[..., V, H, W]`` each → ``[N·V, 1, H, W]``."""
    return torch.cat([v.reshape(-1, 1, *v.shape[-2:]) for v in volumes])


def add_fast_scans(cases, scans: Mapping[str, torch.Tensor], levels: Mapping[float, str]) -> None:
    """Add to every case, per speed ``v``: ``real_like_<v>`` (its real-like fast scan ``scans["<case>/<v>"]``
    × v, ``[1, V, H, W]``), ``real_like_<v>_counts`` (the scan's counts) and ``thinned_<v>`` (the
    thinned counts of level ``levels[v]`` × v)."""
    for c in cases.ids:
        shape = (1, *cases.get(c, "full").shape[-3:])
        for v, name in levels.items():
            counts = scans[f"{c}/{v:g}"].reshape(shape).float()
            cases.volumes[c][f"real_like_{v:g}_counts"] = counts
            cases.volumes[c][f"real_like_{v:g}"] = counts * float(v)
            cases.volumes[c][f"thinned_{v:g}_counts"] = cases.get(c, name).reshape(shape)
            cases.volumes[c][f"thinned_{v:g}"] = cases.get(c, name).reshape(shape) * float(v)


def scored_sets(cases, predictions: Mapping[str, Mapping[str, Mapping[str, torch.Tensor]]], *,
                datasets: Sequence[str], speeds: Sequence[float], levels: Mapping[float, str]) -> dict[str, dict]:
    """``{"<dataset>/<v>": {"reference", "input", <method>..., "measured", ["truth"]: {case: [1, V, H, W]}}}``:
    the 1x scan, the fast scan × v, every method's prediction, the fast scan's counts and, for the
    thinned scans, their noise-free 1x mean."""
    out = {}
    shape = {c: (1, *cases.get(c, "full").shape[-3:]) for c in cases.ids}
    for d in datasets:
        for v in speeds:
            key = f"{d}/{v:g}"
            # The thinned scans' true mean is the noise-free 1x ÷ v (the deviance's ideal); the real-like
            # scans' is not kept (their motion and kinetics are drawn inside real_like_scans).
            truth = {"truth": {c: cases.get(c, "expected").reshape(shape[c]) for c in cases.ids}} if d == "thinned" else {}
            out[key] = {"reference": {c: cases.get(c, "full").reshape(shape[c]) for c in cases.ids}, **truth,
                        "input": cases.by_case(f"{d}_{v:g}"), "measured": cases.by_case(f"{d}_{v:g}_counts"),
                        **{m: {c: p.reshape(shape[c]) for c, p in predictions[key][m].items()} for m in predictions[key]}}
    return out


def metric_networks(lpips_cfg, fid_cfg, features_path: str | None) -> dict[str, Any]:
    """The LPIPS network and the FID feature extractor: ImageNet ones from local files where the
    config names them, else spectdl's fallback features (``features_path``)."""
    from spectdl.metrics.backbones import InceptionV3Features, PooledFeatures, load_planar_features
    from spectdl.metrics.functional.lpips import LPIPSNetwork

    fallback = load_planar_features(features_path) if features_path else None
    if lpips_cfg.weights and lpips_cfg.lin_weights:
        lp = LPIPSNetwork(lpips_cfg.net, lpips_cfg.weights, lpips_cfg.lin_weights)
    else:
        lp = LPIPSNetwork("planar", backbone=fallback)
    fid = InceptionV3Features(fid_cfg.weights) if fid_cfg.weights else PooledFeatures(fallback)
    return {"lpips": lp, "fid": fid.eval()}


def _masks(cases, key: str, predicate) -> dict[str, torch.Tensor]:
    """``{case: side_by_side(mask)}``: a single-channel map ``key`` repeated for every view."""
    out = {}
    for c in cases.ids:
        views = cases.get(c, "full").shape[-3]
        m = cases.get(c, key).reshape(1, *cases.get(c, key).shape[-2:]).expand(views, -1, -1)
        out[c] = side_by_side(predicate(m))
    return out


def _observer_sites(cases, refs, lesions, labels, *, bone_label: int, n_sites: int, distance_px: int) -> dict:
    return {c: candidate_sites(refs[c], lesions[c], labels[c], bone_label=bone_label, n_sites=n_sites,
                               min_distance_px=distance_px) for c in cases.ids}


def _truth(cases) -> dict[str, bool]:
    return {c: bool(cases.info[c]["params"].get("malignant", 0)) for c in cases.ids}


def observer_training(train, label_names: Mapping[str, int], *, patch: int, n_sites: int, distance_px: int) -> dict:
    """The observer's training data from the 1x training scans (see :func:`fit_observer`):
    patches at malignant lesions (present), at benign lesions and normal hot spots (absent)."""
    refs = {c: side_by_side(train.get(c, "full")) for c in train.ids}
    lesions = _masks(train, "lesions", lambda m: m > 0)
    labels = _masks(train, "labels", lambda m: m)
    sites = _observer_sites(train, refs, lesions, labels, bone_label=label_names["bone"], n_sites=n_sites,
                            distance_px=distance_px)
    truth = _truth(train)
    patches = {c: site_patches(refs[c], sites[c], patch) for c in train.ids}
    present = [patches[c] for c in train.ids if truth[c]]
    absent = [patches[c] for c in train.ids if not truth[c]]
    if not present or not absent:
        raise InputError(f"train: {len(present)} malignant and {len(absent)} other training cases; the observer "
                         "needs both (more phantoms, or sim.phantom_kwargs.diagnoses with both kinds)")
    return {"patches_present": torch.cat(present), "patches_absent": torch.cat(absent), "case_patches": patches,
            "truth": truth}


def wbs_rows(scored: Mapping[str, Mapping[str, Mapping[str, torch.Tensor]]], cases, train, nets: Mapping[str, Any],
             label_names: Mapping[str, int], *, window_percentile: float, fid_patch: int, fid_stride: int,
             lesion_dilate_px: int, cho_patch: int, cho_channels: int, normal_sites: int,
             site_distance_px: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every metric of the whole-body study, per test set ``"<dataset>/<v>"`` of :func:`scored_sets`
    (rows carry ``dataset`` and ``speed``): LPIPS and FID (:func:`perceptual_rows`), the total counts
    against the 1x scan's (``count_error_percent``), the hottest
    lesion's count (:func:`lesion_count_rows`) with its agreement (``count_pearson``, Bland–Altman),
    the Poisson deviance of the fast scan under each prediction ÷ v (``deviance_fast_scan``), the
    diagnosis of one observer fitted on the training scans (:func:`fit_observer`,
    :func:`observer_diagnosis`) and McNemar tests between methods."""
    from spectdl.studies.stages import count_rows, projection_deviance_rows

    refs = {c: side_by_side(cases.get(c, "full")) for c in cases.ids}
    bodies = _masks(cases, "labels", lambda m: m > 0)
    lesions = _masks(cases, "lesions", lambda m: m > 0)
    labels = _masks(cases, "labels", lambda m: m)
    hottest = hottest_lesions(refs, lesions, lesion_dilate_px)
    observer = fit_observer(observer_training(train, label_names, patch=cho_patch, n_sites=normal_sites,
                                              distance_px=site_distance_px), patch=cho_patch, n_channels=cho_channels)
    sites = _observer_sites(cases, refs, lesions, labels, bone_label=label_names["bone"], n_sites=normal_sites,
                            distance_px=site_distance_px)
    truth = _truth(cases)
    rows: list[dict[str, Any]] = []
    decisions: dict[str, Any] = {}
    for key, sets in scored.items():
        d, v = key.split("/")
        cols = {"dataset": d, "speed": float(v)}
        methods = ["input", *[m for m in METHODS if m in sets]]
        images = {m: {c: side_by_side(x) for c, x in sets[m].items()} for m in methods}
        rows += perceptual_rows(images, refs, bodies, lpips_network=nets["lpips"], fid_extractor=nets["fid"],
                                percentile=window_percentile, patch=fid_patch, stride=fid_stride, **cols)
        rows += count_rows({m: sets[m] for m in methods}, sets["reference"], **cols)
        lesion = lesion_count_rows(images, refs, hottest, **cols)
        rows += lesion + agreement_rows(lesion, "max_lesion_count", methods, reference="reference", name="count", **cols)
        for m in [*methods[1:], "reference", *(["truth"] if "truth" in sets else [])]:
            rows += projection_deviance_rows(sets[m], sets["measured"], 1.0 / float(v), method=m,
                                             metric="deviance_fast_scan", **cols)
        test = {m: {c: site_patches(img[c], sites[c], cho_patch) for c in cases.ids}
                for m, img in {**images, "reference": refs}.items()}
        diag, decisions[key] = observer_diagnosis(observer, test, truth, **cols)
        rows += diag
        pairs = [(m, "reference") for m in methods] + [(m, "input") for m in methods[1:]] + \
                ([("rrdb_real", "rrdb_simu")] if {"rrdb_real", "rrdb_simu"} <= set(methods) else [])
        rows += mcnemar_rows(diag, pairs, truth, **cols)
    return rows, {"observer": decisions, "n_hottest_lesions": len(hottest)}


def example_images(scored, speeds: Sequence[float], dataset: str = "real_like") -> dict[str, dict[str, torch.Tensor]]:
    """The report's image grid at the highest speed: 1x, the fast scan and every method, side by side."""
    v = max(speeds)
    sets = scored[f"{dataset}/{v:g}"]
    out = {"reference": {c: side_by_side(x) for c, x in sets["reference"].items()}}
    for m in ("input", *METHODS):
        if m in sets:
            out[f"{m}_{v:g}x"] = {c: side_by_side(x) for c, x in sets[m].items()}
    return out


def _real_view(path: str, pixel_mm: float) -> tuple[torch.Tensor, int, str]:
    """The real scan's first view as ``[rows head to feet, columns]`` counts, summed over ``k × k``
    pixels to the study's pixel size (``k`` an integer)."""
    from spectdl.io.planar import read_planar

    scan = read_planar(path)
    name = "anterior" if "anterior" in scan.views else sorted(scan.views)[0]
    img = scan.views[name].T.double()  # read_planar gives [across, along]
    spacing = float(scan.pixel_spacing_mm[0])
    k = int(round(pixel_mm / spacing))
    if k < 1 or abs(k * spacing - pixel_mm) > 0.01 * pixel_mm:
        raise InputError(f"{path}: pixel spacing {spacing:g} mm; the study's {pixel_mm:g} mm is not a whole multiple "
                         "of it (expected the study grid's pixel to be k × the scan's)")
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    binned = img[:h, :w].reshape(h // k, k, w // k, k).sum((1, 3))
    return binned.round(), k, f"{Path(path).name} ({name})"


def enhance_real_scan(folder: Path, path: str, pixel_mm: float, speeds: Sequence[float],
                      checkpoints: Mapping[str, str], *, seed: int, device: str = "cpu") -> dict[str, Any]:
    """A real planar scan as an inference case: its ``1/v`` versions by binomial thinning (one
    generator from ``seed``), × v, enhanced by every checkpoint ``checkpoints["<method>/<v>"]``.
    Saves ``folder/real_scan.npz`` (``reference``, ``input/<v>``, ``counts/<v>``, ``<method>/<v>``,
    each ``[H, W]``) and returns its path with the scan's description."""
    from spectdl.inference import enhance_volume
    from spectdl.noise import thin
    from spectdl.studies.stages import save_volumes
    from spectdl.training import load_model_from_checkpoint

    img, k, source = _real_view(path, pixel_mm)
    gen = torch.Generator().manual_seed(int(seed))
    out = {"reference": img.float()}
    for v in speeds:
        low = thin(img, 1.0 / float(v), gen)
        out[f"counts/{v:g}"] = low.float()
        out[f"input/{v:g}"] = (low * float(v)).float()
    for key, ckpt in checkpoints.items():
        method, v = key.split("/")
        model, meta = load_model_from_checkpoint(ckpt, map_location=device)
        with torch.no_grad():
            pred = enhance_volume(model, out[f"input/{v}"].reshape(1, 1, *img.shape), meta=meta, device=device)
        out[f"{method}/{v}"] = pred.reshape(img.shape).cpu().float()
    folder.mkdir(parents=True, exist_ok=True)
    return {"volumes": str(save_volumes(folder / "real_scan.npz", out)), "source": source,
            "counts": float(img.sum()), "bin": k}


def _real_body(reference: torch.Tensor) -> torch.Tensor:
    """The body of a real scan without labels: the smoothed image above 5 % of its 99th percentile."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(reference.double().numpy(), 2.0)
    return torch.from_numpy(smooth > 0.05 * np.percentile(smooth, 99))


def real_scan_rows(real: Mapping[str, Any], nets: Mapping[str, Any], *, window_percentile: float, fid_patch: int,
                   fid_stride: int) -> list[dict[str, Any]]:
    """LPIPS, FID and the fast scan's deviance of the real scan's enhanced versions (case ``real``,
    dataset ``real_scan``)."""
    from spectdl.studies.stages import load_volumes, projection_deviance_rows

    vol = load_volumes(real["volumes"])
    ref = {"real": vol["reference"]}
    body = {"real": _real_body(vol["reference"])}
    rows: list[dict[str, Any]] = []
    for v in sorted({k.split("/")[1] for k in vol if k.startswith("input/")}):
        cols = {"dataset": "real_scan", "speed": float(v)}
        images = {m: {"real": vol[f"{m}/{v}"]} for m in ("input", *METHODS) if f"{m}/{v}" in vol}
        rows += [r for r in perceptual_rows(images, ref, body, lpips_network=nets["lpips"], fid_extractor=nets["fid"],
                                            percentile=window_percentile, patch=fid_patch, stride=fid_stride, **cols)
                 if r["case"] != "all"]
        # The fast scan is the deviance's own data: each model and the 1x scan are scored on it.
        for m, pred in [*((m, images[m]["real"]) for m in images if m != "input"), ("reference", vol["reference"])]:
            rows += projection_deviance_rows({"real": pred}, {"real": vol[f"counts/{v}"]}, 1.0 / float(v), method=m,
                                             metric="deviance_fast_scan", **cols)
    return rows


def real_examples(real: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The real scan's images for the report's grid (``real/<name>`` keys, the highest speed)."""
    from spectdl.studies.stages import load_volumes

    vol = load_volumes(real["volumes"])
    v = max((k.split("/")[1] for k in vol if k.startswith("input/")), key=float)
    out = {"real/reference": vol["reference"], f"real/input_{v}x": vol[f"input/{v}"]}
    out.update({f"real/{m}_{v}x": vol[f"{m}/{v}"] for m in METHODS if f"{m}/{v}" in vol})
    return out
