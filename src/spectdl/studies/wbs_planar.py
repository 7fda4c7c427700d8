"""Fast planar whole-body bone scans (2x and 3x speed) enhanced by an RRDB GAN trained on simulated
and on real-like pairs.

The paper: Qi N., Pan B., Meng Q., et al. "Clinical performance of deep learning-enhanced ultrafast
whole-body scintigraphy in patients with suspected malignancy." EJNMMI Research (2024). 83 patients
(39 with metastases) on a Siemens Intevo with LEHR, 256×1024 images, scanned at 20 cm/min (1x), then
40 (2x) and 60 (3x) in the order 3x, 2x, 1x; RRDBNet generators (ESRGAN recipe, perceptual +
0.005·L1 + 0.01·BCE + 0.001·GAN) trained on real pairs (after bladder exclusion, count-level
normalisation and patch registration) and on Poisson-resampled simulations; LPIPS and FID against
1x (Table 4), count consistency of the hottest lesion (Figures 6–7) and two readers' diagnosis of
malignancy (Tables 2–3, Figure 5). Its finding: simulation does not fully reflect real fast scans.

Here: :func:`spectdl.phantoms.wholebody_planar` phantoms with normal, benign and malignant
diagnoses, blurred by the LEHR response (``sim.planar_distance_mm``); "simu" pairs by binomial
thinning of the 1x scan; "real-like" pairs as independent acquisitions with their own noise, patient
motion and tracer kinetics (:func:`spectdl.studies.stages.real_like_scans`), preprocessed as the
paper's real pairs and read back through :class:`spectdl.data.ManifestDataset`; one RRDB GAN per
training set and speed; the paper's two readers replaced by a channelized Hotelling observer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from spectdl.data.config import SimulationConfig
from spectdl.errors import ConfigError
from spectdl.studies import planar, stages
from spectdl.studies.config import StudyConfig, deep_merge, train_config
from spectdl.studies.registry import register_study
from spectdl.studies.results import Claim, PaperValue, write_results
from spectdl.typed_config import Section

METHODS = planar.METHODS
#: Test data sets: the real-like fast scans (the paper's test: real 2x and 3x acquisitions) and the
#: thinned ones (the "simu" kind, for the domain gap seen from the other side).
DATASETS = ("real_like", "thinned")
_WHERE = {"dataset": "real_like"}
_NOT_COMPARABLE = "fallback features unless ImageNet weights are given: not comparable with the paper's values"
_T4 = {  # Table 4: (fast scan, real-trained, simu-trained) per speed
    "fid": {2: (0.47, 0.15, 0.18), 3: (0.98, 0.19, 0.20)},
    "lpips": {2: (0.19, 0.17, 0.16), 3: (0.23, 0.18, 0.19)},
}
PAPER = [
    *[PaperValue("table4", metric, method, value, {"speed": float(v), **_WHERE},
                 note=f"{v}x{'' if method == 'input' else '-' + method.split('_')[1]}; {_NOT_COMPARABLE}")
      for metric, by_speed in _T4.items() for v, vals in by_speed.items()
      for method, value in zip(("input", "rrdb_real", "rrdb_simu"), vals)],
    *[PaperValue("table2", metric, "reference", value, {"speed": 2.0, **_WHERE},
                 note="1x; paper: two readers, here: a CHO observer (malignant vs benign or normal)")
      for metric, value in (("accuracy", 84.3), ("sensitivity", 87.18), ("specificity", 81.82))],
]
CLAIMS = [
    *[Claim(f"{m} lowers the {metric.upper()} of the {v}x scan", metric, m, "input", higher=False,
            where={"speed": float(v), **_WHERE})
      for v in (2, 3) for m in METHODS for metric in ("lpips", "fid")],
    Claim("3x-real has a better LPIPS than 3x-simu (paper p = 0.0016)", "lpips", "rrdb_real", "rrdb_simu",
          higher=False, where={"speed": 3.0, **_WHERE}),
]


@dataclass(frozen=True)
class ScanConfig(Section):
    """The real-like acquisitions: 1x duration, scan order (the paper's 3x, 2x, then 1x, back to
    back), tracer kinetics (:class:`spectdl.noise.scans.ScanKinetics`) and the motion bounds."""

    one_x_minutes: float = 10.0
    order: tuple[float, ...] = (3.0, 2.0)
    soft_tissue_washout_per_h: float = 0.10
    bladder_filling_per_h: float = 0.50
    max_shift_mm: float = 5.0
    max_rotation_deg: float = 1.0
    max_nonrigid_mm: float = 6.0


@dataclass(frozen=True)
class PreprocessingConfig(Section):
    """The real pairs' preprocessing: the bladder (``bladder_threshold`` of the maximum inside the
    bladder ROI, dilated by ``bladder_dilate_px``; the ROI is the phantom's bladder grown by
    ``bladder_margin_px``), the count-level normalisation outside it, and the patch registration."""

    bladder_threshold: float = 0.5
    bladder_dilate_px: int = 2
    bladder_margin_px: int = 6
    registration: str = "rigid"

    def _check(self) -> None:
        if self.registration not in ("translation", "rigid", "affine"):
            raise ConfigError(f"registration: {self.registration!r}; expected translation, rigid or affine")


@dataclass(frozen=True)
class WeightsConfig(Section):
    """A local weights file (``weights``; LPIPS also its linear layers, ``lin_weights``, and backbone
    ``net``). Without one, spectdl's fallback features are used (see ``fallback``)."""

    weights: Optional[str] = None
    lin_weights: Optional[str] = None
    net: str = "alex"


