"""SPECTnet: direct 2-D reconstruction from the sinogram and the attenuation map, against OSEM.

The paper: Shao W., Rowe S. P., Du Y. "SPECTnet: a deep learning neural network for SPECT image
reconstruction." Ann Transl Med 9(9):819 (2021). 20,000 random 2-D brain phantoms (128×128 at
2 mm; an elliptical background of activity 1 with hot regions of activity ~6 clipped to [3, 9]; a
skull ring), 120 views over 360° with attenuation and the collimator response. Training: an image
autoencoder (MSE, Adam 1e-4, L2 0.08, batch 160, 50 epochs), a mapping network from the
wrap-padded sinogram and the μ map to the frozen encoder's codes (20 epochs), then mapper and
decoder fine-tuned end to end (19 epochs); compared against OSEM with an oracle iteration, on the
uptake-area mean absolute error, five test cases (Table 1) and a Zubal brain slice (Table 2).

Here: :func:`spectdl.phantoms.brain2d` phantoms through :func:`spectdl.data.simulate` (every
sample regenerable from the manifest), LEHR at a 150 mm radius (documented in the scale file), a
noise-free set (the expected projections) and a noisy set (Poisson at a clinical count level).
One autoencoder is trained on the images; per data set a SPECTnet (mapper + fine-tuning from that
autoencoder) and the paper's direct baseline (the same network trained end to end from scratch for
the same number of epochs). OSEM has the same system model; its oracle keeps each case's best
iteration (1..cap), its fair variant the one iteration that is best on the validation set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from spectdl.data.config import SimulationConfig
from spectdl.errors import ConfigError
from spectdl.studies import baselines, stages
from spectdl.studies.config import StudyConfig, deep_merge, train_config
from spectdl.studies.registry import register_study
from spectdl.studies.results import Claim, PaperValue, write_results
from spectdl.typed_config import Section

#: Study name of each case key -> stored simulation key.
KEYS = {"noise_free": "expected", "noisy": "counts_full", "mu": "mu_per_cm", "truth": "activity", "labels": "labels"}
#: Inputs (wrap-padded sinogram, μ map): the sinogram divided by its mean, μ as it is. The network
#: learns activity / 10 (the decoder's fully connected layers end in sigmoids, so the training range
#: 0–0.9 suits them); the output is restored to activity units (background 1) and never negative.
NORMALIZATION = {"inputs": ["mean", "none"], "output": None, "output_scale": 10.0, "output_min": 0.0}
#: The test sets beside the in-distribution one, and the realistic brain slice.
UPTAKES = (4.0, 5.0, 6.0, 7.0, 9.0)

_T1 = {"4": (3.52, 3.27), "5": (4.43, 3.93), "6": (5.32, 4.16), "7": (6.23, 5.69), "9": (8.19, 7.32)}
PAPER = [
    PaperValue("autoencoder", "mse", "autoencoder", 0.076, {"dataset": "validation"},
               note="paper: 0.076 ± 0.025 in units it does not state; ours is in activity units (background 1), "
                    "so the two may not be comparable"),
    *[PaperValue("finetune", "mse_change_percent", "spectnet", -7.0, {"dataset": "brain", "level": lv},
                 note="MSE change of fine-tuning") for lv in ("noise_free", "noisy")],
    *[PaperValue("table1", "table1_mean", m, v, {"dataset": "brain", "level": lv, "region": "high",
                                                 "table1_case": f"uptake_{u}"}, note=f"case with uptake ≈ {u}")
      for u, pair in _T1.items() for m, v in zip(("spectnet", "osem_oracle"), pair) for lv in ("noise_free", "noisy")],
    *[PaperValue("uptake_mae", "uptake_mae", m, v, {"dataset": "brain", "level": lv, "region": r})
      for r, pair in (("high", (0.68, 1.72)), ("background", (0.04, 0.10)))
      for m, v in zip(("spectnet", "osem_oracle"), pair) for lv in ("noise_free", "noisy")],
    *[PaperValue("table2", "region_mean", m, v, {"dataset": "brain_phantom", "level": lv, "region": "high"},
                 note="striatum mean, true 6")
      for lv, pair in (("noise_free", (5.35, 3.71)), ("noisy", (4.04, 3.18)))
      for m, v in zip(("spectnet", "osem_oracle"), pair)],
    PaperValue("speed", "seconds_per_image", "spectnet", 1.0, {"dataset": "brain"}, note="paper: under 1 s"),
    PaperValue("speed", "seconds_per_image", "osem", 10.5, {"dataset": "brain"},
               note="paper: 5–16 s; 10.5 is the midpoint of that range, not a number of the paper"),
    PaperValue("size", "paper_architecture_size_mb", "spectnet", 127.0, note="see spectdl.models.spectnet"),
]

_B = {"dataset": "brain"}
CLAIMS = [
    *[Claim(f"SPECTnet high-uptake MAE < OSEM at the validation-chosen iteration ({lv})", "uptake_mae", "spectnet",
            "osem", higher=False, where={**_B, "level": lv, "region": "high"}) for lv in ("noise_free", "noisy")],
    *[Claim(f"SPECTnet high-uptake MAE < oracle OSEM ({lv}; the paper's comparison)", "uptake_mae", "spectnet",
            "osem_oracle", higher=False, where={**_B, "level": lv, "region": "high"}) for lv in ("noise_free", "noisy")],
    *[Claim(f"SPECTnet background MAE < oracle OSEM ({lv})", "uptake_mae", "spectnet", "osem_oracle", higher=False,
            where={**_B, "level": lv, "region": "background"}) for lv in ("noise_free", "noisy")],
    *[Claim(f"Fine-tuning lowers the MSE ({lv})", "mse", "spectnet", "spectnet_no_finetune", higher=False,
            where={**_B, "level": lv, "region": "image"}) for lv in ("noise_free", "noisy")],
    *[Claim(f"Two-stage training beats training end to end from scratch (MSE, {lv})", "mse", "spectnet",
            "end_to_end", higher=False, where={**_B, "level": lv, "region": "image"}) for lv in ("noise_free", "noisy")],
    Claim("SPECTnet striatum error < OSEM on the realistic brain slice (noisy)", "uptake_mae", "spectnet",
          "osem_oracle", higher=False, where={"dataset": "brain_phantom", "level": "noisy", "region": "high"}),
    Claim("SPECTnet is faster per image than OSEM", "seconds_per_image", "spectnet", "osem", higher=False,
          where=_B),
    # Not "MSE above OSEM's on concave heads": that holds wherever SPECTnet trails OSEM at all. The
    # paper's point is that concave outlines make it worse than in distribution.
    *[Claim(f"SPECTnet fails on concave head outlines: its MSE gap to OSEM exceeds the in-distribution gap ({lv})",
            "mse_gap_to_osem", "spectnet", "spectnet_in_distribution", higher=True,
            where={"dataset": "concave", "level": lv, "region": "image"}) for lv in ("noise_free", "noisy")],
]
#: The errors of the generalisation table, ``(metric, region, name)``: SPECTnet − OSEM per test set.
GAP_ERRORS = (("mse", "image", "mse"), ("uptake_mae", "high", "high_mae"))


@dataclass(frozen=True)
class ShiftConfig(Section):
    """A test set outside the training family: ``phantom_kwargs`` replace those of the training
    phantoms (``brain.phantom_kwargs``), with ``n_samples`` test cases."""

    phantom_kwargs: dict[str, Any] = field(default_factory=dict)
    n_samples: int = 100
    note: str = ""


@dataclass(frozen=True)
class OsemConfig(Section):
    """OSEM with the simulation's attenuation and collimator model: ``subsets`` subsets, every
    iteration 1..``max_iterations`` scored (the oracle's search range and the validation choice)."""

    subsets: int = 12
    max_iterations: int = 15
    batch_size: int = 16

    def _check(self) -> None:
        if self.subsets < 1 or self.max_iterations < 1 or self.batch_size < 1:
            raise ConfigError(f"subsets, max_iterations, batch_size: expected >= 1, found {self.subsets}, "
                              f"{self.max_iterations}, {self.batch_size}")


@dataclass(frozen=True)
class FbpConfig(Section):
    """FBP with an apodised ramp (``window``, ``cutoff`` as a fraction of Nyquist) and Chang's first-order
    attenuation correction with the phantom's μ map: the classical reference."""

    window: Literal["ramp", "shepp-logan", "cosine", "hamming", "hann"] = "hann"
    cutoff: float = 1.0
    attenuation_correction: bool = True


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """``metrics`` over the whole image (against the phantom; PSNR peak = the phantom's maximum),
    the uptake-area MAE in ``regions`` (phantom label names), Table 1's target uptakes, the bootstrap
    of the paired differences, the realistic brain slice and the timing repeats. Data consistency
    flags a method whose image error (MSE or high-uptake MAE) is at most ``consistency_tolerance``
    times OSEM's while its Poisson deviance per count is above ``consistency_factor`` times the
    largest of the phantom's, OSEM's and the counting-noise floor (:func:`stages.consistency_checks`)."""

    metrics: tuple[str, ...] = ("mse", "rmse", "psnr", "ssim")
    regions: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "high": ("hot", "cold", "striatum"), "background": ("background",)})
    table1_uptakes: tuple[float, ...] = UPTAKES
    bootstrap: int = 1000
    brain_phantom: Optional[str] = "../shared/data/phantoms/Brain_Perfusion_phantom/Brain_Perfusion_Source_120x120x120.h33"
    brain_phantom_ratio: float = 6.0
    brain_phantom_samples: int = 4
    timing_repeats: int = 3
    consistency_tolerance: float = 1.1
    consistency_factor: float = 2.0

    def _check(self) -> None:
        if "mse" not in self.metrics:
            raise ConfigError(f"metrics: {list(self.metrics)}; expected 'mse' among them (the fine-tuning change "
                              "and the claims are computed from it)")
        if self.consistency_tolerance <= 0 or self.consistency_factor <= 0:
            raise ConfigError(f"consistency_tolerance, consistency_factor: expected > 0, found "
                              f"{self.consistency_tolerance}, {self.consistency_factor}")


