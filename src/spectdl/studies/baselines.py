"""Classical reconstructions of a study's simulated cases, to compare networks with: OSEM with every
iteration scored against the phantom (oracle and fixed-iteration variants) and FBP; and the wall
time per image of any reconstruction.

The cases come as a :class:`~spectdl.studies.stages.CaseSet` of one simulation: ``counts`` (the
projections ``[1, V, R(, Z)]``), ``mu`` (``[1, *grid]``, cm⁻¹) and ``truth`` (``[1, *grid]``); each
case's manifest record gives ``scale``, the expected counts per unit of activity, by which the
images are divided so that they are in the phantom's activity units (a calibrated scanner).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.studies.stages import CaseSet, save_volumes


def _batches(ids: Sequence[str], size: int):
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def osem_baselines(folder: Path, manifest: str | Path, cases: CaseSet, *, counts: str, subsets: int,
                   max_iterations: int, keep: Sequence[int] = (), batch_size: int = 16,
                   fbp_window: str | None = "hann", fbp_cutoff: float = 1.0, fbp_attenuation_correction: bool = True,
                   mu: str = "mu", truth: str = "truth", device: str = "cpu") -> dict[str, Any]:
    """OSEM (``subsets`` subsets, ``1..max_iterations`` iterations) and FBP of every case, with the
    projector that simulated them (:func:`spectdl.data.simulation.simulation_projector`: the same
    attenuation and collimator model).

    Writes ``folder/osem_oracle.npz`` (each case at the iteration with its lowest MSE against the
    truth), ``folder/osem_<k>.npz`` for each ``k`` in ``keep`` and ``folder/fbp.npz``; returns
    ``{"files": {name: path}, "mse": {case: [MSE per iteration]}, "best_iteration": {case: k}}``.
    """
    from spectdl.data.simulation import simulation_projector
    from spectdl.recon import fbp, osem_iterates

    folder.mkdir(parents=True, exist_ok=True)
    images: dict[str, dict[str, torch.Tensor]] = {"osem_oracle": {}, **{f"osem_{k}": {} for k in keep}}
    if fbp_window is not None:
        images["fbp"] = {}
    mse, best = {}, {}
    for ids in _batches(cases.ids, batch_size):
        y = torch.stack([cases.get(c, counts) for c in ids]).float().to(device)
        mu_b = torch.stack([cases.get(c, mu) for c in ids]).float().to(device)
        ref = torch.stack([cases.get(c, truth) for c in ids]).float().to(device)
        try:
            scale = torch.tensor([float(cases.info[c]["scale"]) for c in ids], dtype=torch.float64)
        except KeyError:
            raise InputError(f"cases: a case of {ids} has no 'scale' in its manifest record; expected a "
                             "simulated case") from None
        proj = simulation_projector(manifest, mu_b, device=device)
        res = osem_iterates(y, proj, max_iterations, subsets, ref, scale=scale, keep=keep)
        if fbp_window is not None:
            k = scale.to(device=device, dtype=y.dtype).reshape((-1,) + (1,) * (y.dim() - 1))
            f = fbp(y / k, proj, window=fbp_window, cutoff=fbp_cutoff, attenuation_correction=fbp_attenuation_correction)
        for j, c in enumerate(ids):
            images["osem_oracle"][c] = res.best[j].cpu()
            for it in keep:
                images[f"osem_{it}"][c] = res.kept[it][j].cpu()
            if fbp_window is not None:
                images["fbp"][c] = f[j].cpu()
            mse[c] = res.mse[j].tolist()
            best[c] = int(res.best_iteration[j])
    files = {name: str(save_volumes(folder / f"{name}.npz", by_case)) for name, by_case in images.items()}
    return {"files": files, "mse": mse, "best_iteration": best}


def best_fixed_iteration(mse: dict[str, Sequence[float]]) -> tuple[int, list[float]]:
    """The iteration (1-based) with the lowest mean MSE over the cases, and that mean per iteration:
    the one iteration count a reader would fix on a validation set."""
    if not mse:
        raise InputError("mse: no cases; expected the per-iteration MSE of at least one validation case")
    curve = np.mean(np.asarray(list(mse.values()), dtype=np.float64), axis=0)
    return int(np.argmin(curve)) + 1, curve.tolist()


def seconds_per_image(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1, device: str = "cpu") -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") and torch.cuda.is_available() else (lambda: None)
    for _ in range(max(0, warmup)):
        fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
