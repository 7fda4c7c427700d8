"""Build the composite loss of each study from a config, with the published weights as defaults.

Two forms:

* a study: ``build_loss("cardiac", ssim=0.5)`` or ``build_loss({"study": "cardiac", "ssim": 0.5})``.
  The keys each study accepts, and their defaults, are in :data:`STUDY_DEFAULTS`:

  - ``bone_spect``: lesion attention ``L + β·L(pred·M, target·M)``, ``L = L1 + α·(1 − SSIM)``,
    ``α = 0.5``, ``β = 100``; needs ``lesion_mask=`` in the context.
  - ``myocardial_perfusion``: ``100·L2 + 1·adversarial`` (L2 : adversarial = 100 : 1, vanilla GAN
    by default); needs ``fake_logits=`` in the context.
  - ``planar``: ``perceptual + 0.005·L1 + 0.01·BCE + 0.001·GAN``. ``BCE`` is the binary
    cross-entropy of intensities (:class:`~spectdl.losses.pixel.IntensityBCELoss`); ``GAN`` is the
    generator's adversarial loss, relativistic average by default (the ESRGAN recipe that the
    VGG19 perceptual term comes from); needs ``fake_logits=`` and ``real_logits=``. The perceptual
    features: ``vgg_weights_path`` (VGG19 ImageNet weights), or ``planar_features_path``
    (spectdl's fallback :class:`~spectdl.metrics.backbones.PlanarFeatures`, a file of
    :func:`spectdl.training.feature_net.save_planar_features`), or a ready ``feature_extractor``.
  - ``cardiac``: ``MAE + 0.8·(1 − SSIM) + 0.1·Sobel + 0.1·IMBV``; needs ``masks=``.
    ``ssim_mode`` and ``sobel_mode`` (``"three_plane"``: the 2-D operator in the axial, coronal and
    sagittal slices; ``"auto"``, the default: 2-D or 3-D from the input) choose the SSIM and Sobel
    terms; ``mask_key`` (default ``None``) names a context mask, e.g. the field of view, to which
    every term is confined (see :mod:`spectdl.losses._base`).

* free terms: ``build_loss({"terms": {"l1": 1.0, "ssim": {"weight": 0.5, "spatial_dims": 3}}})``,
  each term a weight or a dict of ``weight``, an optional ``type`` (default: the term's name, one
  of :data:`LOSS_TYPES`) and that loss's constructor arguments.

Both forms accept ``deep_supervision``: ``None``, a number of outputs ``n`` (weights all 1) or a
sequence of weights; the composite is then wrapped in :class:`~spectdl.losses.DeepSupervision`.
Unknown keys or bad values raise :class:`spectdl.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from typing import Any, Mapping

from torch import nn

from spectdl.errors import ConfigError, InputError
from spectdl.losses.adversarial import MODES, AdversarialLoss
from spectdl.losses.composite import CompositeLoss, DeepSupervision
from spectdl.losses.imbv import IMBVLoss
from spectdl.losses.lesion import LesionAttentionLoss
from spectdl.losses.perceptual import PerceptualLoss
from spectdl.losses.pixel import IntensityBCELoss, L1Loss, L2Loss
from spectdl.losses.sobel import SobelLoss, ThreePlaneSobelLoss
from spectdl.losses.ssim import SSIMLoss, ThreePlaneSSIMLoss

#: Loss classes by the name used in ``{"terms": ...}`` configs.
LOSS_TYPES: dict[str, type[nn.Module]] = {
    "l1": L1Loss,
    "mae": L1Loss,
    "l2": L2Loss,
    "mse": L2Loss,
    "bce": IntensityBCELoss,
    "ssim": SSIMLoss,
    "three_plane_ssim": ThreePlaneSSIMLoss,
    "sobel": SobelLoss,
    "three_plane_sobel": ThreePlaneSobelLoss,
    "imbv": IMBVLoss,
    "adversarial": AdversarialLoss,
    "perceptual": PerceptualLoss,
    "lesion_attention": LesionAttentionLoss,
}

#: Every study's keys and their defaults: the published weights.
STUDY_DEFAULTS: dict[str, dict[str, Any]] = {
    "bone_spect": {
        "alpha": 0.5,
        "beta": 100.0,
        "data_range": None,
        "spatial_dims": None,
        "deep_supervision": None,
    },
    "myocardial_perfusion": {
        "l2": 100.0,
        "adversarial": 1.0,
        "gan_mode": "vanilla",
        "from_logits": True,
        "deep_supervision": None,
    },
    "planar": {
        "perceptual": 1.0,
        "l1": 0.005,
        "bce": 0.01,
        "gan": 0.001,
        "gan_mode": "relativistic",
        "from_logits": True,
        "feature_extractor": None,
        "perceptual_layers": None,
        "perceptual_layer_weights": None,
        "vgg_weights_path": None,
        "planar_features_path": None,
        "perceptual_criterion": "l1",
        "data_range": None,
        "deep_supervision": None,
    },
    "cardiac": {
        "mae": 1.0,
        "ssim": 0.8,
        "sobel": 0.1,
        "imbv": 0.1,
        "ssim_mode": "auto",
        "sobel_mode": "auto",
        "mask_key": None,
        "data_range": None,
        "deep_supervision": None,
    },
}

SSIM_MODES = ("auto", "2d", "3d", "three_plane")
SOBEL_MODES = SSIM_MODES

#: The keys of each study that are loss weights (checked finite and >= 0 before anything is built).
STUDY_WEIGHTS: dict[str, tuple[str, ...]] = {
    "bone_spect": ("alpha", "beta"),
    "myocardial_perfusion": ("l2", "adversarial"),
    "planar": ("perceptual", "l1", "bce", "gan"),
    "cardiac": ("mae", "ssim", "sobel", "imbv"),
}


def study_defaults(study: str) -> dict[str, Any]:
    """A copy of the default config of ``study`` (see :data:`STUDY_DEFAULTS`)."""
    if study not in STUDY_DEFAULTS:
        raise ConfigError(f"study: unknown study {study!r}; expected one of {sorted(STUDY_DEFAULTS)}")
    return copy.copy(STUDY_DEFAULTS[study])


def _weight(cfg: Mapping[str, Any], key: str, label: str | None = None) -> float:
    """A loss weight: a finite number >= 0 (a negative weight would maximise its term)."""
    label = key if label is None else label
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{label}: expected a weight (a finite number >= 0), found {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{label}: expected a weight that is finite and >= 0, found {value!r}")
    return v


def _choice(cfg: Mapping[str, Any], key: str, choices) -> str:
    if cfg[key] not in choices:
        raise ConfigError(f"{key}: expected one of {tuple(choices)}, found {cfg[key]!r}")
    return cfg[key]


def _bone_spect(cfg) -> CompositeLoss:
    lesion = LesionAttentionLoss(
        alpha=_weight(cfg, "alpha"),
        beta=_weight(cfg, "beta"),
        data_range=cfg["data_range"],
        spatial_dims=cfg["spatial_dims"],
    )
    return CompositeLoss({"lesion_attention": (1.0, lesion)})


def _myocardial_perfusion(cfg) -> CompositeLoss:
    gan = AdversarialLoss(mode=_choice(cfg, "gan_mode", MODES), from_logits=bool(cfg["from_logits"]))
    return CompositeLoss({"l2": (_weight(cfg, "l2"), L2Loss()), "adversarial": (_weight(cfg, "adversarial"), gan)})


def _planar(cfg) -> CompositeLoss:
    extractor = cfg["feature_extractor"]
    if cfg["planar_features_path"] is not None:
        if extractor is not None or cfg["vgg_weights_path"] is not None:
            raise InputError("planar_features_path: give one feature network (planar_features_path, "
                             "vgg_weights_path or feature_extractor), not several")
        from spectdl.metrics.backbones import load_planar_features

        extractor = load_planar_features(cfg["planar_features_path"])
    perceptual = PerceptualLoss(
        feature_extractor=extractor,
        layers=cfg["perceptual_layers"],
        layer_weights=cfg["perceptual_layer_weights"],
        weights_path=cfg["vgg_weights_path"],
        criterion=cfg["perceptual_criterion"],
        data_range=cfg["data_range"],
    )
    gan = AdversarialLoss(mode=_choice(cfg, "gan_mode", MODES), from_logits=bool(cfg["from_logits"]))
    return CompositeLoss(
        {
            "perceptual": (_weight(cfg, "perceptual"), perceptual),
            "l1": (_weight(cfg, "l1"), L1Loss()),
            "bce": (_weight(cfg, "bce"), IntensityBCELoss(data_range=cfg["data_range"])),
            "gan": (_weight(cfg, "gan"), gan),
        }
    )


def _cardiac(cfg) -> CompositeLoss:
    key = cfg["mask_key"]
    if key is not None and not (isinstance(key, str) and key):
        raise ConfigError(f"mask_key: expected None or the name of a context mask, found {key!r}")
    dims = {"auto": None, "2d": 2, "3d": 3}
    mode = _choice(cfg, "ssim_mode", SSIM_MODES)
    if mode == "three_plane":
        ssim = ThreePlaneSSIMLoss(data_range=cfg["data_range"], mask_key=key)
    else:
        ssim = SSIMLoss(spatial_dims=dims[mode], data_range=cfg["data_range"], mask_key=key)
    mode = _choice(cfg, "sobel_mode", SOBEL_MODES)
    sobel = ThreePlaneSobelLoss(mask_key=key) if mode == "three_plane" else SobelLoss(dims[mode], mask_key=key)
    return CompositeLoss(
        {
            "mae": (_weight(cfg, "mae"), L1Loss(mask_key=key)),
            "ssim": (_weight(cfg, "ssim"), ssim),
            "sobel": (_weight(cfg, "sobel"), sobel),
            "imbv": (_weight(cfg, "imbv"), IMBVLoss(mask_key=key)),
        }
    )


_BUILDERS = {
    "bone_spect": _bone_spect,
    "myocardial_perfusion": _myocardial_perfusion,
    "planar": _planar,
    "cardiac": _cardiac,
}


def _term(name: str, entry) -> tuple[float, nn.Module]:
    if isinstance(entry, bool) or not isinstance(entry, (numbers.Real, Mapping)):
        raise ConfigError(f"terms.{name}: expected a weight or a dict with 'weight', found {entry!r}")
    options = {"weight": float(entry)} if isinstance(entry, numbers.Real) else dict(entry)
    if "weight" not in options:
        raise ConfigError(f"terms.{name}: missing key 'weight'")
    weight = _weight(options, "weight", f"terms.{name}.weight")
    kind = options.pop("type", name)
    options.pop("weight")
    if kind not in LOSS_TYPES:
        raise ConfigError(f"terms.{name}.type: unknown loss {kind!r}; expected one of {sorted(LOSS_TYPES)}")
    cls = LOSS_TYPES[kind]
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = sorted(k for k in params if k != "self" and params[k].kind is not inspect.Parameter.VAR_KEYWORD)
    for key in options:
        if key not in params and not accepts_any:
            raise ConfigError(
                f"terms.{name}: unknown key {key!r} for loss {kind!r}; expected 'weight', 'type' or {allowed}"
            )
    try:
        return weight, cls(**options)
    except (InputError, TypeError) as exc:
        raise ConfigError(f"terms.{name}: {exc}") from exc


def _deep_supervision(loss: nn.Module, value) -> nn.Module:
    if value is None:
        return loss
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"deep_supervision: expected a number of outputs >= 1, found {value}")
        value = (1.0,) * int(value)
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"deep_supervision: expected None, a number of outputs or a list of weights, found {value!r}")
    value = list(value)
    for i, w in enumerate(value):
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(float(w)) or float(w) < 0:
            raise ConfigError(f"deep_supervision[{i}]: expected a weight that is finite and >= 0, found {w!r}")
    try:
        return DeepSupervision(loss, weights=value)
    except InputError as exc:
        raise ConfigError(f"deep_supervision: {exc}") from exc


def build_loss(config: str | Mapping[str, Any], **overrides: Any) -> nn.Module:
    """The composite loss of a study (or of free terms); see the module docstring.

    Args:
        config: a study name, or a dict with either ``"study"`` (plus that study's keys) or
            ``"terms"`` (plus ``"deep_supervision"``).
        **overrides: keys that replace the config's (same rules as the config's keys).

    Returns:
        A :class:`~spectdl.losses.CompositeLoss` (or :class:`~spectdl.losses.DeepSupervision`
        around one) whose ``weights`` are the configured weights.
    """
    if isinstance(config, str):
        cfg: dict[str, Any] = {"study": config}
    elif isinstance(config, Mapping):
        cfg = dict(config)
    else:
        raise ConfigError(f"config: expected a study name or a dict, found {type(config).__name__}")
    cfg.update(overrides)

    if "study" in cfg and "terms" in cfg:
        raise ConfigError("config: has both 'study' and 'terms'; expected one of them")
    if "terms" in cfg:
        unknown = sorted(set(cfg) - {"terms", "deep_supervision"})
        if unknown:
            raise ConfigError(f"config: unknown key {unknown[0]!r}; expected 'terms' or 'deep_supervision'")
        terms = cfg["terms"]
        if not isinstance(terms, Mapping) or not terms:
            raise ConfigError(f"terms: expected a non-empty dict name -> weight or options, found {terms!r}")
        for name in terms:
            if not isinstance(name, str) or "." in name:
                raise ConfigError(f"terms: term name {name!r} must be a string without '.'")
        loss = CompositeLoss({name: _term(name, entry) for name, entry in terms.items()})
        return _deep_supervision(loss, cfg.get("deep_supervision"))

    if "study" not in cfg:
        raise ConfigError(f"config: expected a 'study' or a 'terms' key, found keys {sorted(cfg)}")
    study = cfg.pop("study")
    settings = study_defaults(study)
    unknown = sorted(set(cfg) - set(settings))
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown key for study {study!r}; expected one of {sorted(settings)}"
        )
    settings.update(cfg)
    for key in STUDY_WEIGHTS[study]:
        _weight(settings, key)
    try:
        loss = _BUILDERS[study](settings)
    except InputError as exc:
        raise ConfigError(f"study {study!r}: {exc}") from exc
    return _deep_supervision(loss, settings["deep_supervision"])
