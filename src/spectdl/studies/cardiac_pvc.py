"""Cardiac blood-pool SPECT partial-volume correction with (densely connected) dynamic U-Nets and an
IMBV loss, against iterative-Yang PVC.

The paper: Xie H., et al. a densely connected multi-dimensional dynamic network for cardiac SPECT
PVC (2023). 28 canine Tc-99m RBC studies on a GE Discovery NM/CT 570c (multi-pinhole CZT, a field
of view about 19 cm across), split 15 / 3 / 10 subjects × 2 gates; MLEM, 80 iterations, 70×70×50
voxels of 4 mm, no post-filter; the reference is iterative-Yang PVC (iY: organ templates from
contrast CT, 10 corrections); the networks learn iY from the MLEM image (and the CT for the -CT
variants) with MAE + 0.8·SSIM (three planes) + 0.1·Sobel (three planes) (+ 0.1·IMBV for the -BV
variants), 30° rotations in three planes (1,020 training volumes); scored by IMBV = mean(myocardium) /
mean(LV blood pool), PSNR, SSIM and RMSE on the heart's slices, RM-ANOVA with Tukey, Bland–Altman and
linear fits.

Here: ``cardiac(tracer="rbc")`` phantoms (true IMBV 0.10–0.25), end-diastolic and end-systolic
(``phase``) from the same seed, heart-centred, with a contrast-CT-like channel, rendered on a larger
grid whose whole body is projected while the camera keeps the field of view's central radial bins
(``sim.fov``: the dedicated camera's truncated reconstruction). The 570c is approximated by a
parallel-hole camera over 180° (RAO 45° to LPO 225°, 190 mm radius) whose system FWHM at the heart
is ``sim.resolution.fwhm_mm``. MLEM (``sim.recon``, calibrated to activity units), iY with the
phantom's own label map as templates (:func:`spectdl.recon.pvc.iterative_yang`, the MLEM's own system
model and iterations), and eleven images per test case scored over the true masks.

**System resolution, calibrated** (``benchmarks/calibrate_pvc_resolution.py``, its table in
``benchmarks/README.md``): the paper's non-PVC IMBV is 1.25× its iY (0.209 / 0.167). With noise-free
MLEM-80 on this geometry the non-PVC / truth ratio was 1.53 with ideal line integrals (no PSF),
1.61 at 3 mm, 1.68 at 4 mm, 1.76 at 5 mm and 1.82 at 5.7 mm FWHM. So no CZT-like 4–6 mm
resolution reaches 1.25 here, and the PSF is not the main cause: a 180° parallel-hole arc
reconstructed on a truncated field already gives 1.53 (360° gives 1.30 without a PSF, 1.42 at
4 mm). The 570c's 19 pinholes view the heart from many directions at once, which this
approximation lacks. We take 4 mm, the sharpest of the CZT-like range (measured 1.68, range
1.61–1.80 over 4 phantoms): the partial-volume bias here is larger than the paper's, and the
report gives the ratio this run measured.

**Counts**: a 10-minute scan of 700 MBq Tc-99m RBCs, split into 8 ECG gates, of which the ED and
ES gates are the two volumes of a subject. 700 MBq in about 5 l of blood put 1.4 % in a 70 ml LV
blood pool (``counts.activity``: region ``lv_blood``, uptake 0.014); the rest of the rendered body
follows the tracer preset's ratios (about 21–26× the LV's activity in the grid); the camera's
sensitivity is taken as 460 cps/MBq (an assumed CZT multi-pinhole value); each view lasts
75 s / (number of views) (600 s / 8 gates, the views being simultaneous on the 570c). The notes of
each run give the mean counts per volume it simulated.

**FOV** (the paper: features outside the field of view share the weights): a cylinder of
``fov_diameter_mm`` (190 mm, the 570c's field) about the heart's z axis. Inputs and targets are zero
outside it. The loss is confined to it: each training sample carries the cylinder as ``fov_mask``,
rotated with the volume (nearest neighbour, the same draw), and every term of the composite
(``loss.mask_key: fov_mask``: MAE, three-plane SSIM, three-plane Sobel, IMBV) sees ``pred·M`` and
``target·M`` only and averages over the voxels of ``M``, so the network's output outside the field
changes neither the loss nor its gradient. The network's output is zeroed outside the field before
it is scored; PSNR/SSIM/RMSE are taken on the heart's axial slices inside the cylinder, IMBV over the
true masks (which lie inside it).

**Loss terms**: the SSIM and the Sobel terms are both three-plane: the 2-D operator in every axial,
coronal and sagittal slice, averaged over the planes (:class:`spectdl.losses.ThreePlaneSobelLoss`,
gain 8 per voxel of ramp; the 3-D Sobel of :class:`spectdl.losses.SobelLoss` would be 32).

**Statistics**: RM-ANOVA and Tukey's comparisons against iY, with the subject as the repeated unit
(the mean of its ED and ES gates), over the paper's eight methods
(:data:`PAPER_FAMILY`: ``rm_anova_p``, ``tukey_p``, the numbers set against the paper's p-values),
and again over every method but the truth (``rm_anova_p_all``, ``tukey_p_all``): Tukey's p-values
depend on how many means the family holds.

**Data consistency**: each image is forward projected and its Poisson deviance taken against the
measured projections, which hold the whole body. An image zero outside the FOV leaves that outside
activity unexplained, which dominates its deviance (``region: fov``). So each image is also scored
with the MLEM image filling everything outside the FOV (``region: fov_mlem_outside``: the method's
image inside, MLEM outside; for ``input`` that is the MLEM image itself): its deviance change against
the MLEM image is the effect of the correction inside the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectdl.data.config import SimulationConfig
from spectdl.errors import ConfigError
from spectdl.studies import stages
from spectdl.studies.config import StudyConfig, deep_merge, train_config
from spectdl.studies.registry import register_study
from spectdl.studies.results import Claim, PaperValue, write_results
from spectdl.typed_config import Section

#: Study names of the stored simulation keys.
KEYS = {"spect": "recon_full", "ct": "ct_hu", "truth": "activity", "labels": "labels", "mu": "mu_per_cm",
        "counts": "counts_full"}
#: The phantom's labels the IMBV uses (spectdl.phantoms.cardiac.LABELS).
MYOCARDIUM, LV_BLOOD = 2, 3
#: The context keyword of the FOV mask in a training sample (the loss's ``mask_key``).
FOV_KEY = "fov_mask"
NETWORKS = ("unet", "dy_u", "dy_u_ct", "dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv", "unet_bv", "unet_ct",
            "dc_dy_u_bv_truth")
#: The methods of Table I/II in the order of the paper, then ours.
METHODS = ("input", "unet", "dy_u", "dy_u_ct", "dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv", "iy", "unet_bv", "unet_ct",
           "dc_dy_u_bv_truth", "truth")

_T1 = {"input": 0.209, "unet": 0.193, "dy_u": 0.185, "dy_u_ct": 0.172, "dy_u_bv": 0.174, "dy_u_ct_bv": 0.166,
       "dc_dy_u_bv": 0.169, "iy": 0.167}
_T2 = {"unet_bv": 0.180, "unet_ct": 0.177}
_TUKEY = {"dy_u_ct_bv": 0.986, "dc_dy_u_bv": 0.946, "dy_u_bv": 0.009}
#: The methods of the paper's RM-ANOVA and Tukey comparisons (Table I's eight).
PAPER_FAMILY = tuple(_T1)
_MASKS = {"region": "true_masks"}
_IY = {"against": "iy", "region": "heart_fov"}
_NO_VALUE = float("nan")  # a row of ours the paper has no number for
_PAPER_BIAS = _T1["input"] / _T1["iy"]  # the paper's partial-volume bias, non-PVC / iY
PAPER = [
    *[PaperValue("table1", "imbv", m, v, _MASKS, note="non-PVC MLEM" if m == "input" else "") for m, v in _T1.items()],
    PaperValue("table1", "imbv", "truth", _NO_VALUE, _MASKS, note="the phantom's; the paper had no truth"),
    *[PaperValue("table1", metric, m, _NO_VALUE, _IY, note="against iY on the heart's slices; the issue gives no "
                 "paper value") for metric in ("psnr", "ssim", "rmse") for m in PAPER_FAMILY if m != "iy"],
    *[PaperValue("table2", "imbv", m, v, _MASKS) for m, v in _T2.items()],
    *[PaperValue("statistics", "tukey_p", m, v, {"versus": "iy"},
                 note=f"RM-ANOVA + Tukey against iY over the paper's {len(PAPER_FAMILY)} methods")
      for m, v in _TUKEY.items()],
]

CLAIMS = [
    Claim("iY moves IMBV towards the truth (non-PVC overestimates it)", "imbv_error_vs_truth", "iy", "input",
          higher=False, where=_MASKS),
    Claim("DC-Dy-U-BV's IMBV is closer to iY than the non-PVC image's", "imbv_error_vs_iy", "dc_dy_u_bv", "input",
          higher=False, where=_MASKS),
    Claim("Dynamic convolution helps: Dy-U's IMBV closer to iY than U-net's", "imbv_error_vs_iy", "dy_u", "unet",
          higher=False, where=_MASKS),
    Claim("The CT channel helps: Dy-U-CT's IMBV closer to iY than Dy-U's", "imbv_error_vs_iy", "dy_u_ct", "dy_u",
          higher=False, where=_MASKS),
    Claim("The IMBV loss helps: Dy-U-BV's IMBV closer to iY than Dy-U's", "imbv_error_vs_iy", "dy_u_bv", "dy_u",
          higher=False, where=_MASKS),
    Claim("The IMBV loss helps the static U-net too (U-net-BV vs U-net)", "imbv_error_vs_iy", "unet_bv", "unet",
          higher=False, where=_MASKS),
    Claim("Dense connection helps: DC-Dy-U-BV's IMBV closer to iY than Dy-U-BV's", "imbv_error_vs_iy", "dc_dy_u_bv",
          "dy_u_bv", higher=False, where=_MASKS),
    Claim("DC-Dy-U-BV has a higher SSIM against iY than U-net (heart slices)", "ssim", "dc_dy_u_bv", "unet",
          where=_IY),
    Claim("Template-free: DC-Dy-U-BV's IMBV error is below iY's with templates shifted by 1 voxel",
          "imbv_error_vs_truth", "dc_dy_u_bv", "iy_shift1", higher=False, where=_MASKS),
]


@dataclass(frozen=True)
class MethodConfig(Section):
    """One network: its input channels (``spect``, optionally ``ct``), its training target (``iy``,
    the paper's, or ``truth``) and its changes to the shared ``train`` config (deep-merged)."""

    channels: tuple[str, ...] = ("spect",)
    target: str = "iy"
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PvcConfig(Section):
    """Iterative Yang: ``iterations`` corrections (the paper's 10) with the MLEM of ``sim.recon``;
    ``shifts`` (voxels along x) and ``dilations`` (voxels the myocardium template grows) of the
    misregistered-template experiment; ``batch_size`` volumes per call."""

    iterations: int = 10
    eps: float = 1e-3
    shifts: tuple[int, ...] = (1, 2)
    dilations: tuple[int, ...] = (1, 2)
    batch_size: int = 4

    def _check(self) -> None:
        if min(self.iterations, self.batch_size) < 1:
            raise ConfigError("iterations, batch_size: expected >= 1")
        if any(v < 1 for v in (*self.shifts, *self.dilations)):
            raise ConfigError("shifts, dilations: expected whole voxels >= 1")


@dataclass(frozen=True)
class CardiacPvcConfig(StudyConfig):
    sim: SimulationConfig = field(default_factory=SimulationConfig)
    fov_diameter_mm: float = 190.0
    pvc: PvcConfig = field(default_factory=PvcConfig)
    train: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, MethodConfig] = field(default_factory=dict)
    rotation_step_deg: float = 30.0
    batch_size_inference: int = 2
    examples: int = 2

    def _check(self) -> None:
        super()._check()
        if self.data is not None:
            raise ConfigError("data: cardiac-pvc needs phantoms with known IMBV; --data is not supported")
        s = self.sim
        need = {"activity", "mu_per_cm", "ct_hu", "labels", "counts"}
        if s.phantom != "cardiac" or s.phantom_kwargs.get("tracer") != "rbc" or not need <= set(s.store):
            raise ConfigError(f"sim: expected phantom cardiac, tracer rbc, storing {sorted(need)}")
        if s.recon is None or s.recon.subsets != 1 or not s.recon.calibrate:
            raise ConfigError("sim.recon: expected MLEM (subsets: 1) calibrated to activity units (calibrate: true)")
        if not (math.isfinite(self.fov_diameter_mm) and self.fov_diameter_mm > 0):
            raise ConfigError(f"fov_diameter_mm: expected > 0, found {self.fov_diameter_mm!r}")
        missing = [m for m in NETWORKS if m not in self.methods]
        if missing:
            raise ConfigError(f"methods: {missing} missing; expected the networks {list(NETWORKS)}")
        for name, m in self.methods.items():
            if list(m.channels) not in (["spect"], ["spect", "ct"]):
                raise ConfigError(f"methods.{name}.channels: {list(m.channels)}; expected [spect] or [spect, ct]")
            if m.target not in ("iy", "truth"):
                raise ConfigError(f"methods.{name}.target: {m.target!r}; expected 'iy' or 'truth'")
            key = self.train_config(name).loss.get("mask_key")
            if key != FOV_KEY:
                raise ConfigError(f"methods.{name}.train.loss.mask_key: {key!r}; expected {FOV_KEY!r} (the loss is "
                                  "confined to the field of view, whose mask each training sample carries)")

    def simulations(self) -> dict[str, SimulationConfig]:
        """End-diastole and end-systole: the same seeds, so the same hearts, in two phases."""
        return {phase: self.sim.replace(phantom_kwargs={**self.sim.phantom_kwargs, "phase": phase})
                for phase in ("ed", "es")}

    def normalization(self, channels) -> dict[str, Any]:
        """SPECT ÷ its own mean, CT as (HU + 1000)/1000; the output × the SPECT's mean."""
        n = len(channels)
        return {"inputs": ["mean", 1000.0][:n], "offsets": [0.0, 1000.0][:n], "output": 0, "output_min": 0.0}

    def train_config(self, name: str):
        m = self.methods[name]
        shape = list(self.sim.data_grid().shape)
        raw = deep_merge(deep_merge(self.train, m.train), {
            "seed": self.seed, "model": {"kwargs": {"in_channels": len(m.channels)}},
            "checkpoint": {"metadata": {"normalization": self.normalization(m.channels), "channels": list(m.channels),
                                        "target": m.target, "inference": {"roi_size": shape}}}})
        return train_config(raw, f"methods.{name}.train")