@dataclass(frozen=True)
class SpectnetConfig(StudyConfig):
    brain: SimulationConfig = field(default_factory=SimulationConfig)
    shifts: dict[str, ShiftConfig] = field(default_factory=dict)
    levels: tuple[str, ...] = ("noise_free", "noisy")
    train: dict[str, Any] = field(default_factory=dict)
    end_to_end: dict[str, Any] = field(default_factory=dict)
    osem: OsemConfig = field(default_factory=OsemConfig)
    fbp: FbpConfig = field(default_factory=FbpConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    sinogram_rows: int = 128
    batch_size_inference: int = 32

    def _check(self) -> None:
        super()._check()
        if self.data is not None:
            raise ConfigError("data: spectnet trains and tests on simulated phantoms with known truth; --data is not "
                              "supported")
        bad = [lv for lv in self.levels if lv not in ("noise_free", "noisy")]
        if bad or not self.levels:
            raise ConfigError(f"levels: {list(self.levels)}; expected some of ['noise_free', 'noisy']")
        if self.brain.phantom != "brain2d" or "expected" not in self.brain.store or "counts" not in self.brain.store:
            raise ConfigError("brain: expected phantom brain2d storing 'expected' and 'counts' (the two data sets)")
        if "full" not in self.brain.counts.levels:
            raise ConfigError(f"brain.counts.levels: {dict(self.brain.counts.levels)}; expected a level named 'full'")
        for kind in ("autoencoder", "spectnet", "end_to_end"):
            self.train_config(kind)

    def simulations(self) -> dict[str, SimulationConfig]:
        """The training set and one test-only simulation per shift (each with its own seed)."""
        out = {"brain": self.brain}
        for k, (name, shift) in enumerate(sorted(self.shifts.items()), start=1):
            out[name] = self.brain.replace(phantom_kwargs={**self.brain.phantom_kwargs, **shift.phantom_kwargs},
                                           n_samples=shift.n_samples, splits={"test": 1.0},
                                           seed=self.brain.seed + 1000 * k)
        if self.evaluation.brain_phantom and Path(self.evaluation.brain_phantom).is_file():
            out["brain_phantom"] = self.brain.replace(
                phantom="brain_perfusion_slice", n_samples=self.evaluation.brain_phantom_samples,
                phantom_kwargs={"source_header": str(Path(self.evaluation.brain_phantom).resolve()),
                                "ratio": self.evaluation.brain_phantom_ratio},
                batch_size=self.evaluation.brain_phantom_samples, splits={"test": 1.0}, seed=self.brain.seed + 999)
        return out

    def stage_epochs(self) -> tuple[int, int, int]:
        """Epochs of the three stages as ``fit`` will run them (``trainer.max_epochs`` for each when
        ``two_stage.stage_epochs`` is not given)."""
        tc = self.train_config("autoencoder")
        return tuple(tc.two_stage.stage_epochs or (tc.trainer.max_epochs,) * 3)

    def train_config(self, kind: str, init_from: str | None = None):
        """The :class:`~spectdl.training.TrainConfig` of ``"autoencoder"`` (stage 1), ``"spectnet"``
        (stages 2–3, from the autoencoder checkpoint ``init_from``) or ``"end_to_end"`` (the same
        SPECTnet, supervised from scratch for the epochs of all three stages together)."""
        from spectdl.training.config import TwoStageConfig
        from spectdl.training.networks import spectnet_kwargs

        meta = {"checkpoint": {"metadata": {"normalization": NORMALIZATION}}, "seed": self.seed}
        if kind == "autoencoder":
            raw = deep_merge(self.train, {"two_stage": {"stage": 1, "last_stage": 1}, **meta})
        elif kind == "spectnet":
            raw = deep_merge(self.train, {"two_stage": {"stage": 2, "last_stage": 3, "init_from": init_from}, **meta})
        elif kind == "end_to_end":
            try:
                ts = TwoStageConfig.from_dict(self.train.get("two_stage") or {})
            except ConfigError as exc:
                raise ConfigError(f"train.two_stage.{exc}") from None
            base = {k: v for k, v in self.train.items() if k != "two_stage"}
            raw = deep_merge(base, {"task": "supervised", "model": {"name": "spectnet", "kwargs": spectnet_kwargs(ts)},
                                    "trainer": {"max_epochs": sum(self.stage_epochs())}, **meta})
            raw = deep_merge(raw, self.end_to_end)
        else:
            raise ConfigError(f"kind: {kind!r}; expected 'autoencoder', 'spectnet' or 'end_to_end'")
        return train_config(raw, "end_to_end" if kind == "end_to_end" else "train")


def _datasets(cfg: SpectnetConfig, manifest: str):
    from spectdl.data import SimulatedDataset, transforms as T

    def make(method: str):
        level = next((lv for lv in cfg.levels if method.endswith(lv)), cfg.levels[0])  # the autoencoder: any
        return tuple(SimulatedDataset(manifest, split, keys=("input", "target"), input=[KEYS[level], KEYS["mu"]],
                                      target=[KEYS["truth"]], sinogram_rows=cfg.sinogram_rows, seed=cfg.seed,
                                      transform=T.NormalizeChannels(NORMALIZATION, target_statistic=None))
                     for split in ("train", "val"))

    return make


def _train(folder: Path, cfg: SpectnetConfig, manifest: str) -> dict[str, Any]:
    ae = folder / "autoencoder" / "stage1" / "checkpoints" / "best.json"
    methods = {"autoencoder": cfg.train_config("autoencoder"),
               **{f"spectnet_{lv}": cfg.train_config("spectnet", init_from=str(ae)) for lv in cfg.levels},
               **{f"end_to_end_{lv}": cfg.train_config("end_to_end") for lv in cfg.levels}}
    return stages.train_methods(folder, methods, _datasets(cfg, manifest))


def _cases(sims: dict[str, str], name: str, split: str = "test") -> stages.CaseSet:
    prefix = "".join(w[0] for w in name.split("_"))
    return stages.simulated_cases(sims[name], split, KEYS, prefix=prefix)


def _reconstruct(folder: Path, cfg: SpectnetConfig, sims: dict[str, str]) -> dict[str, Any]:
    """OSEM on the validation set (the fixed iteration of each data set), then OSEM (oracle and fixed)
    and FBP of every test set."""
    o, f = cfg.osem, cfg.fbp
    common = dict(subsets=o.subsets, max_iterations=o.max_iterations, batch_size=o.batch_size, device=cfg.device,
                  fbp_cutoff=f.cutoff, fbp_attenuation_correction=f.attenuation_correction)
    val = _cases(sims, "brain", "val")
    chosen, curves = {}, {}
    for lv in cfg.levels:
        res = baselines.osem_baselines(folder / "validation" / lv, sims["brain"], val, counts=lv, fbp_window=None,
                                       **common)
        chosen[lv], curves[lv] = baselines.best_fixed_iteration(res["mse"])
    out = {"iteration": chosen, "validation_mse_curve": curves, "tests": {}}
    for name in sims:
        cases = _cases(sims, name)
        for lv in cfg.levels:
            out["tests"][f"{name}/{lv}"] = baselines.osem_baselines(
                folder / name / lv, sims[name], cases, counts=lv, keep=(chosen[lv],), fbp_window=f.window, **common)
    return out


def _test_sets(cfg: SpectnetConfig, sims: dict[str, str]) -> dict[str, stages.CaseSet]:
    return {name: stages.sinogram_inputs(_cases(sims, name), {lv: lv for lv in cfg.levels}, rows=cfg.sinogram_rows)
            for name in sims}


def _networks(ckpts: dict[str, Any], level: str) -> dict[str, str]:
    return {"spectnet": ckpts[f"spectnet_{level}"]["checkpoint"],
            "spectnet_no_finetune": ckpts[f"spectnet_{level}"]["stages"][0],
            "end_to_end": ckpts[f"end_to_end_{level}"]["checkpoint"]}


def _predict(folder: Path, cfg: SpectnetConfig, ckpts: dict[str, Any], tests: dict[str, stages.CaseSet]):
    return {f"{name}/{lv}": stages.predict_methods(folder / name / lv, _networks(ckpts, lv), cases,
                                                   {m: [f"input_{lv}"] for m in _networks(ckpts, lv)},
                                                   device=cfg.device, batch_size=cfg.batch_size_inference)
            for name, cases in tests.items() for lv in cfg.levels}


def _images(preds: dict[str, str], recon: dict[str, Any], cases: stages.CaseSet, iteration: int):
    """``{method: {case: [X, Y]}}``: the networks, OSEM (fixed and oracle), FBP and the truth."""
    files = recon["files"]
    found = {**stages.load_predictions(preds), "osem": stages.load_volumes(files[f"osem_{iteration}"]),
             "osem_oracle": stages.load_volumes(files["osem_oracle"]), "fbp": stages.load_volumes(files["fbp"])}
    shape = cases.get(cases.ids[0], "truth").shape[-2:]
    return {m: {c: v.reshape(shape) for c, v in by.items()} for m, by in {"truth": cases.by_case("truth"), **found}.items()}


def _region_masks(cases: stages.CaseSet, manifest: str, regions: dict[str, tuple[str, ...]]):
    """``{"image": all pixels, region: {case: mask [X, Y]}}`` from the phantoms' label names."""
    import torch

    from spectdl.data.simulation import sample_phantom

    names = sample_phantom(manifest, int(cases.info[cases.ids[0]]["index"])).label_names
    values = {r: [names[n] for n in labels if n in names] for r, labels in regions.items()}
    labels = {c: cases.get(c, "labels")[0] for c in cases.ids}
    out = {"image": {c: torch.ones(lab.shape, dtype=torch.bool) for c, lab in labels.items()}}
    for region, vals in values.items():
        masks = {c: torch.isin(lab, torch.tensor(vals, dtype=lab.dtype)) for c, lab in labels.items()} if vals else {}
        out[region] = {c: m for c, m in masks.items() if bool(m.any())}
    return out


def _evaluate(folder: Path, cfg: SpectnetConfig, sims: dict[str, str], recon: dict[str, Any],
              ckpts: dict[str, Any], preds: dict[str, Any], tests: dict[str, stages.CaseSet]):
    """Per test set and data set: image metrics against the phantom, the uptake-area MAE, region
    mean/SD (Table 1), data consistency; then the autoencoder's validation MSE, the change of
    fine-tuning, speed and size, and what the report draws."""
    ev = cfg.evaluation
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"conventions": {"psnr_ssim": "reference_max", "reference": "the phantom (truth)"},
                             "baseline_method": "osem",
                             "regions": REGIONS, "training": ckpts, "osem_iteration": recon["iteration"],
                             "consistency_per_view": {}}
    # The regions come from the phantoms' labels: the same for both data sets of a test set.
    masks_of = {n: _region_masks(cases, sims[n], ev.regions) for n, cases in tests.items()}
    for key, cases in ((f"{n}/{lv}", tests[n]) for n in tests for lv in cfg.levels):
        name, lv = key.split("/")
        cols = {"dataset": name, "level": lv}
        images = _images(preds[key], recon["tests"][key], cases, recon["iteration"][lv])
        methods = {m: v for m, v in images.items() if m != "truth"}
        masks = masks_of[name]
        regions = {r: masks[r] for r in ev.regions if masks.get(r)}
        rows += stages.score_methods(methods, images["truth"], metrics=ev.metrics, convention="reference_max",
                                     masks={"image": masks["image"]}, **cols)
        rows += [{**r, "metric": "uptake_mae"} for r in stages.score_methods(
            methods, images["truth"], metrics=("mae",), convention="reference_max", masks=regions, **cols)]
        stats = stages.region_stats_rows(images, regions, **cols)
        if name == "brain":
            truth_high = {r["case"]: r["value"] for r in stats
                          if r["method"] == "truth" and r["metric"] == "region_mean" and r["region"] == "high"}
            picked = stages.closest_cases(truth_high, ev.table1_uptakes)
            # Table 1's own rows (a case may be the closest to two targets in a small test set).
            rows += [{**r, "metric": r["metric"].replace("region_", "table1_"), "table1_case": f"uptake_{u:g}"}
                     for u, c in picked.items() for r in stats if r["case"] == c]
            rows += _finetune_change(rows, **cols)
        rows += stats
        # The phantom's own deviance is the reference of the flags. FBP's negative ramp lobes are not
        # activity: clamped at 0 for the forward projection only.
        positive = {**images, "fbp": {c: v.clamp_min(0) for c, v in methods["fbp"].items()}}
        dc, per_view = stages.consistency_rows(positive, {"measured": cases.by_case(lv)},
                                               stages.case_projector(sims[name], cases), **cols)
        rows += dc
        extra["consistency_per_view"][f"{name}_{lv}"] = per_view["measured"]
        if name == "brain" and lv == cfg.levels[-1]:
            extra["examples_brain"] = str(stages.save_examples(folder / "examples_brain.npz", images, cases, n_cases=3))
    rows += _autoencoder_rows(ckpts["autoencoder"]["checkpoint"], _cases(sims, "brain", "val"), cfg.device)
    rows += _speed_rows(cfg, ckpts, tests["brain"], sims["brain"], recon["iteration"][cfg.levels[-1]])
    rows += _gap_rows(rows, ["brain", *sorted(cfg.shifts)], cfg.levels)
    extra["line_figures"] = _curves(cfg, ckpts, recon)
    extra["consistency"] = stages.consistency_checks(
        rows, phantom="truth", baseline="osem", image_errors=[e[:2] for e in GAP_ERRORS],
        tolerance=ev.consistency_tolerance, factor=ev.consistency_factor,
        noise_level="noisy" if "noisy" in cfg.levels else None)
    extra["consistency_flags"] = [c for c in extra["consistency"] if c["flagged"]]
    extra["case_tables"] = [{
        "title": "Table 1: the five test cases whose true high uptake is closest to "
                 + ", ".join(f"{u:g}" for u in ev.table1_uptakes) + ": mean (SD) of each region, ours beside the "
                 "paper's (its OSEM is the oracle one)",
        "column": "table1_case", "column_title": "target high uptake", "mean": "table1_mean", "sd": "table1_sd",
        "paper_table": "table1",
        "methods": ["truth", "spectnet", "osem_oracle", "osem"], "regions": list(ev.regions)}]
    extra["notes"] = _notes(cfg, sims, recon, rows, extra["consistency"])
    extra["paired_tests"] = [
        {"metric": "uptake_mae", "method": "spectnet", "others": ["osem", "osem_oracle", "fbp", "end_to_end",
                                                                   "spectnet_no_finetune"],
         "where": {"dataset": d, "level": lv, "region": r}, "higher": False, "n_bootstrap": ev.bootstrap,
         "seed": cfg.seed}
        for d in tests for lv in cfg.levels for r in ("high", "background")]
    return rows, extra


