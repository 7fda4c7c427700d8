"""Fast bone SPECT at 1/7 of the scan time with a lesion-attention U²-Net (SPECT + CT in).

The paper: Tc-99m MDP SPECT/CT on a Siemens Intevo; a standard scan (20 s/view) and a fast scan
(3 s/view) of each patient; a U²-Net with SPECT and CT inputs, six side outputs, deep supervision
and an L1 + 0.5·SSIM loss with lesion attention (β = 100), against EDSR, RCAN and ESRGAN; scored
by PSNR/SSIM (Table 1), NEMA IEC sphere SUVs (Table 2), phantom PSNR/SSIM (Table 3), the number
of distinguishable spheres and readers' scores (here: a channelized Hotelling observer).

Here: ``bone_torso`` phantoms stand in for the patients (train/val/test) and NEMA IEC phantoms
(12:1) for the phantom scans (test only). Both are projected with attenuation and the LEHR response
over 60 views; the standard scan is Poisson at the calibrated count level, the fast scan an
independent Poisson acquisition at 3/20 of its expected counts (``counts.independent``). OSEM 2×28
with the phantom's μ map, calibrated to activity units (background 1, so SUV = activity / background).
Inputs and targets are divided by their own means; CT enters as (HU + 1000)/1000.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Optional

from spectdl.data.config import ReconConfig, SimulationConfig
from spectdl.errors import ConfigError
from spectdl.studies import stages
from spectdl.studies.config import StudyConfig, deep_merge, train_config
from spectdl.studies.registry import register_study
from spectdl.studies.results import Claim, PaperValue, write_results
from spectdl.typed_config import Section

#: Study channel name -> stored simulation key (simulated data) and manifest column (real data).
KEYS = {"spect": "recon_fast", "ct": "ct_hu", "target": "recon_full", "truth": "activity", "labels": "labels",
        "mu": "mu_per_cm", "counts_standard": "counts_full", "counts_fast": "counts_fast"}
COLUMNS = {"spect": "input", "ct": "ct", "target": "target", "lesion_mask": "lesion_mask"}

# The paper's numbers (Table 1: patients; Table 2: NEMA spheres; Table 3: phantom image quality).
PAPER = [
    *[PaperValue("table1", "psnr", m, v, {"dataset": "torso", "region": "volume"})
      for m, v in (("input", 37.7), ("edsr", 38.6), ("rcan", 40.5), ("esrgan", 40.1), ("u2net", 40.8))],
    *[PaperValue("table1", "ssim", m, v, {"dataset": "torso", "region": "volume"})
      for m, v in (("input", 0.765), ("edsr", 0.778), ("rcan", 0.781), ("esrgan", 0.772), ("u2net", 0.788))],
    *[PaperValue("table2", q, m, v, {"dataset": "nema", "region": "sphere37"}, note="sphere 1 (37 mm)")
      for q, vals in (("suv_max", (12.31, 13.59, 13.76)), ("suv_mean", (9.53, 10.22, 10.38)))
      for m, v in zip(("input", "u2net", "reference"), vals)],
    *[PaperValue("table3", q, m, v, {"dataset": "nema", "region": "sphere_slices"})
      for q, vals in (("psnr", (32.12, 33.54)), ("ssim", (0.87, 0.94))) for m, v in zip(("input", "u2net"), vals)],
    *[PaperValue("spheres", "visible_spheres", m, v, {"dataset": "nema"}, note="distinguishable spheres")
      for m, v in (("input", 4), ("u2net", 5), ("reference", 6))],
]

_T = {"dataset": "torso", "region": "volume"}
_N = {"dataset": "nema", "region": "sphere_slices"}
CLAIMS = [
    Claim("U²-Net PSNR > 1/7 PSNR (patients)", "psnr", "u2net", "input", where=_T),
    Claim("U²-Net SSIM > 1/7 SSIM (patients)", "ssim", "u2net", "input", where=_T),
    *[Claim(f"U²-Net PSNR > {b.upper()} PSNR", "psnr", "u2net", b, where=_T) for b in ("edsr", "rcan", "esrgan")],
    Claim("U²-Net PSNR > 1/7 PSNR (NEMA phantom)", "psnr", "u2net", "input", where=_N),
    Claim("U²-Net SSIM > 1/7 SSIM (NEMA phantom)", "ssim", "u2net", "input", where=_N),
    Claim("U²-Net SUVmax of sphere 1 is closer to the standard scan than 1/7", "suv_max_abs_error", "u2net", "input",
          higher=False, where={"region": "sphere37"}),
    Claim("More spheres are distinguishable on U²-Net than on 1/7", "visible_spheres", "u2net", "input"),
    Claim("The CT channel helps (U²-Net PSNR > U²-Net without CT)", "psnr", "u2net", "u2net_no_ct", where=_T),
    Claim("Lesion attention helps in lesions (PSNR)", "psnr", "u2net", "u2net_no_lesion",
          where={"dataset": "torso", "region": "lesions"}),
    Claim("CHO lesion detectability (AUC): U²-Net > 1/7", "auc", "u2net", "input"),
]


@dataclass(frozen=True)
class MethodConfig(Section):
    """One network of the comparison: its input channels and its changes to the shared ``train``
    config: deep-merged, except that a ``loss`` with its own ``study`` or ``terms``, or a ``model``
    of another name, given here replaces
    the shared one whole (a baseline's L1 is not the U²-Net's lesion-attention loss with extra terms)."""

    channels: tuple[str, ...] = ("spect", "ct")
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """Metrics and their conventions (PSNR peak = the standard image's maximum, SSIM as
    scikit-image with that data range: the paper's), the NEMA region, CNR and CHO settings.

    The CHO has few lesions to learn from at the small scales, so it uses a few channels
    (``cho_n_channels``) of a width matched to the lesions (``cho_width_mm``, the Laguerre–Gauss
    ``a``, or the DoG ``sigma0`` in cycles per mm for ``cho_channels: dog``)."""

    metrics: tuple[str, ...] = ("psnr", "ssim", "rmse", "mae")
    convention: str = "reference_max"
    nema_slices: int = 12
    cnr_threshold: float = 5.0
    cho_patch: int = 16
    cho_channels: str = "lg"
    cho_n_channels: int = 3
    cho_width_mm: float = 20.0
    bootstrap: int = 500


@dataclass(frozen=True)
class BoneSpectConfig(StudyConfig):
    torso: SimulationConfig = field(default_factory=SimulationConfig)
    nema: SimulationConfig = field(default_factory=SimulationConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    train: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, MethodConfig] = field(default_factory=dict)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    patch_size: int = 128
    slices_per_volume: int = 16
    batch_size_inference: int = 16

    def _check(self) -> None:
        super()._check()
        train_config(self.train)
        if "u2net" not in self.methods:
            raise ConfigError(f"methods: expected the method 'u2net' among {sorted(self.methods)}")
        for name, m in self.methods.items():
            bad = [c for c in m.channels if c not in ("spect", "ct")]
            if bad or not m.channels or m.channels[0] != "spect":
                raise ConfigError(f"methods.{name}.channels: {list(m.channels)}; expected ['spect'] or ['spect', 'ct']")
            self.train_config(name)

    def torso_without_lesions(self) -> SimulationConfig:
        """The torso simulation with no lesions: the same seeds, so the same anatomy, for the
        signal-absent half of the CHO task."""
        return self.torso.replace(phantom_kwargs={**self.torso.phantom_kwargs, "lesions": 0})

    def train_config(self, name: str):
        """The :class:`~spectdl.training.TrainConfig` of method ``name``: ``train`` ← its changes, with
        its channel count, seed and the normalisation inference must repeat."""
        from spectdl.training import TrainConfig

        m = self.methods[name]
        norm = {"inputs": ["mean", 1000.0][: len(m.channels)], "offsets": [0.0, 1000.0][: len(m.channels)],
                "output": 0, "output_min": 0.0}
        raw = deep_merge(self.train, m.train)
        for section in ("loss", "model"):
            given = m.train.get(section) or {}
            if (section == "loss" and {"study", "terms"} & set(given)) or \
                    (section == "model" and given.get("name") not in (None, self.train["model"]["name"])):
                raw[section] = dict(m.train[section])
        raw = deep_merge(raw, {"seed": self.seed, "model": {"kwargs": {"in_channels": len(m.channels)}},
                               "checkpoint": {"metadata": {"normalization": norm, "channels": list(m.channels)}}})
        try:
            return TrainConfig.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"methods.{name}.train: {exc}") from None


def check_data(cfg: BoneSpectConfig) -> None:
    """A manifest of real cases must give every split the columns the methods read."""
    need = sorted({COLUMNS[c] for m in cfg.methods.values() for c in m.channels} | {"target"})
    stages.require_columns(cfg.data, need, ("train", "val", "test"))


def _datasets(cfg: BoneSpectConfig, recon: Optional[dict[str, str]]):
    from spectdl.data import ManifestDataset, SimulatedDataset, transforms as T

    @functools.cache
    def lesion_labels() -> tuple[int, ...]:
        # The label table of the simulated phantom, read once per run and only when a method trains.
        from spectdl.data.simulation import sample_phantom

        return tuple(v for k, v in sample_phantom(recon["torso"], 0).label_names.items() if k.startswith("lesion"))

    def make(method: str):
        m = cfg.methods[method]
        tc = cfg.train_config(method)
        norm = tc.checkpoint.metadata["normalization"]
        size = cfg.patch_size
        if cfg.data is not None:
            cols = tuple(COLUMNS[c] for c in m.channels)
            extra = {"train": [T.RandomCrop((size, size)), T.RandomFlip(axes=(0,))], "val": [T.CentreCrop((size, size))]}
            return tuple(ManifestDataset(cfg.data, split, mode="slices", input_columns=cols, seed=cfg.seed,
                                         columns=("lesion_mask",), normalization=norm,
                                         transform=T.Compose(extra[split])) for split in ("train", "val"))
        aug = [T.MaskFromLabels(lesion_labels()), T.NormalizeChannels(norm), T.RandomAxialSlice()]
        out = []
        for split, extra in (("train", [T.RandomCrop((size, size)), T.RandomFlip(axes=(0,))]),
                             ("val", [T.CentreCrop((size, size))])):
            out.append(SimulatedDataset(recon["torso"], split, keys=("input", "target", "labels"),
                                        input=[KEYS[c] for c in m.channels], target=[KEYS["target"]],
                                        transform=T.Compose(aug + extra), seed=cfg.seed,
                                        repeats=cfg.slices_per_volume if split == "train" else 1))
        return tuple(out)

    return make


def run(run, cfg: BoneSpectConfig) -> None:
    if cfg.data is None:
        sims = run.stage("simulate", stages.simulate_sets, {"torso": cfg.torso, "nema": cfg.nema,
                                                            "torso_no_lesion": cfg.torso_without_lesions()},
                         workers=cfg.workers)
        recon = run.stage("reconstruct", stages.reconstruct_sets, sims, cfg.recon, workers=cfg.workers)
    else:
        run.skip("simulate", "cases from --data")
        run.skip("reconstruct", "cases from --data")
        recon = None
    methods = {name: cfg.train_config(name) for name in cfg.methods}
    ckpts = run.stage("train", stages.train_methods, methods, _datasets(cfg, recon))
    tests = _test_sets(cfg, recon)
    preds = run.stage("predict", _predict, cfg, {m: c["checkpoint"] for m, c in ckpts.items()}, tests)
    rows, extra = run.stage("evaluate", _evaluate, cfg, preds, tests, recon)
    pairs = [{"metric": m, "method": "u2net", "others": ["input", *cfg.methods], "where": w}
             for m in ("psnr", "ssim") for w in (_T, _N)]
    write_results(run.dir, rows, study="bone-spect", paper=PAPER, claims=CLAIMS,
                  extra={**extra, "training": ckpts, "paired_tests": pairs})


def _test_sets(cfg, recon):
    if cfg.data is not None:
        return {"torso": stages.manifest_cases(cfg.data, "test", COLUMNS)}
    prefixes = {"torso": "t", "nema": "n", "torso_no_lesion": "a"}
    return {name: stages.simulated_cases(recon[name], "test", KEYS, prefix=p) for name, p in prefixes.items()}


def _predict(folder, cfg, checkpoints, tests):
    channels = {m: cfg.methods[m].channels for m in checkpoints}
    return {name: stages.predict_methods(folder / name, checkpoints, cases, channels, device=cfg.device,
                                         batch_size=cfg.batch_size_inference) for name, cases in tests.items()}


def _evaluate(folder, cfg, preds, tests, recon):
    """Image metrics of every method (patients: whole volume and lesions; NEMA: the slices through
    the spheres, full slices), NEMA sphere SUVs and visible spheres, CHO detectability and data
    consistency, as long metric rows; plus what the report needs beside them."""
    ev = cfg.evaluation
    out, extra = [], {"conventions": {"psnr_ssim": ev.convention}, "regions": REGIONS}
    for name, cases in tests.items():
        if name == "torso_no_lesion":
            continue
        images = {"input": cases.by_case("spect"), **stages.load_predictions(preds[name])}
        ref = cases.by_case("target")
        phantoms = None if cfg.data is not None else stages.sample_phantoms(recon[name], cases)
        masks = stages.region_masks(cases, name, phantoms=phantoms, nema_slices=ev.nema_slices)
        lesions = {"lesions": masks.pop("lesions")} if "lesions" in masks else {}
        out += stages.score_methods(images, ref, metrics=ev.metrics, convention=ev.convention, masks=masks,
                                    dataset=name)
        # Inside lesions: intensity errors only (SSIM's 11-voxel window is larger than most lesions).
        out += stages.score_methods(images, ref, metrics=[m for m in ev.metrics if m != "ssim"],
                                    convention=ev.convention, masks=lesions, dataset=name) if lesions else []
        masks.update(lesions)
        if phantoms is None:
            continue
        images = {"truth": cases.by_case("truth"), "reference": ref, **images}
        shown = {k: v for k, v in masks.items() if k != "volume"}
        extra[f"examples_{name}"] = str(stages.save_examples(folder / f"examples_{name}.npz", images, cases,
                                                             regions=shown))
        if name == "nema":
            out += stages.nema_rows(images, phantoms, cnr_threshold=ev.cnr_threshold, dataset=name)
            continue
        twin = tests["torso_no_lesion"]
        absent_images = {"truth": twin.by_case("truth"), "reference": twin.by_case("target"),
                         "input": twin.by_case("spect"), **stages.load_predictions(preds["torso_no_lesion"])}
        present, absent = stages.lesion_patches(images, absent_images, phantoms,
                                                dict(zip(cases.ids, twin.ids)), size=ev.cho_patch)
        out += stages.cho_rows(present, absent, channels=ev.cho_channels, n_channels=ev.cho_n_channels,
                               width_px=ev.cho_width_mm / cases.voxel_size_mm(), seed=cfg.seed,
                               n_bootstrap=ev.bootstrap, dataset=name)
        measured = {"standard": cases.by_case("counts_standard"), "fast": cases.by_case("counts_fast")}
        rows, per_view = stages.consistency_rows({k: v for k, v in images.items() if k != "truth"}, measured,
                                                 stages.case_projector(recon[name], cases), dataset=name)
        out += rows
        extra["consistency_per_view"] = per_view
    return out, extra


REGIONS = {
    "volume": "patients (torso phantoms): the whole reconstructed volume, full slices",
    "lesions": "patients: the lesion masks dilated by one voxel",
    "sphere_slices": "NEMA phantom: the axial slices through the sphere plane (evaluation.nema_slices), full slices",
}

register_study(
    "bone-spect", BoneSpectConfig, run,
    summary="Fast bone SPECT at 1/7 of the scan time: lesion-attention U²-Net (SPECT+CT) vs EDSR, RCAN, ESRGAN; "
            "PSNR/SSIM, NEMA sphere SUVs, distinguishable spheres, CHO detectability, data consistency",
    paper="Fast bone SPECT with a lesion-attention U²-Net, Tc-99m MDP, Siemens Intevo (1/7 scan time)",
    check_data=check_data,
)
