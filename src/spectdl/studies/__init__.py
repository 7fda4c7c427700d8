"""The published studies, each a short composition of library parts.

* :func:`register_study`, :func:`available_studies`, :func:`get_study`: the registry.
* :func:`run_study`: resolve a study's config at a scale, run its stages into
  ``OUT/<study>/<run-id>/`` (with ``--resume``), and write the results contract
  (:mod:`spectdl.studies.results`).
* :mod:`spectdl.studies.stages`: the stage functions studies chain (simulate, reconstruct, train,
  predict, score).
* :func:`evaluate_manifest`: per-case scores of predictions for a manifest of real cases.
"""

from spectdl.studies.registry import Study, available_studies, get_study, register_study
from spectdl.studies.runner import RunResult, run_study

__all__ = ["RunResult", "Study", "available_studies", "get_study", "register_study", "run_study"]