def _finetune_change(rows, **cols) -> list[dict[str, Any]]:
    """The MSE change of fine-tuning over the test set, in per cent of the MSE before it (the paper:
    −7 %), from the per-case MSE rows of the whole image already scored for ``cols``."""
    mean = {}
    for m in ("spectnet", "spectnet_no_finetune"):
        vals = [r["value"] for r in rows if r["metric"] == "mse" and r["method"] == m and r.get("region") == "image"
                and all(r.get(k) == v for k, v in cols.items())]
        mean[m] = sum(vals) / len(vals)
    change = 100.0 * (mean["spectnet"] - mean["spectnet_no_finetune"]) / mean["spectnet_no_finetune"]
    return [{"case": "all", "method": "spectnet", "metric": "mse_change_percent", "value": change, **cols}]


def _autoencoder_rows(checkpoint: str, val: stages.CaseSet, device: str) -> list[dict[str, Any]]:
    """The stage-1 autoencoder's MSE on every validation image (the paper: 0.076 ± 0.025)."""
    import torch

    from spectdl.metrics.scoring import score_cases
    from spectdl.training.two_stage import autoencoder_from_checkpoint

    ae = autoencoder_from_checkpoint(checkpoint, map_location=device)
    k = NORMALIZATION["output_scale"]  # the autoencoder works in the network's units
    truth = val.by_case("truth")
    with torch.no_grad():
        out = {c: k * ae(t[None].to(device) / k).cpu()[0] for c, t in truth.items()}
    return [{**r, "dataset": "validation"} for r in score_cases(out, truth, metrics=("mse",), method="autoencoder")]