def _fov_mask(grid, diameter_mm: float) -> torch.Tensor:
    """``[1, *grid]`` bool: the cylinder of ``diameter_mm`` about the grid's (heart-centred) z axis."""
    x, y = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2 for n in grid.shape[:2])
    r = torch.hypot(x[:, None] * grid.voxel_size_mm[0], y[None, :] * grid.voxel_size_mm[1])
    return (r <= diameter_mm / 2)[None, :, :, None].expand(1, *grid.shape)


def _cases(cfg: CardiacPvcConfig, sims: dict[str, str], split: str) -> stages.CaseSet:
    """Both phases of a split as one CaseSet (ids ``ed00003``, ``es00003``), with the FOV mask."""
    parts = [stages.simulated_cases(sims[ph], split, KEYS, prefix=ph) for ph in ("ed", "es")]
    cases = stages.CaseSet([c for p in parts for c in p.ids], {k: v for p in parts for k, v in p.volumes.items()},
                           {k: v for p in parts for k, v in p.info.items()}, parts[0].grid)
    fov = _fov_mask(cases.grid, cfg.fov_diameter_mm)
    for c in cases.ids:
        v = cases.volumes[c]
        v["fov"] = fov
        v["input"] = v["spect"] * fov
        v["truth_fov"] = v["truth"] * fov
    return cases


