"""The study registry: a name, a typed config and a ``run`` function per published study.

A study module ends with::

    register_study("bone-spect", BoneSpectConfig, run, summary="Fast bone SPECT at 1/7 of the scan time ...")

and ships ``spectdl/configs/studies/<name>.yaml`` with its defaults and its ``smoke``, ``quick``
and ``paper`` scales (see :mod:`spectdl.studies.config`). ``spectdl study list`` prints the
registered studies, ``spectdl study run NAME`` runs one (:func:`spectdl.studies.runner.run_study`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from spectdl.errors import ConfigError

#: Modules that register the built-in studies on import.
_BUILTIN = ("spectdl.studies.bone_spect", "spectdl.studies.spectnet", "spectdl.studies.mpi_projection",
            "spectdl.studies.wbs_planar", "spectdl.studies.cardiac_pvc")


@dataclass(frozen=True)
class Study:
    """A registered study.

    Attributes:
        name: the CLI name (lower case, dashes).
        config_class: its :class:`~spectdl.studies.config.StudyConfig` subclass.
        run: ``run(run: Run, config) -> None``; chains library calls through ``run.stage``.
        summary: one line on what it reproduces (``spectdl study list``).
        paper: the reference of the paper.
        check_data: ``check_data(config)``, run before any folder is made when ``--data`` is given:
            raises an InputError when the user's manifest lacks what the study reads.
    """

    name: str
    config_class: type
    run: Callable
    summary: str
    paper: str = ""
    check_data: Callable | None = None


_STUDIES: dict[str, Study] = {}


def register_study(name: str, config_class: type, run: Callable, *, summary: str, paper: str = "",
                   check_data: Callable | None = None) -> Study:
    """Register a study under ``name``; a name used twice by different code is an error."""
    from spectdl.studies.config import StudyConfig

    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        raise ConfigError(f"register_study: name {name!r}; expected a non-empty lower-case name without spaces")
    if not (isinstance(config_class, type) and issubclass(config_class, StudyConfig)):
        raise ConfigError(f"register_study({name!r}): config_class must subclass StudyConfig, found {config_class!r}")
    study = Study(name, config_class, run, summary, paper, check_data)
    old = _STUDIES.get(name)
    if old is not None and (old.run is not run or old.config_class is not config_class):
        if old.run.__module__ != run.__module__:
            raise ConfigError(f"register_study: {name!r} is already registered by {old.run.__module__}")
    _STUDIES[name] = study
    return study


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(module)


def available_studies() -> list[str]:
    """Sorted names of the registered studies."""
    _load_builtin()
    return sorted(_STUDIES)


def get_study(name: str) -> Study:
    """The study registered as ``name``; an unknown name is a ConfigError listing the known ones."""
    _load_builtin()
    if name not in _STUDIES:
        raise ConfigError(f"study: unknown study {name!r}; expected one of {sorted(_STUDIES)}")
    return _STUDIES[name]