def _speed_rows(cfg: SpectnetConfig, ckpts, cases: stages.CaseSet, manifest: str, iteration: int):
    """Seconds per image of SPECTnet (inference on the study's device) and of OSEM (the chosen
    iteration count, same device), and the model size in MB (float32) of the trained network and
    of the paper's architecture."""
    import torch

    from spectdl.data.simulation import simulation_projector
    from spectdl.inference import enhance_volume
    from spectdl.models import build
    from spectdl.recon import osem
    from spectdl.training import load_model_from_checkpoint

    lv, c = cfg.levels[-1], cases.ids[0]
    model, meta = load_model_from_checkpoint(ckpts[f"spectnet_{lv}"]["checkpoint"], map_location=cfg.device)
    x = cases.get(c, f"input_{lv}")
    y = cases.get(c, lv)[None].float().to(cfg.device)
    proj = simulation_projector(manifest, cases.get(c, "mu")[None].to(cfg.device), device=cfg.device)
    reps = dict(repeats=cfg.evaluation.timing_repeats, device=cfg.device)
    with torch.no_grad():
        t_net = baselines.seconds_per_image(lambda: enhance_volume(model, x, meta=meta, device=cfg.device), **reps)
    t_osem = baselines.seconds_per_image(lambda: osem(y, proj, iteration, cfg.osem.subsets), **reps)

    def mb(net) -> float:
        return sum(p.numel() for p in net.parameters()) * 4 / 1e6

    cols = {"case": "all", "dataset": "brain", "level": lv}
    return [{**cols, "method": "spectnet", "metric": "seconds_per_image", "value": t_net},
            {**cols, "method": "osem", "metric": "seconds_per_image", "value": t_osem},
            {**cols, "method": "spectnet", "metric": "model_size_mb", "value": mb(model)},
            {**cols, "method": "spectnet", "metric": "paper_architecture_size_mb",
             "value": mb(build("spectnet", in_channels=2, out_channels=1))}]