def _pvc(folder: Path, cfg: CardiacPvcConfig, sims: dict[str, str], by_split: dict[str, stages.CaseSet]) -> dict:
    """iY of every case of every split (the training targets and the test reference), and of the test
    cases with misregistered templates; one ``folder/<name>.npz`` each."""
    p, rc = cfg.pvc, cfg.sim.recon
    variants = {"iy": {}, **{f"iy_shift{s}": {"shift_vox": (s, 0, 0)} for s in p.shifts},
                **{f"iy_dilate{d}": {"dilate": {MYOCARDIUM: d}} for d in p.dilations}}
    out = {}
    for split, cases in by_split.items():
        names = variants if split == "test" else {"iy": {}}
        per_phase = [stages.pvc_images(sims[ph], cases, [c for c in cases.ids if c.startswith(ph)], names,
                                       batch_size=p.batch_size, recon_iterations=rc.iterations,
                                       pvc_iterations=p.iterations, eps=p.eps, mask="fov") for ph in ("ed", "es")]
        images = {n: {**per_phase[0][n], **per_phase[1][n]} for n in names}
        for name, by_case in images.items():
            out[f"{split}/{name}"] = str(stages.save_volumes(folder / f"{split}_{name}.npz", by_case))
    return out


def _sample_transform(normalization: dict[str, Any], rotation_step_deg: float | None):
    """The training (``rotation_step_deg`` given) or validation transform of a sample ``{input, ct,
    target, organ_labels, fov_mask}``: the rotation acts on every tensor of the sample alike, so the
    FOV mask (bool, nearest neighbour) turns with the volume it masks; the IMBV loss's organ masks are
    drawn from the rotated labels."""
    from spectdl.data import transforms as T

    steps = [T.OrganMasks({"myocardium": [MYOCARDIUM], "blood_pool": [LV_BLOOD]}),
             T.NormalizeChannels(normalization, target_statistic=None)]
    if rotation_step_deg is not None:  # the paper's set: the volume, or one 30° multiple in one of three planes
        steps.insert(0, T.RandomRotate(("xy", "xz", "yz"), step_deg=rotation_step_deg, one_plane=True))
    return T.Compose(steps)


