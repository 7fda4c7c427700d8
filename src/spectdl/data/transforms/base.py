"""Replayable transforms: a random transform draws parameters, a deterministic one applies them.

A *sample* is a dict of tensors ``[C, *spatial]`` (``"input"``, ``"target"``, masks, ...) plus any
other values (ids, indices), which pass through untouched.

* :class:`Deterministic` transforms (``Flip``, ``Rot90``, ``Rotate``, ``Crop``, ``AxialSlice``,
  ``Scale``, ``Compose``) hold all their parameters. ``t.apply(sample)`` transforms;
  ``t.spec()`` is a JSON-able dict that :func:`replay` turns back into the same transform.
* Random transforms (``RandomFlip``, ``RandomRotate``, ``RandomCrop``, ...) and data-dependent ones
  (``NormalizeMean``, ``MatchCounts``) only *draw*: ``t.draw(sample, generator)`` returns the
  deterministic transform with the parameters drawn from ``generator`` (or computed from the sample).

Calling any transform, ``out, spec = t(sample, generator)``, draws, applies and returns the record;
``replay(sample, spec)`` reproduces ``out`` exactly. One set of parameters is applied to every
selected key, so input, target and masks stay aligned (masks are resampled with nearest neighbour).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Mapping, Sequence

import torch

from spectdl.errors import InputError

#: Keys resampled with nearest-neighbour interpolation (so are tensors of integer or bool dtype).
MASK_KEYS = ("labels", "lesion_mask", "organ_labels", "mask", "masks")

_REGISTRY: dict[str, type["Deterministic"]] = {}

Sample = dict


class Transform:
    """Base of every transform: ``draw`` the deterministic transform, then apply it."""

    def draw(self, sample: Mapping[str, Any], generator: torch.Generator | None) -> "Deterministic":
        raise NotImplementedError

    def __call__(self, sample: Mapping[str, Any], generator: torch.Generator | None = None) -> tuple[dict, dict]:
        """``(transformed sample, spec)``; ``replay(sample, spec)`` gives the same sample."""
        det = self.draw(sample, generator)
        return det.apply(sample), det.spec()


class Deterministic(Transform):
    """A transform with every parameter fixed; subclasses set ``name`` and implement ``apply``/``_args``."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def draw(self, sample, generator=None) -> "Deterministic":
        return self

    def apply(self, sample: Mapping[str, Any]) -> dict:
        raise NotImplementedError

    def _args(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        return {"transform": self.name, **self._args()}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Deterministic":
        args = {k: v for k, v in spec.items() if k != "transform"}
        return cls(**args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._args().items())})"


def from_spec(spec: Mapping[str, Any] | str) -> Deterministic:
    """The deterministic transform described by ``spec`` (a dict from ``spec()``, or its JSON text)."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise InputError(f"spec: not valid JSON ({exc})") from None
    if not isinstance(spec, Mapping) or "transform" not in spec:
        raise InputError(f"spec: expected a dict with a 'transform' name, found {spec!r}")
    name = spec["transform"]
    if name not in _REGISTRY:
        raise InputError(f"spec: unknown transform {name!r}; expected one of {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[name].from_spec(spec)
    except TypeError as exc:
        raise InputError(f"spec: arguments {sorted(spec)} do not fit transform {name!r} ({exc})") from None


def replay(sample: Mapping[str, Any], spec: Mapping[str, Any] | str) -> dict:
    """Apply the recorded transform ``spec`` (from ``t(sample, generator)[1]``) to ``sample``."""
    return from_spec(spec).apply(sample)


def need_generator(generator, owner: str) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise InputError(
            f"generator: {owner} draws random parameters; expected a torch.Generator, found {type(generator).__name__}"
        )
    return generator


def uniform_int(generator: torch.Generator, low: int, high: int) -> int:
    """An integer uniform in ``[low, high]`` (inclusive), drawn on the CPU."""
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device))


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator, dtype=torch.float64, device=generator.device))


def selected(sample: Mapping[str, Any], keys: Sequence[str] | None, owner: str) -> list[str]:
    """The tensor keys a transform acts on: ``keys`` (all must be tensors), or every tensor entry."""
    if keys is None:
        return [k for k, v in sample.items() if isinstance(v, torch.Tensor)]
    missing = [k for k in keys if not isinstance(sample.get(k), torch.Tensor)]
    if missing:
        found = sorted(k for k, v in sample.items() if isinstance(v, torch.Tensor))
        raise InputError(f"{owner}: keys {missing} are not tensors of the sample; found tensor keys {found}")
    return list(keys)


def spatial_dims(sample: Mapping[str, Any], keys: Sequence[str], owner: str) -> tuple[int, ...]:
    """The common spatial shape of ``sample[k]`` (``[C, *spatial]``) for ``keys``; InputError if they differ."""
    shapes = {k: tuple(sample[k].shape[1:]) for k in keys}
    distinct = set(shapes.values())
    if len(distinct) > 1:
        raise InputError(f"{owner}: the selected tensors have different spatial shapes {shapes}; expected one shape")
    if not distinct:
        raise InputError(f"{owner}: the sample holds no tensor to transform")
    shape = distinct.pop()
    if len(shape) not in (1, 2, 3):
        raise InputError(f"{owner}: tensors must be [C, *spatial] with 1 to 3 spatial axes, found {len(shape)}")
    return shape


def is_mask(key: str, t: torch.Tensor, mask_keys: Sequence[str]) -> bool:
    return key in mask_keys or not t.is_floating_point()


def keys_arg(keys) -> list[str] | None:
    if keys is None:
        return None
    if isinstance(keys, str):
        return [keys]
    return [str(k) for k in keys]


class Compose(Deterministic):
    """Transforms in sequence; each one draws from the sample as the previous ones left it."""

    name = "compose"

    def __init__(self, transforms: Sequence[Transform | Mapping[str, Any]]):
        steps = []
        for i, t in enumerate(transforms):
            if isinstance(t, Mapping):
                t = from_spec(t)
            if not isinstance(t, Transform):
                raise InputError(f"transforms[{i}]: expected a spectdl transform, found {type(t).__name__}")
            steps.append(t)
        self.transforms = steps

    @classmethod
    def from_spec(cls, spec):
        return cls([from_spec(s) for s in spec.get("transforms", [])])

    def __call__(self, sample, generator=None):
        out, specs = dict(sample), []
        for t in self.transforms:
            det = t.draw(out, generator)
            out = det.apply(out)
            specs.append(det.spec())
        return out, {"transform": self.name, "transforms": specs}

    def draw(self, sample, generator=None) -> "Compose":
        return from_spec(self(sample, generator)[1])  # type: ignore[return-value]

    def apply(self, sample):
        out = dict(sample)
        for t in self.transforms:
            if not isinstance(t, Deterministic):
                raise InputError(f"Compose.apply: {type(t).__name__} is random; call the Compose with a generator")
            out = t.apply(out)
        return out

    def _args(self):
        random = [type(t).__name__ for t in self.transforms if not isinstance(t, Deterministic)]
        if random:
            raise InputError(f"Compose.spec: {random} are random; the record comes from calling the Compose")
        return {"transforms": [t.spec() for t in self.transforms]}