def _curves(cfg: SpectnetConfig, ckpts, recon) -> list[dict[str, Any]]:
    """The paper's Figure 12 (validation RMSE per epoch: two-stage against end to end), the mapper's
    validation code RMSE, and OSEM's validation MSE per iteration."""
    import pandas as pd

    def history(name):
        path = ckpts[name].get("history")
        return pd.read_csv(path) if path and Path(path).is_file() else None

    e1 = cfg.stage_epochs()[0]
    figs = []
    for lv in cfg.levels:
        two, direct = history(f"spectnet_{lv}"), history(f"end_to_end_{lv}")
        series = {}
        k = NORMALIZATION["output_scale"]  # histories are in the network's units
        if two is not None and "val_rmse" in two:
            series["two-stage (mapper, then fine-tuning)"] = {"x": (e1 + 1 + pd.RangeIndex(len(two))).tolist(),
                                                              "y": (k * two["val_rmse"]).tolist()}
        if direct is not None and "val_rmse" in direct:
            series["end to end from scratch"] = {"x": (direct["epoch"] + 1).tolist(),
                                                 "y": (k * direct["val_rmse"]).tolist(), "style": "--"}
        figs.append({"name": f"figure12_{lv}", "title": f"Validation RMSE per epoch ({lv}): the paper's Figure 12. "
                     f"The two-stage curve starts after the {e1} autoencoder epochs.",
                     "xlabel": "epoch", "ylabel": "validation RMSE (activity units)", "series": series, "logy": True})
        if two is not None and "stage" in two:
            mapper = two[two["stage"] == 2]
            figs.append({"name": f"mapper_{lv}", "title": f"Mapper ({lv}): validation RMSE of the codes against the "
                         "frozen encoder's", "xlabel": "epoch", "ylabel": "code RMSE",
                         "series": {"mapper": {"x": (mapper["epoch"] + 1).tolist(),
                                               "y": [math.sqrt(v) for v in mapper["val_loss"]]}}})
    figs.append({"name": "osem_iterations", "title": "OSEM: mean validation MSE against the phantom per iteration "
                 f"({cfg.osem.subsets} subsets); the chosen iteration is its minimum", "xlabel": "iteration",
                 "ylabel": "MSE", "logy": True,
                 "series": {lv: {"x": list(range(1, len(c) + 1)), "y": c} for lv, c in recon["validation_mse_curve"].items()}})
    return figs