def _datasets(cfg: CardiacPvcConfig, by_split: dict[str, stages.CaseSet], pvc: dict[str, str]):
    from spectdl.data import VolumeDataset

    def make(method: str):
        m = cfg.methods[method]
        norm = cfg.train_config(method).checkpoint.metadata["normalization"]
        out = []
        for split in ("train", "val"):
            cases = by_split[split]
            target = stages.load_volumes(pvc[f"{split}/iy"]) if m.target == "iy" else cases.by_case("truth_fov")
            vols = {c: {"input": cases.get(c, "input"), "ct": cases.get(c, "ct"), "target": target[c],
                        "organ_labels": cases.get(c, "labels").long(), FOV_KEY: cases.get(c, "fov")}
                    for c in cases.ids}
            transform = _sample_transform(norm, cfg.rotation_step_deg if split == "train" else None)
            out.append(VolumeDataset(vols, input=["input", "ct"][:len(m.channels)], target=["target"],
                                     extras=["organ_labels", FOV_KEY], transform=transform, seed=cfg.seed))
        return tuple(out)

    return make


def _predict(folder: Path, cfg: CardiacPvcConfig, ckpts: dict[str, Any], cases: stages.CaseSet) -> dict[str, str]:
    channels = {m: ["input", "ct"][:len(cfg.methods[m].channels)] for m in ckpts}
    preds = stages.predict_methods(folder, {m: c["checkpoint"] for m, c in ckpts.items()}, cases, channels,
                                   device=cfg.device, batch_size=cfg.batch_size_inference)
    out = {}
    for m, path in preds.items():  # the network's output outside the field of view is not scored or kept
        vols = {c: v.clamp_min(0) * cases.get(c, "fov") for c, v in stages.load_volumes(path).items()}
        out[m] = str(stages.save_volumes(folder / f"{m}.npz", vols))
    return out