@dataclass(frozen=True)
class FallbackConfig(Section):
    """spectdl's fallback feature network (:func:`spectdl.training.feature_net.train_planar_features`),
    trained on the 1x training views whenever a weights file is missing."""

    steps: int = 300
    batch_size: int = 32
    patch: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 128)


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """``window_percentile``: the display window's top (of the 1x body pixels) for LPIPS and FID;
    ``fid_patch``/``fid_stride``: the per-case FID tiles (px); ``lesion_dilate_px``: the hottest
    lesion's mask grows by this; ``cho_patch_mm``: the observer's patch; ``normal_sites``: hot bone
    spots examined in a case without lesions, at least ``site_distance_mm`` apart."""

    window_percentile: float = 99.5
    fid_patch: int = 64
    fid_stride: int = 32
    lesion_dilate_px: int = 2
    cho_patch_mm: float = 36.0
    cho_channels: int = 5
    normal_sites: int = 4
    site_distance_mm: float = 30.0
    examples: int = 2


@dataclass(frozen=True)
class WbsConfig(StudyConfig):
    sim: SimulationConfig = field(default_factory=SimulationConfig)
    speeds: tuple[float, ...] = (2.0, 3.0)
    scan: ScanConfig = field(default_factory=ScanConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    count_scale: float = 20.0
    patch_size: int = 192
    patches_per_case: int = 4
    train: dict[str, Any] = field(default_factory=dict)
    perceptual: WeightsConfig = field(default_factory=WeightsConfig)
    lpips: WeightsConfig = field(default_factory=WeightsConfig)
    fid: WeightsConfig = field(default_factory=WeightsConfig)
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    real_scan: Optional[str] = "../shared/data/real/bone_wholebody/NM1_wholebody_bone.dcm"
    batch_size_inference: int = 2

    def _check(self) -> None:
        super()._check()
        if self.data is not None:
            raise ConfigError("data: wbs-planar simulates its real-like pairs from phantoms; --data is not supported")
        if self.sim.phantom != "wholebody_planar" or not {"counts", "expected", "labels", "lesion_mask"} <= set(self.sim.store):
            raise ConfigError("sim: expected phantom wholebody_planar storing expected, labels, lesion_mask and counts")
        levels = self.sim.counts.levels
        for v in self.speeds:
            name = self.level(v)
            if name not in levels or not math.isclose(levels[name], 1.0 / v, rel_tol=1e-6):
                raise ConfigError(f"speeds: {v:g} needs sim.counts.levels.{name}: {1.0 / v:.12g} (1/speed); found "
                                  f"{dict(levels)}")
        if levels.get("full") != 1.0:
            raise ConfigError(f"sim.counts.levels: expected full: 1.0, found {dict(levels)}")
        if sorted(self.scan.order) != sorted(self.speeds):
            raise ConfigError(f"scan.order: {list(self.scan.order)}; expected the speeds {list(self.speeds)} in scan order")
        for key, sec in (("perceptual", self.perceptual), ("lpips", self.lpips), ("fid", self.fid)):
            for name in ("weights", "lin_weights"):
                path = getattr(sec, name)
                if path and not Path(path).is_file():
                    raise ConfigError(f"{key}.{name}: {path} is not a file; expected a local weights file "
                                      "(nothing is downloaded), or null for spectdl's fallback features")
        if not self.count_scale > 0:
            raise ConfigError(f"count_scale: expected counts > 0, found {self.count_scale!r}")
        for v in self.speeds:
            for m in METHODS:
                self.train_config(m, v, None)

    @staticmethod
    def level(speed: float) -> str:
        return f"x{speed:g}"

    def normalization(self) -> dict[str, Any]:
        """Inputs (the fast scan × speed, at the 1x count level) ÷ ``count_scale`` counts; the output
        × the same, clipped at 0 (counts)."""
        return {"inputs": [self.count_scale], "output": 0, "output_min": 0.0}

    def pixel_mm(self) -> float:
        return float(self.sim.voxel_grid().voxel_size_mm[0]) if self.sim.grid is not None else 2.26

    def train_config(self, method: str, speed: float, features: Optional[str]):
        loss = {"vgg_weights_path": self.perceptual.weights} if self.perceptual.weights else \
            {"planar_features_path": features}
        meta = {"loss": loss, "seed": self.seed,
                "checkpoint": {"metadata": {"normalization": self.normalization(), "inference": {"slice_axis": 0},
                                            "speed": float(speed), "training_pairs": method.split("_")[1]}}}
        return train_config(deep_merge(self.train, meta))


def _real_like(folder: Path, cfg: WbsConfig, manifest: str) -> dict[str, Any]:
    """Real-like fast scans of every case, and the preprocessed training pairs of train and val."""
    from spectdl.noise.scans import ScanKinetics
    from spectdl.phantoms.wholebody import LABELS

    sc = cfg.scan
    kin = ScanKinetics(sc.soft_tissue_washout_per_h, sc.bladder_filling_per_h)
    minutes = stages.scan_midpoints(sc.one_x_minutes, sc.order)
    sets = {s: stages.simulated_cases(manifest, s, KEYS, prefix="w") for s in ("train", "val", "test")}
    out = {s: stages.real_like_scans(folder / s, cases, LABELS, cfg.pixel_mm(), minutes=minutes,
                                     seed=cfg.seed + 17 * (i + 1), kinetics=kin, max_shift_mm=sc.max_shift_mm,
                                     max_rotation_deg=sc.max_rotation_deg, max_nonrigid_mm=sc.max_nonrigid_mm)
           for i, (s, cases) in enumerate(sets.items())}
    p = cfg.preprocessing
    pairs = planar.real_pair_manifests(folder / "pairs", {s: sets[s] for s in ("train", "val")},
                                       {s: stages.load_volumes(out[s]["scans"]) for s in ("train", "val")},
                                       cfg.speeds, bladder_label=LABELS["bladder"], threshold=p.bladder_threshold,
                                       dilate_px=p.bladder_dilate_px, margin_px=p.bladder_margin_px)
    return {"scans": {s: o["scans"] for s, o in out.items()}, "motion": {s: o["motion"] for s, o in out.items()},
            "minutes": {f"{v:g}": t for v, t in minutes.items()}, **pairs}


KEYS = {"full": "counts_full", "expected": "expected", "labels": "labels", "lesions": "lesion_mask"}


def _features(folder: Path, cfg: WbsConfig, manifest: str) -> dict[str, Any]:
    """The feature networks of the perceptual loss, LPIPS and FID: local weights where given, else
    spectdl's fallback trained on the 1x training views (recorded either way)."""
    used = {"perceptual": cfg.perceptual.weights and f"VGG19 {cfg.perceptual.weights}",
            "lpips": cfg.lpips.weights and cfg.lpips.lin_weights and f"LPIPS {cfg.lpips.net} {cfg.lpips.weights}",
            "fid": cfg.fid.weights and f"Inception-v3 {cfg.fid.weights}"}
    out: dict[str, Any] = {"path": None, "record": None}
    if not all(used.values()):
        from spectdl.training.feature_net import save_planar_features, train_planar_features

        train = stages.simulated_cases(manifest, "train", {"full": KEYS["full"]}, prefix="w")
        views = planar.stack_views([train.get(c, "full") for c in train.ids])
        f = cfg.fallback
        net, record = train_planar_features(views, seed=cfg.seed + 5, steps=f.steps, batch_size=f.batch_size,
                                            patch=f.patch, channels=f.channels)
        out = {"path": str(save_planar_features(net, folder / "planar_features.safetensors", record, overwrite=True)),
               "record": record}
    out["used"] = {k: v or "fallback: spectdl PlanarFeatures (self-supervised on the 1x training views)"
                   for k, v in used.items()}
    return out


def _datasets(cfg: WbsConfig, sim_manifest: str, pairs: dict[str, str]):
    from spectdl.data import ManifestDataset, SimulatedDataset, load_manifest, transforms as T

    P = (cfg.patch_size, cfg.patch_size)

    def make(name: str):
        method, speed = name.rsplit("_", 1)
        v = float(speed.removesuffix("x"))
        norm = T.NormalizeChannels(cfg.normalization(), target_statistic=None)
        if method == "rrdb_simu":
            tf = T.Compose([T.Scale({"input": 1.0 / cfg.sim.counts.levels[cfg.level(v)]}), T.RandomChannel(),
                            T.RandomCrop(P), norm])
            return tuple(SimulatedDataset(sim_manifest, split, keys=("input", "target"), input=[f"counts_{cfg.level(v)}"],
                                          target=[KEYS["full"]], seed=cfg.seed, transform=tf,
                                          repeats=cfg.patches_per_case if split == "train" else 1)
                         for split in ("train", "val"))
        manifest = load_manifest(pairs[f"{v:g}"])
        tf = T.Compose([T.RegisterToReference(transform=cfg.preprocessing.registration), norm])
        return tuple(ManifestDataset(manifest, split, mode="patches", patch_size=P, columns=(), transform=tf,
                                     patches_per_case=cfg.patches_per_case if split == "train" else 1, seed=cfg.seed)
                     for split in ("train", "val"))

    return make


def _train(folder: Path, cfg: WbsConfig, manifest: str, real_like: dict, features: dict) -> dict[str, Any]:
    methods = {f"{m}_{v:g}x": cfg.train_config(m, v, features["path"]) for v in cfg.speeds for m in METHODS}
    return stages.train_methods(folder, methods, _datasets(cfg, manifest, real_like["manifests"]))


def _cases(cfg: WbsConfig, sims: dict[str, str], real_like: dict) -> stages.CaseSet:
    cases = stages.simulated_cases(sims["wbs"], "test", {**KEYS, **{cfg.level(v): f"counts_{cfg.level(v)}"
                                                                     for v in cfg.speeds}}, prefix="w")
    planar.add_fast_scans(cases, stages.load_volumes(real_like["scans"]["test"]),
                          {v: cfg.level(v) for v in cfg.speeds})
    return cases


def _predict(folder: Path, cfg: WbsConfig, ckpts: dict, cases: stages.CaseSet) -> dict[str, Any]:
    return {f"{d}/{v:g}": stages.predict_methods(folder / d / f"{v:g}x", {m: ckpts[f"{m}_{v:g}x"]["checkpoint"]
                                                                         for m in METHODS},
                                                 cases, {m: [f"{d}_{v:g}"] for m in METHODS}, device=cfg.device,
                                                 batch_size=cfg.batch_size_inference)
            for d in DATASETS for v in cfg.speeds}


def _real_scan(folder: Path, cfg: WbsConfig, ckpts: dict) -> dict[str, Any]:
    """The real whole-body scan: its 2x and 3x versions by thinning, enhanced by every model."""
    return planar.enhance_real_scan(folder, cfg.real_scan, cfg.pixel_mm(), cfg.speeds,
                                    {f"{m}/{v:g}": ckpts[f"{m}_{v:g}x"]["checkpoint"] for v in cfg.speeds
                                     for m in METHODS}, seed=cfg.seed + 99, device=cfg.device)


def _evaluate(folder: Path, cfg: WbsConfig, sims, features, ckpts, preds, real, cases: stages.CaseSet, real_like):
    from spectdl.phantoms.wholebody import LABELS

    ev = cfg.evaluation
    px = cfg.pixel_mm()
    nets = planar.metric_networks(cfg.lpips, cfg.fid, features["path"])
    scored = planar.scored_sets(cases, {k: stages.load_predictions(p) for k, p in preds.items()},
                                datasets=DATASETS, speeds=cfg.speeds, levels={v: cfg.level(v) for v in cfg.speeds})
    train = stages.simulated_cases(sims["wbs"], "train", KEYS, prefix="w")
    rows, analysis = planar.wbs_rows(scored, cases, train, nets, LABELS, window_percentile=ev.window_percentile,
                                     fid_patch=ev.fid_patch, fid_stride=ev.fid_stride, lesion_dilate_px=ev.lesion_dilate_px,
                                     cho_patch=_odd(ev.cho_patch_mm / px), cho_channels=ev.cho_channels,
                                     normal_sites=ev.normal_sites, site_distance_px=max(1, round(ev.site_distance_mm / px)))
    if real is not None:
        rows += planar.real_scan_rows(real, nets, window_percentile=ev.window_percentile, fid_patch=ev.fid_patch,
                                      fid_stride=ev.fid_stride)
    # Real against simu and each against the fast scan; the fast scan is the deviance's own data, so it
    # has no deviance to compare and that metric pairs the two models only.
    pairs = [("rrdb_real", ["rrdb_simu", "input"]), ("rrdb_simu", ["input"])]
    pairs_for = {"deviance_fast_scan": [("rrdb_real", ["rrdb_simu"])]}
    tests = [{"metric": metric, "method": a, "others": others, "test": "wilcoxon", "higher": False,
              "where": {"speed": float(v), "dataset": d}}
             for d in DATASETS for v in cfg.speeds
             for metric in ("lpips", "fid", "max_lesion_count_abs_error", "deviance_fast_scan")
             for a, others in pairs_for.get(metric, pairs)]
    extra = {
        "baseline_method": "input", "training": ckpts, "features": features["used"],
        "feature_record": features.get("record"), "analysis": analysis, "regions": REGIONS,
        "box_metrics": ["lpips", "fid", "max_lesion_count_abs_error"],
        "paired_tests": tests,
        "bland_altman": [{"name": f"lesion_{m}_{v:g}x", "metric": "max_lesion_count", "a": m, "b": "reference",
                          "where": {"speed": float(v), **_WHERE},
                          "title": f"Bland–Altman of the hottest lesion's maximum count: {m} against 1x ({v:g}x)"}
                         for v in cfg.speeds for m in ("input", *METHODS)],
        "line_figures": [{"name": f"roc_{v:g}x", "title": f"ROC of the observer, malignant vs benign or normal ({v:g}x, "
                          "real-like test scans)", "xlabel": "1 − specificity", "ylabel": "sensitivity",
                          "series": {m: {"x": c["fpr"], "y": c["tpr"]} for m, c in
                                     analysis["observer"][f"real_like/{v:g}"]["curves"].items()}}
                         for v in cfg.speeds if analysis["observer"].get(f"real_like/{v:g}", {}).get("curves")],
        "motion": real_like["motion"]["test"],
        "example_layout": "rc", "example_view": "anterior | posterior, head at the top",
    }
    extra["examples_wbs"] = str(stages.save_examples(folder / "examples_wbs.npz", planar.example_images(scored, cfg.speeds),
                                                     cases, n_cases=ev.examples))
    if real is not None:
        extra["examples_real"] = str(stages.save_volumes(folder / "examples_real.npz", planar.real_examples(real)))
    extra["notes"] = _notes(cfg, features, cases, rows, real, real_like)
    return rows, extra


def _odd(x: float) -> int:
    n = max(3, int(round(x)))
    return n if n % 2 else n + 1


def _notes(cfg: WbsConfig, features, cases, rows, real, real_like) -> list[str]:
    import numpy as np

    s = cfg.sim
    totals = [float(v) for c in cases.ids for v in cases.get(c, "full").double().sum((-2, -1)).reshape(-1)]
    diag = [int(cases.info[c]["params"].get("malignant", 0)) for c in cases.ids]
    fallback = [k for k, v in features["used"].items() if v.startswith("fallback")]
    notes = [
        f"Data: {s.n_samples} whole-body phantoms ({len(cases.ids)} test cases, {sum(diag)} malignant), "
        f"{s.grid.shape[0] if s.grid else 1024}×{s.grid.shape[1] if s.grid else 256} at {cfg.pixel_mm():g} mm, "
        f"anterior and posterior views with water attenuation and the {s.collimator} response at "
        f"{list(s.planar_distance_mm or [])} mm; 1x counts per view (test cases) {np.min(totals) / 1e6:.2f}–"
        f"{np.max(totals) / 1e6:.2f} M "
        "(guideline: at least 1.5 M).",
        "Features: " + "; ".join(f"{k}: {v}" for k, v in features["used"].items()) + "." + (
            f" The {', '.join(fallback)} values use spectdl's fallback features, so they are NOT comparable with the "
            "paper's LPIPS and FID (ImageNet AlexNet/VGG and Inception-v3); only their comparison between methods "
            "here is meaningful." if fallback else ""),
        "FID here is per case: the Fréchet distance between the features of the body tiles "
        f"({cfg.evaluation.fid_patch} px every {cfg.evaluation.fid_stride} px) of a scan and of its 1x scan; "
        "fid_set is the set-level FID of all tiles of a method. LPIPS and FID on the 1x scan's display window "
        f"(0 to its {cfg.evaluation.window_percentile:g}th body percentile).",
        f"Real-like scans: {cfg.scan.one_x_minutes:g} min at 1x, scans in the order "
        f"{', '.join(f'{v:g}x' for v in cfg.scan.order)}, 1x (mid-scan times "
        + ", ".join(f"{k}x {v:+.1f} min" for k, v in real_like["minutes"].items())
        + f" from the 1x scan); Tc-99m decay, soft-tissue washout {cfg.scan.soft_tissue_washout_per_h:g}/h, bladder "
        f"filling {cfg.scan.bladder_filling_per_h:g}/h; rigid motion up to {cfg.scan.max_shift_mm:g} mm and "
        f"{cfg.scan.max_rotation_deg:g}°, non-rigid limb and head displacement up to {cfg.scan.max_nonrigid_mm:g} mm.",
        "Observer: a CHO (Laguerre–Gauss channels) on patches at the lesions (at the hottest bone spots in normal "
        "cases), trained on the 1x training scans (malignant lesions against benign lesions and normal spots), "
        "a case's score the largest over its patches, the threshold the best Youden J on the training cases; it "
        "replaces the paper's two readers.",
    ]
    notes.append(_real_vs_simu(cfg, rows))
    if real is None:
        notes.append(f"The real whole-body scan was skipped: {cfg.real_scan} is not there (../shared/data is absent).")
    else:
        notes.append(f"Real scan: {real['source']} ({real['counts'] / 1e6:.2f} M counts, binned ×{real['bin']} to "
                     f"{cfg.pixel_mm():g} mm), its fast versions by binomial thinning to 1/speed; no lesion truth, so "
                     "it is scored against its own 1x only (LPIPS, FID, deviance).")
    return notes


def _real_vs_simu(cfg: WbsConfig, rows) -> str:
    """Whether the real-like-trained and the simu-trained models differ, from the saved rows."""
    from spectdl.studies.results import metrics_frame, paired_tests

    df = metrics_frame(rows)
    parts = []
    for v in cfg.speeds:
        for metric in ("lpips", "fid", "max_lesion_count_abs_error", "deviance_fast_scan"):
            t = paired_tests(df, metric, "rrdb_real", ["rrdb_simu"], where={"speed": float(v), **_WHERE}, higher=False)
            if not t or t[0].get("p_value") is None:
                continue
            t = t[0]
            verdict = "differ" if t["p_value"] < 0.05 else "do not differ"
            parts.append(f"{v:g}x {metric}: real {t['mean_method']:.3g}, simu {t['mean_baseline']:.3g}, "
                         f"p = {t['p_value']:.2g} ({verdict})")
    return ("Real-like-trained against simu-trained models on the real-like test scans (Wilcoxon, n = test cases): "
            + ("; ".join(parts) if parts else "not measured") + ". The paper found that they differ (3x LPIPS, "
            "p = 0.0016).")


REGIONS = {"body": "the whole-body scan, anterior and posterior side by side (LPIPS on the whole image, FID on the "
                   "tiles that are at least half body)",
           "hottest_lesion": "the hottest lesion of each case (in the 1x scan), dilated by the evaluation's "
                             "lesion_dilate_px"}


def run(run, cfg: WbsConfig) -> None:
    sims = run.stage("simulate", stages.simulate_sets, {"wbs": cfg.sim}, workers=cfg.workers)
    real_like = run.stage("pairs", _real_like, cfg, sims["wbs"])
    features = run.stage("features", _features, cfg, sims["wbs"])
    ckpts = run.stage("train", _train, cfg, sims["wbs"], real_like, features)
    cases = _cases(cfg, sims, real_like)
    preds = run.stage("predict", _predict, cfg, ckpts, cases)
    real = None
    if cfg.real_scan and Path(cfg.real_scan).is_file():
        real = run.stage("real_scan", _real_scan, cfg, ckpts)
    else:
        run.skip("real_scan", f"{cfg.real_scan} is not there (../shared/data is absent)")
    rows, extra = run.stage("evaluate", _evaluate, cfg, sims, features, ckpts, preds, real, cases, real_like)
    write_results(run.dir, rows, study="wbs-planar", paper=PAPER, claims=CLAIMS, extra=extra)


register_study(
    "wbs-planar", WbsConfig, run,
    summary="Fast planar whole-body bone scans (2x, 3x) enhanced by RRDB GANs trained on thinned and on real-like "
            "pairs; LPIPS, FID, hottest-lesion counts, a CHO's malignancy diagnosis, real vs simulated training",
    paper="Qi et al.: clinical performance of deep learning-enhanced ultrafast whole-body scintigraphy (EJNMMI Res 2024)",
)