def _gap_rows(rows, datasets: list[str], levels, method: str = "spectnet",
              baseline: str = "osem") -> list[dict[str, Any]]:
    """Set-level rows (case ``all``) of ``method``'s error against ``baseline``'s on each test set,
    from the per-case rows, for each of :data:`GAP_ERRORS`: ``<name>_gap_to_osem``, the mean over
    cases of (method − baseline), and ``<name>_ratio_to_osem``, method's mean / baseline's (free of
    the uptake scale, which differs between the sets). Beside every other set, the first of
    ``datasets`` (the in-distribution one) is repeated as method ``spectnet_in_distribution``, so a
    claim can pair a set's gap with the in-distribution gap."""
    import pandas as pd

    df = pd.DataFrame([r for r in rows if r["case"] != "all" and r["method"] in (method, baseline)])
    out = []
    for metric, region, name in GAP_ERRORS:
        sel = df[(df["metric"] == metric) & (df["region"] == region)]
        for lv in levels:
            found = {}
            for d in datasets:
                wide = sel[(sel["dataset"] == d) & (sel["level"] == lv)].pivot_table(
                    index="case", columns="method", values="value")
                pair = wide[[method, baseline]].dropna() if {method, baseline} <= set(wide.columns) else wide.iloc[0:0]
                if not pair.empty:
                    b = float(pair[baseline].mean())
                    found[d] = {"gap": float((pair[method] - pair[baseline]).mean()),
                                "ratio": float(pair[method].mean()) / b if b > 0 else math.inf}
            home = datasets[0]
            for d, v in found.items():
                whose = [(method, v)] + ([("spectnet_in_distribution", found[home])] if d != home and home in found
                                         else [])
                out += [{"case": "all", "method": who, "metric": f"{name}_{kind}_to_{baseline}", "value": val[kind],
                         "dataset": d, "level": lv, "region": region}
                        for who, val in whose for kind in ("gap", "ratio")]
    return out