def _imbv_rows(images: dict[str, dict[str, torch.Tensor]], cases: stages.CaseSet) -> list[dict[str, Any]]:
    """IMBV over the true masks of every image, and its absolute error against iY's and the truth's."""
    from spectdl.metrics.functional import imbv

    val = {}
    for m, by_case in images.items():
        for c, v in by_case.items():
            lab = cases.get(c, "labels")
            val[m, c] = float(imbv(v.reshape(1, *lab.shape).double(), (lab == MYOCARDIUM)[None],
                                   (lab == LV_BLOOD)[None])[0])
    rows = []
    for (m, c), v in val.items():
        rows.append({"case": c, "method": m, "metric": "imbv", "value": v, **_MASKS})
        for ref in ("iy", "truth"):
            if (ref, c) in val:
                rows.append({"case": c, "method": m, "metric": f"imbv_error_vs_{ref}", "value": abs(v - val[ref, c]),
                             **_MASKS})
    return rows


def _heart_slices(cases: stages.CaseSet) -> dict[str, torch.Tensor]:
    """The FOV's voxels on the axial slices that hold myocardium or LV blood (Table I's slices)."""
    out = {}
    for c in cases.ids:
        lab = cases.get(c, "labels")
        heart = ((lab == MYOCARDIUM) | (lab == LV_BLOOD)).flatten(0, 2).any(0)
        out[c] = cases.get(c, "fov") & heart.reshape(1, 1, 1, -1)
    return out


def _subject(case: str) -> str:
    """The subject of a case id: ``ed00003`` and ``es00003`` are the two gates of ``00003``."""
    return case[2:] if case[:2] in ("ed", "es") else case


def _anova_rows(wide, tested: list[str], suffix: str) -> list[dict[str, Any]]:
    """RM-ANOVA of the columns ``tested`` of ``wide`` (cases × methods) and Tukey's p of each against
    iY, as ``rm_anova_p{suffix}``, ``rm_anova_f{suffix}`` and ``tukey_p{suffix}`` rows."""
    from spectdl.errors import SpectdlError
    from spectdl.stats import rm_anova, tukey_hsd

    if len(tested) < 2:
        return []
    if len(wide) < 2:  # e.g. one test subject at smoke scale: rows kept, with the reason
        note = f"{len(wide)} subject; RM-ANOVA needs at least 2"
        return ([{"case": "all", "method": "all", "metric": f"rm_anova_p{suffix}", "value": float("nan"), "note": note}]
                + [{"case": "all", "method": m, "metric": f"tukey_p{suffix}", "versus": "iy", "value": float("nan"),
                    "note": note} for m in tested if m != "iy"])
    out: list[dict[str, Any]] = []
    try:
        a = rm_anova(wide[tested])
        out.append({"case": "all", "method": "all", "metric": f"rm_anova_p{suffix}", "value": float(a.p_value)})
        out.append({"case": "all", "method": "all", "metric": f"rm_anova_f{suffix}", "value": float(a.statistic)})
        for c in tukey_hsd(wide[tested]).comparisons:
            pair = {c.a, c.b}
            if "iy" in pair and len(pair) == 2:
                out.append({"case": "all", "method": (pair - {"iy"}).pop(), "metric": f"tukey_p{suffix}",
                            "versus": "iy", "value": float(c.p_value)})
    except SpectdlError as exc:  # e.g. a degenerate smoke-scale design
        out.append({"case": "all", "method": "all", "metric": f"rm_anova_p{suffix}", "value": float("nan"),
                    "note": str(exc)[:120]})
    return out


