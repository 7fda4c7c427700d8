from __future__ import annotations

import pytest

from spectdl.data import simulate


def tiny_config(**changes) -> dict:
    """A 2-D brain simulation small enough to run in about a second: 32×32 pixels of 8 mm, 16 views."""
    cfg = dict(
        phantom="brain2d",
        grid={"shape": [32, 32], "voxel_size_mm": 8.0},
        n_samples=10,
        seed=3,
        batch_size=4,
        shard_size=6,  # shards of 6 = one full batch of 4 and a partial one of 2; last shard 4
        orbit={"n_angles": 16},
        counts={"total": [2.0e4, 1.0e5], "levels": {"full": 1.0, "low": 0.25}},
        recon={"iterations": 2, "subsets": 4},
        store=["activity", "mu_per_cm", "labels", "expected", "counts"],
        splits={"train": 0.6, "val": 0.2, "test": 0.2},
    )
    cfg.update(changes)
    return cfg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One reference simulation (in-process), shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("sim") / "run"
    return simulate(tiny_config(), out, workers=1, progress=False)