def _mean(rows, metric: str, method: str, **where) -> float | None:
    """Mean of the finite per-case values of ``metric`` for ``method`` in the rows matching ``where``."""
    vals = [r["value"] for r in rows if r["metric"] == metric and r["method"] == method and r["case"] != "all"
            and all(r.get(k) == v for k, v in where.items())]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _osem_note(cfg: SpectnetConfig, rows) -> str:
    """Our oracle OSEM's uptake MAE on the in-distribution test set against the paper's OSEM
    (:data:`PAPER`), and what that says about the strength of our baseline."""
    paper = {p.where["region"]: p.value for p in PAPER if p.table == "uptake_mae" and p.method == "osem_oracle"}
    parts, below = [], {}
    for region in ("high", "background"):
        ours = {lv: _mean(rows, "uptake_mae", "osem_oracle", dataset="brain", level=lv, region=region)
                for lv in cfg.levels}
        ours = {lv: v for lv, v in ours.items() if v is not None}
        if not ours:
            continue
        below[region] = {lv: v < paper[region] for lv, v in ours.items()}
        parts.append(f"{region} " + ", ".join(f"{v:.3f} ({lv})" for lv, v in ours.items())
                     + f" against the paper's {paper[region]:g}")
    if not parts:
        return "OSEM against the paper's: no uptake MAE of oracle OSEM on the brain test set was measured."
    high = below.get("high", {})
    if high and all(high.values()):
        verdict = ("below the paper's high-uptake MAE at every noise level here, so on the paper's headline "
                   "comparison our OSEM is a stronger baseline than the paper's; it models exactly the physics that "
                   "made the data (no model mismatch, no scatter)")
    elif high and not any(high.values()):
        verdict = "not below the paper's high-uptake MAE at any noise level here, so our OSEM is no stronger a " \
                  "baseline than the paper's on its headline comparison"
    else:
        verdict = "below the paper's high-uptake MAE at " + ", ".join(lv for lv, b in high.items() if b) + \
                  " only, so whether our OSEM is the stronger baseline depends on the noise level"
    bg = below.get("background", {})
    if bg:
        verdict += "; its background MAE is " + "; ".join(
            f"{'below' if b else 'not below'} the paper's at {', '.join(lv for lv, x in bg.items() if x == b)}"
            for b in (True, False) if b in bg.values())
    return (f"OSEM against the paper's: the oracle OSEM's uptake MAE on the brain test set is {'; '.join(parts)}: "
            f"{verdict}.")


def _consistency_note(cfg: SpectnetConfig, checks) -> str:
    ev = cfg.evaluation
    floor = ("and the counting-noise floor (the phantom's deviance against the noisy data of the same cases)"
             if "noisy" in cfg.levels else "(no noisy set in this run, so no counting-noise floor)")
    rule = (f"Data consistency (each image forward projected with the study's system model; mean Poisson deviance "
            f"per count against the measured sinogram): a method is flagged on a test set when its image error (MSE "
            f"of the image or high-uptake MAE) is at most {ev.consistency_tolerance:g}× OSEM's while its deviance is "
            f"above {ev.consistency_factor:g}× the largest of the phantom's, OSEM's {floor}.")

    def listing(items):
        by: dict[str, list[str]] = {}
        for c in items:
            by.setdefault(c["method"], []).append(f"{c['dataset']}/{c['level']}")
        return "; ".join(f"{m} ({len(v)}: {', '.join(sorted(v))})" for m, v in sorted(by.items()))

    flagged = [c for c in checks if c["flagged"]]
    high = [c for c in checks if not c["flagged"] and c["deviance"] > ev.consistency_factor * c["reference_deviance"]]
    out = rule + (" Flagged: " + listing(flagged) + "." if flagged else " No method is flagged.")
    if high:
        out += (" Deviance above the threshold but image error worse than OSEM's, so not flagged (their image "
                "metrics already show it): " + listing(high) + ".")
    return out