def _statistics(rows: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """RM-ANOVA of IMBV with Tukey against iY, over the paper's methods (:data:`PAPER_FAMILY`:
    ``rm_anova_p``, ``rm_anova_f``, ``tukey_p``, the numbers set against the paper's) and over every
    method but the truth (the same names with ``_all``); Bland–Altman and linear fits of every
    method's IMBV against iY's and the truth's (set-level rows, case ``all``)."""
    import pandas as pd

    from spectdl.errors import SpectdlError
    from spectdl.stats import bland_altman, linear_fit

    df = pd.DataFrame([r for r in rows if r["metric"] == "imbv"])
    wide = df.pivot_table(index="case", columns="method", values="value")
    tested = [m for m in methods if m in wide.columns and m != "truth"]
    # The ED and ES gates of a subject are one heart, not two independent subjects: the ANOVA's
    # subjects are the subjects, each the mean of its gates (20 volumes at paper scale give n = 10).
    per_subject = wide.groupby([_subject(c) for c in wide.index]).mean()
    out = _anova_rows(per_subject, [m for m in tested if m in PAPER_FAMILY], "")
    out += _anova_rows(per_subject, tested, "_all")
    for ref in ("iy", "truth"):
        for m in methods:
            if m == ref or m not in wide.columns or ref not in wide.columns or len(wide) < 3:
                continue
            try:
                ba = bland_altman(wide[m].to_numpy(), wide[ref].to_numpy())
                fit = linear_fit(x=wide[ref].to_numpy(), y=wide[m].to_numpy())
            except SpectdlError:
                continue
            for metric, v in (("ba_bias", ba.bias), ("ba_loa_low", ba.loa_low), ("ba_loa_high", ba.loa_high),
                              ("fit_slope", fit.slope), ("fit_intercept", fit.intercept), ("fit_r2", fit.r_squared)):
                out.append({"case": "all", "method": m, "metric": metric, "versus": ref, "value": float(v)})
    return out


def _evaluate(folder: Path, cfg: CardiacPvcConfig, sims, ckpts, pvc, preds, cases: stages.CaseSet):
    iy = {k.split("/", 1)[1]: stages.load_volumes(v) for k, v in pvc.items() if k.startswith("test/")}
    images = {"input": cases.by_case("input"), **iy, "truth": cases.by_case("truth_fov"),
              **stages.load_predictions(preds)}
    methods = [m for m in METHODS if m in images]
    rows = _imbv_rows(images, cases)
    heart = {"heart_fov": _heart_slices(cases)}
    for ref in ("iy", "truth"):
        rows += stages.score_methods({m: images[m] for m in methods if m != ref}, images[ref],
                                     metrics=("psnr", "ssim", "rmse"), convention="reference_max", masks=heart,
                                     against=ref)
    rows += _statistics(rows, methods)
    cons, per_view = _consistency({m: images[m] for m in methods}, sims, cases)
    rows += cons
    shown = {m: images[m] for m in ("input", "iy", "dc_dy_u_bv", "dc_dy_u_bv_truth", "truth") if m in images}
    mid = {c: cases.get(c, "labels") == MYOCARDIUM for c in cases.ids}
    extra = {
        "regions": REGIONS, "baseline_method": "input", "training": ckpts, "consistency_per_view": per_view,
        "box_metrics": ["imbv", "imbv_error_vs_iy", "imbv_error_vs_truth", "ssim"],
        "examples_cardiac": str(stages.save_examples(folder / "examples_cardiac.npz", shown, cases,
                                                     n_cases=cfg.examples, regions={"myocardium": mid})),
        "bland_altman": [{"name": f"imbv_{m}_{ref}", "metric": "imbv", "a": m, "b": ref,
                          "title": f"Bland–Altman of IMBV: {m} against {ref}"}
                         for ref in ("iy", "truth") for m in ("input", "dc_dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv_truth")
                         if m in images],
        "linear_fits": [{"name": f"imbv_{ref}", "metric": "imbv", "x": ref, "y": [m for m in ys if m in images],
                         "where": _MASKS, "title": f"IMBV of each method against {ref}'s, per test volume, with "
                                                   "least-squares lines (the paper's Figures 8–9)"}
                        for ref, ys in _FIT_METHODS.items() if ref in images],
        "paired_tests": [{"metric": "imbv_error_vs_truth", "method": "dc_dy_u_bv",
                          "others": [m for m in images if m.startswith("iy")], "where": _MASKS, "higher": False}],
    }
    extra["notes"] = _notes(cfg, cases, rows)
    return rows, extra


#: The methods of the agreement figures against each reference.
_FIT_METHODS = {"iy": ("input", "unet", "dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv", "dc_dy_u_bv_truth"),
                "truth": ("input", "iy", "dy_u_ct_bv", "dc_dy_u_bv", "dc_dy_u_bv_truth")}


def _mlem_outside(images: dict[str, dict[str, torch.Tensor]], cases: stages.CaseSet) -> dict[str, dict[str, torch.Tensor]]:
    """``x·F + MLEM·(1 − F)`` of every image ``x`` (``[1, *grid]``), ``F`` the case's FOV cylinder:
    the method's image inside the field, the MLEM image (``spect``) outside it."""
    outside = {c: cases.get(c, "spect") * ~cases.get(c, "fov") for c in cases.ids}
    return {m: {c: v * cases.get(c, "fov") + outside[c] for c, v in by_case.items()} for m, by_case in images.items()}


def _consistency(images: dict[str, dict[str, torch.Tensor]], sims: dict[str, str], cases: stages.CaseSet):
    """Deviance rows of every image against the measured projections (``data: measured``), twice:
    the image as scored, zero outside the FOV (``region: fov``), and the image inside the FOV with
    the MLEM image outside (``region: fov_mlem_outside``); each with its per-cent change against the
    ``input`` of the same region: ``100·(D_m / D_input − 1)``. Returns ``(rows, per_view)``, the
    per-view means keyed ``measured`` and ``measured_mlem_outside``."""
    measured = {"measured": cases.by_case("counts")}
    projector = {ph: stages.case_projector(sims[ph], cases) for ph in ("ed", "es")}
    filled = _mlem_outside(images, cases)
    rows, per_view = [], {}
    for region, imgs, name in (("fov", images, "measured"), ("fov_mlem_outside", filled, "measured_mlem_outside")):
        cons, pv = stages.consistency_rows(imgs, measured, lambda c: projector[c[:2]](c), region=region)
        rows += cons
        if pv.get("measured"):
            per_view[name] = pv["measured"]
        dev = {(r["case"], r["method"]): r["value"] for r in cons}
        rows += [{"case": c, "method": m, "metric": "deviance_change_percent", "data": "measured", "region": region,
                  "value": 100.0 * (v / dev[c, "input"] - 1.0)} for (c, m), v in dev.items() if (c, "input") in dev]
    return rows, per_view


def _mean(rows, metric: str, method: str, **where) -> float:
    v = [r["value"] for r in rows if r["metric"] == metric and r["method"] == method
         and all(r.get(k) == w for k, w in where.items())]
    v = [x for x in v if math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _notes(cfg: CardiacPvcConfig, cases: stages.CaseSet, rows) -> list[str]:
    s = cfg.sim
    imbv = {m: _mean(rows, "imbv", m) for m in METHODS}
    counts = [float(cases.get(c, "counts").double().sum()) for c in cases.ids]
    act = s.counts.activity
    g = cases.grid
    shift = {m: _mean(rows, "imbv_error_vs_truth", m) for m in ("iy", *[f"iy_shift{k}" for k in cfg.pvc.shifts],
                                                                 *[f"iy_dilate{k}" for k in cfg.pvc.dilations],
                                                                 "dc_dy_u_bv")}
    anova = {fam: _mean(rows, f"rm_anova_p{fam}", "all") for fam in ("", "_all")}
    tukey = {fam: {m: _mean(rows, f"tukey_p{fam}", m, versus="iy") for m in NETWORKS + ("input",)}
             for fam in ("", "_all")}
    n_all = len([m for m in METHODS if m != "truth" and math.isfinite(imbv[m])])
    bias = imbv["input"] / imbv["truth"]
    dchange = {region: {m: _mean(rows, "deviance_change_percent", m, region=region) for m in METHODS if m != "input"}
               for region in ("fov", "fov_mlem_outside")}

    def ps(values: dict[str, float]) -> str:
        return ", ".join(f"{m} p = {v:.3g}" if v >= 1e-16 else f"{m} p < 1e-16" for m, v in values.items()
                         if math.isfinite(v))

    def changes(values: dict[str, float]) -> str:
        return ", ".join(f"{m} {v:+.1f} %" for m, v in values.items() if math.isfinite(v))

    return [
        f"IMBV (mean over {len(cases.ids)} test volumes, true masks): " +
        ", ".join(f"{m} {v:.3f}" for m, v in imbv.items() if math.isfinite(v)) +
        f". Non-PVC / truth = {imbv['input'] / imbv['truth']:.2f} and iY / truth = {imbv['iy'] / imbv['truth']:.2f} "
        f"(the paper: non-PVC / iY = 1.25; here non-PVC / iY = {imbv['input'] / imbv['iy']:.2f}).",
        f"System: parallel-hole over {s.orbit.arc_deg:g}° from {s.orbit.start_deg:g}°, {s.orbit.n_angles} views, "
        f"radius {s.orbit.radius_mm} mm, system FWHM {s.resolution.fwhm_mm:g} mm at {s.resolution.distance_mm:g} mm "
        f"(the 570c's multi-pinhole CZT approximated): this run's non-PVC / truth IMBV is {bias:.2f}, "
        f"{'above' if bias > _PAPER_BIAS else 'at or below'} the paper's non-PVC / iY of {_PAPER_BIAS:.2f}. The "
        "resolution was chosen with benchmarks/calibrate_pvc_resolution.py; its table of the ratio per resolution "
        "and arc is in benchmarks/README.md.",
        f"Grid: {tuple(g.shape)} voxels of {g.voxel_size_mm[0]:g} mm reconstructed (field of view) inside a rendered "
        f"{tuple(s.grid.shape)}; MLEM {s.recon.iterations} iterations, calibrated; iY {cfg.pvc.iterations} corrections "
        f"with the phantom's label map as templates; metrics and loss inside a {cfg.fov_diameter_mm:g} mm cylinder "
        f"(the loss masked by '{FOV_KEY}', rotated with each training volume).",
        (f"Counts: {act.injected_mbq:g} MBq, {100 * act.uptake_fraction:g} % in the {act.region}, "
         f"{act.sensitivity_cps_per_mbq:g} cps/MBq, {act.time_range[0]:g} s per view × {s.orbit.n_angles} views "
         f"(one of 8 gates of a 10-minute scan): {np.mean(counts) / 1e6:.2f} M counts per volume on average "
         f"({min(counts) / 1e6:.2f}–{max(counts) / 1e6:.2f} M) in the field's projections.") if act else "",
        f"RM-ANOVA of IMBV over the paper's {len([m for m in PAPER_FAMILY if math.isfinite(imbv[m])])} methods "
        f"({', '.join(PAPER_FAMILY)}), with each subject the mean of its ED and ES gates: p = {anova['']:.3g}. "
        "Tukey against iY in that family: " + ps(tukey[""]) +
        " (paper: dy_u_ct_bv 0.986, dc_dy_u_bv 0.946, dy_u_bv 0.009). Over all "
        f"{n_all} methods but the truth: RM-ANOVA p = {anova['_all']:.3g}; Tukey against iY: " + ps(tukey["_all"]) + ".",
        "Misregistered templates, mean |IMBV − truth|: " + ", ".join(f"{m} {v:.4f}" for m, v in shift.items()
                                                                    if math.isfinite(v)) +
        " (the network needs no templates at test time).",
        "Data consistency (each image forward projected, Poisson deviance per count against the measured counts, "
        "which hold the whole body): change against the non-PVC image, mean per cent, with the MLEM image outside "
        "the FOV (region fov_mlem_outside; the effect of the correction inside the field): " +
        changes(dchange["fov_mlem_outside"]) + "; with every image zero outside the FOV (region fov; the unexplained "
        "outside activity dominates): " + changes(dchange["fov"]) + ".",
    ]


REGIONS = {
    "true_masks": "IMBV over the phantom's true myocardium and LV blood-pool masks",
    "heart_fov": "PSNR/SSIM/RMSE: the axial slices holding myocardium or LV blood, inside the FOV cylinder",
    "fov": "data consistency: the image as scored, zero outside the FOV cylinder",
    "fov_mlem_outside": "data consistency: the image inside the FOV cylinder, the MLEM image outside it",
}


def run(run, cfg: CardiacPvcConfig) -> None:
    sims = run.stage("simulate", stages.simulate_sets, cfg.simulations(), workers=cfg.workers)
    by_split = {split: _cases(cfg, sims, split) for split in ("train", "val", "test")}
    pvc = run.stage("reconstruct", _pvc, cfg, sims, by_split)  # iY: MLEM-based PVC
    methods = {name: cfg.train_config(name) for name in cfg.methods}
    ckpts = run.stage("train", stages.train_methods, methods, _datasets(cfg, by_split, pvc))
    preds = run.stage("predict", _predict, cfg, ckpts, by_split["test"])
    rows, extra = run.stage("evaluate", _evaluate, cfg, sims, ckpts, pvc, preds, by_split["test"])
    write_results(run.dir, rows, study="cardiac-pvc", paper=PAPER, claims=CLAIMS, extra=extra)


register_study(
    "cardiac-pvc", CardiacPvcConfig, run,
    summary="Cardiac blood-pool SPECT PVC: static, dynamic and DC-dynamic U-Nets (CT channel, IMBV loss) against "
            "iterative-Yang PVC; IMBV, PSNR/SSIM/RMSE, RM-ANOVA + Tukey, Bland–Altman, misregistered templates, "
            "data consistency",
    paper="Xie et al.: densely connected multi-dimensional dynamic network for cardiac SPECT PVC (canine Tc-99m RBC, "
          "GE Discovery NM/CT 570c)",
)