def _gap_notes(cfg: SpectnetConfig, rows) -> list[str]:
    """Per data set, SPECTnet − OSEM on each out-of-family set beside the in-distribution gap,
    from the ``*_gap_to_osem`` rows."""
    def gap(name, d, lv):
        return next((r["value"] for r in rows if r["metric"] == f"{name}_gap_to_osem" and r["method"] == "spectnet"
                     and r["dataset"] == d and r["level"] == lv), None)

    notes = []
    for lv in cfg.levels:
        home = [gap(n, "brain", lv) for *_, n in GAP_ERRORS]
        if None in home:
            continue
        parts = []
        for d in sorted(cfg.shifts):
            g = [gap(n, d, lv) for *_, n in GAP_ERRORS]
            if None in g:
                continue
            worse = [n for n, a, b in zip((n for *_, n in GAP_ERRORS), g, home) if a > b]
            parts.append(f"{d} {' / '.join(f'{v:+.3g}' for v in g)} ("
                         + (f"{' and '.join(worse)} gap above the in-distribution one" if worse else
                            "no gap above the in-distribution one") + ")")
        if parts:
            notes.append(f"Generalisation ({lv}): SPECTnet − OSEM, mean over cases of the image MSE / the "
                         f"high-uptake MAE: in distribution {' / '.join(f'{v:+.3g}' for v in home)}; "
                         + "; ".join(parts) + ". Ratios to OSEM's error are in the set-level table (mse_ratio_to_osem, "
                         "high_mae_ratio_to_osem).")
    return notes


def _notes(cfg: SpectnetConfig, sims, recon, rows, checks) -> list[str]:
    b = cfg.brain
    counts = b.counts.total if not isinstance(b.counts.total, tuple) else f"{b.counts.total[0]:g}–{b.counts.total[1]:g}"
    oracle = {k: sorted(set(v["best_iteration"].values())) for k, v in recon["tests"].items()}
    notes = [
        f"Data: {b.n_samples} brain2d phantoms ({b.grid.shape if b.grid else '128×128'} at "
        f"{b.grid.voxel_size_mm if b.grid else 2.0} mm), {b.orbit.n_angles} views over {b.orbit.arc_deg:g}°, "
        f"{b.collimator} at {b.orbit.radius_mm} mm, attenuation on; noise-free = the expected projections, noisy = "
        f"Poisson at {counts} counts per slice.",
        f"OSEM: {cfg.osem.subsets} subsets, iterations 1..{cfg.osem.max_iterations} with the simulation's own system "
        f"model. Fixed iteration chosen on the validation set: {recon['iteration']}. Oracle iterations picked per test "
        f"set: {oracle}.",
        _osem_note(cfg, rows),
        "SPECTnet's decoder ends in a linear convolution; its outputs are clamped at 0 (activity), as the checkpoint's "
        "normalisation records.",
    ]
    ae = _mean(rows, "mse", "autoencoder", dataset="validation")
    if ae is not None:
        notes.append(f"Autoencoder: validation MSE {ae:.4g} in activity units (background 1). The paper's "
                     "0.076 ± 0.025 does not state its units or image scaling, so the two may not be comparable.")
    notes.append(_consistency_note(cfg, checks))
    notes += _gap_notes(cfg, rows)
    notes.append("Speed: the paper's OSEM time in paper.csv (10.5 s) is the midpoint of the 5–16 s it reports.")
    if "brain_phantom" not in sims:
        path = cfg.evaluation.brain_phantom
        notes.append("The realistic brain slice (Table 2) was skipped: " + (
            f"evaluation.brain_phantom is {path}, and there is no file at {Path(path).resolve()}." if path else
            "evaluation.brain_phantom is not set."))
    return notes


REGIONS = {
    "image": "the whole 128×128 image",
    "high": "the high-uptake regions of the phantom (cold regions in the cold-lesion set, the striatum in the "
            "realistic slice)",
    "background": "the brain background (activity 1), skull excluded",
}


def run(run, cfg: SpectnetConfig) -> None:
    sims = run.stage("simulate", stages.simulate_sets, cfg.simulations(), workers=cfg.workers)
    recon = run.stage("reconstruct", _reconstruct, cfg, sims)
    ckpts = run.stage("train", _train, cfg, sims["brain"])
    tests = _test_sets(cfg, sims)
    preds = run.stage("predict", _predict, cfg, ckpts, tests)
    rows, extra = run.stage("evaluate", _evaluate, cfg, sims, recon, ckpts, preds, tests)
    write_results(run.dir, rows, study="spectnet", paper=PAPER, claims=CLAIMS, extra=extra)


register_study(
    "spectnet", SpectnetConfig, run,
    summary="SPECTnet: direct 2-D reconstruction from sinogram + μ map (autoencoder, mapper, fine-tuning) vs OSEM "
            "(oracle and validation-chosen iteration), FBP and end-to-end training; uptake MAE, Table 1, a realistic "
            "brain slice, speed, data consistency and out-of-family test sets",
    paper="Shao, Rowe, Du: SPECTnet, a deep learning neural network for SPECT image reconstruction (Ann Transl Med 2021)",
)
