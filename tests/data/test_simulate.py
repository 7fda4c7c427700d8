import errno
import json
import math
import weakref

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

import spectdl.data.simulation as sim
from spectdl.data import ShardWriteError, read_sample, regenerate, simulate, verify_shards
from spectdl.errors import InputError, SpectdlError

from .conftest import tiny_config


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_identical_bytes_whatever_the_number_of_workers(tiny_run, tmp_path):
    again = simulate(tiny_config(), tmp_path / "again", workers=1, progress=False)
    pooled = simulate(tiny_config(), tmp_path / "pooled", workers=2, progress=False)
    assert pooled.workers == 2
    reference = _files(tiny_run.out_dir)
    assert sorted(reference) == ["manifest.json", "shard-00000.h5", "shard-00001.h5"]
    assert _files(again.out_dir) == reference
    assert _files(pooled.out_dir) == reference
    other = simulate(tiny_config(seed=4), tmp_path / "other", workers=1, progress=False)
    assert _files(other.out_dir)["shard-00000.h5"] != reference["shard-00000.h5"]


def test_regenerate_rebuilds_every_stored_sample_exactly(tiny_run):
    manifest = json.loads(tiny_run.manifest_path.read_text())
    assert len(manifest["samples"]) == 10
    # Index 5: the partial last batch of shard 0; 9: the last sample of the last shard.
    for index in (0, 5, 9):
        stored = read_sample(tiny_run.manifest_path, index)
        again = regenerate(tiny_run.manifest_path, index)
        assert sorted(again) == sorted(stored) == sorted(manifest["keys"])
        for key in stored:
            assert again[key].dtype == stored[key].dtype
            assert torch.equal(again[key], stored[key]), key
    assert verify_shards(tiny_run.out_dir) == []


def test_manifest_records_seeds_layout_and_splits(tiny_run):
    m = json.loads(tiny_run.manifest_path.read_text())
    assert [s["count"] for s in m["shards"]] == [6, 4]
    assert m["splits"] == {"train": [0, 6], "val": [6, 8], "test": [8, 10]}
    rec = m["samples"][7]
    assert (rec["shard"], rec["row"], rec["batch"], rec["split"]) == (1, 1, 0, "val")
    # The phantom seed regenerates the phantom alone (the phantoms' own seeding rule).
    from spectdl.geometry import VoxelGrid
    from spectdl.phantoms import brain2d

    ph = brain2d(VoxelGrid((32, 32), 8.0), 1, seed=rec["phantom_seed"])
    assert torch.allclose(ph.activity[0], read_sample(tiny_run.out_dir, 7, ["activity"])["activity"], atol=1e-6)
    assert rec["params"]["n_regions"] == int(ph.info["n_regions"][0])
    assert len({r["noise_seed"] for r in m["samples"]}) == 10
    assert all(2.0e4 <= r["total_counts"] <= 1.0e5 for r in m["samples"])


def test_counts_follow_the_poisson_and_thinning_model(tiny_run):
    m = json.loads(tiny_run.manifest_path.read_text())
    z = []
    for rec in m["samples"]:
        s = read_sample(tiny_run.out_dir, rec["index"])
        total = rec["total_counts"]
        assert float(s["expected"].double().sum()) == pytest.approx(total, rel=1e-5)
        full, low = s["counts_full"].double(), s["counts_low"].double()
        assert bool((full == full.round()).all()) and bool((low <= full).all())
        # Σ full ~ Poisson(T); Σ low | Σ full ~ Binomial(Σ full, 1/4): standardised, both ~ N(0, 1).
        n = float(full.sum())
        z += [(n - total) / math.sqrt(total), (float(low.sum()) - 0.25 * n) / math.sqrt(n * 0.25 * 0.75)]
    # 20 standard normal scores: their sum of squares is chi-square with 20 degrees of freedom.
    assert sum(v * v for v in z) < stats.chi2.ppf(0.999, len(z))


def test_reconstruction_recovers_the_activity_in_count_units(tiny_run):
    m = json.loads(tiny_run.manifest_path.read_text())
    with h5py.File(tiny_run.out_dir / "shard-00000.h5") as f:
        act, rec = f["activity"][:], f["recon_full"][:]
        scale = f["scale"][:]
    assert np.array_equal(scale, [r["scale"] for r in m["samples"][:6]])
    for b in range(6):
        r = np.corrcoef(act[b].ravel(), rec[b].ravel())[0, 1]
        assert r > 0.8
        # OSEM preserves the total activity seen through attenuation only roughly; within a factor 2.
        ratio = rec[b].sum() / (act[b].sum() * scale[b])
        assert 0.5 < ratio < 2.0


def test_only_one_batch_is_alive_at_a_time(tmp_path, monkeypatch):
    """Structural flat-memory check: every batch is freed before the next one is made."""
    real = sim.simulate_batch
    alive: list[weakref.ref] = []
    sizes = []

    def spy(*args, **kwargs):
        assert all(ref() is None for ref in alive), "an earlier batch is still referenced"
        out = real(*args, **kwargs)
        alive.extend(weakref.ref(t) for t in out["arrays"].values())
        sizes.append(args[4])
        return out

    monkeypatch.setattr(sim, "simulate_batch", spy)
    simulate(tiny_config(n_samples=13, recon=None, batch_size=3), tmp_path / "run", workers=1, progress=False)
    assert sizes == [3, 3, 3, 3, 1]  # shards of 6, 6, 1 in batches of at most 3
    assert len(alive) == 5 * 6  # activity, mu_per_cm, labels, expected, counts_full, counts_low
    assert all(ref() is None for ref in alive)


def test_disk_full_leaves_no_partial_shard_and_names_it(tmp_path, monkeypatch):
    real = h5py.Dataset.__setitem__
    calls = {"n": 0}

    def full_disk(self, key, value):
        if "shard-00001" in self.file.filename:
            calls["n"] += 1
            if calls["n"] > 3:  # the disk fills up after a few writes into the second shard
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full_disk)
    out = tmp_path / "run"
    with pytest.raises(ShardWriteError) as err:
        simulate(tiny_config(recon=None), out, workers=1, progress=False)
    assert isinstance(err.value, SpectdlError) and isinstance(err.value, OSError)
    assert err.value.errno == errno.ENOSPC
    assert str(out / "shard-00001.h5") in str(err.value)
    names = sorted(p.name for p in out.iterdir())
    assert calls["n"] == 4
    assert names == ["shard-00000.h5"]  # the finished shard stays; no temporary, no manifest
    monkeypatch.undo()
    with h5py.File(out / "shard-00000.h5") as f:
        assert f["index"][:].tolist() == list(range(6))


def test_existing_output_is_kept_unless_overwrite(tiny_run, tmp_path):
    with pytest.raises(InputError, match="already holds a simulation"):
        simulate(tiny_config(), tiny_run.out_dir, workers=1, progress=False)
    with pytest.raises(InputError, match="workers"):
        simulate(tiny_config(), tmp_path / "x", workers=0, progress=False)


def test_regenerate_rejects_bad_indices(tiny_run):
    with pytest.raises(InputError, match=r"index: expected an integer in \[0, 10\)"):
        regenerate(tiny_run.manifest_path, 10)


def test_planar_phantom_with_progress_bar(tmp_path):
    cfg = dict(
        phantom="wholebody_planar",
        grid={"shape": [220, 64], "voxel_size_mm": 9.0},
        n_samples=3, batch_size=2, shard_size=3,
        counts={"total": 1.0e5, "levels": {"full": 1.0, "half": 0.5}},
        compression="gzip",
    )
    res = simulate(cfg, tmp_path / "planar", workers=1, progress=True)
    s = read_sample(res.manifest_path, 2)
    assert s["expected"].shape == (2, 220, 64)  # anterior and posterior as channels
    assert s["lesion_mask"].dtype == torch.uint8
    assert float(s["expected"].double().sum()) == pytest.approx(1.0e5, rel=1e-5)
    again = regenerate(res.manifest_path, 2)
    assert all(torch.equal(again[k], s[k]) for k in s)


def test_3d_phantom_projects_to_axial_sinograms_and_regenerates(tmp_path):
    cfg = dict(phantom="nema_iec", grid={"shape": [40, 40, 24], "voxel_size_mm": 8.0}, n_samples=2,
               batch_size=2, orbit={"n_angles": 16}, counts={"total": 1.0e5}, phantom_kwargs={"jitter_mm": 5.0},
               recon={"iterations": 1, "subsets": 4})
    res = simulate(cfg, tmp_path / "nema", workers=1, progress=False)
    s = read_sample(res.manifest_path, 1)
    assert s["counts_full"].shape == (1, 16, 40, 24) and s["recon_full"].shape == (1, 40, 40, 24)
    again = regenerate(res.manifest_path, 1)
    assert all(torch.equal(again[k], s[k]) for k in s)


def test_counts_from_injected_activity_follow_expected_counts(tmp_path):
    """counts.activity: without attenuation or blur (whose axial tails leave a torso that fills the grid's z) the
    projector conserves counts per view, so the expected total is
    n_views · A · S · t exactly, with A = injected · fraction · Σx / Σ_region x computed from the phantom."""
    from spectdl.data.simulation import sample_phantom

    act = {"injected_mbq": 800.0, "region": "myocardium", "uptake_fraction": 0.012,
           "sensitivity_cps_per_mbq": 79.0, "time_per_view_s": [20.0, 25.0]}
    cfg = dict(phantom="cardiac", grid={"shape": [30, 30, 24], "voxel_size_mm": 16.0}, n_samples=3, batch_size=3,
               shard_size=3, orbit={"n_angles": 6, "radius_mm": 250.0, "arc_deg": 180.0, "start_deg": 45.0},
               collimator=None, attenuation=False,
               counts={"activity": act, "levels": {"full": 1.0, "half": 0.5}},
               store=["activity", "labels", "expected", "counts"], splits={"test": 1.0})
    run = simulate(cfg, tmp_path / "run", workers=1, progress=False)
    manifest = json.loads(run.manifest_path.read_text())
    times = []
    for i in range(3):
        ph = sample_phantom(run.manifest_path, i)
        x = ph.activity.double()
        region = x[ph.labels == ph.label_names["myocardium"]].sum()
        mbq = 800.0 * 0.012 * float(x.sum() / region)
        params = manifest["samples"][i]["params"]
        t = params["time_per_view_s"]
        assert 20.0 <= t <= 25.0 and params["activity_in_field_mbq"] == pytest.approx(mbq, rel=1e-9)
        expected = read_sample(run.manifest_path, i)["expected"].double()
        assert float(expected.sum()) == pytest.approx(6 * mbq * 79.0 * t, rel=1e-5)
        assert manifest["samples"][i]["total_counts"] == pytest.approx(float(expected.sum()), rel=1e-6)
        times.append(t)
    assert len(set(times)) == 3  # drawn per sample
    stored = read_sample(run.manifest_path, 1)
    again = regenerate(run.manifest_path, 1)
    assert torch.equal(stored["counts_half"], again["counts_half"])


def test_counts_from_activity_are_checked(tmp_path):
    from spectdl.data import load_simulation_config
    from spectdl.errors import ConfigError

    base = dict(phantom="cardiac", counts={"activity": {"region": "nowhere"}}, n_samples=1, batch_size=1,
                shard_size=1, grid={"shape": [24, 24, 24], "voxel_size_mm": 16.0}, orbit={"n_angles": 4},
                splits={"test": 1.0})
    with pytest.raises(SpectdlError, match="nowhere"):
        simulate(base, tmp_path / "a", workers=1, progress=False)
    with pytest.raises(ConfigError, match="total"):
        load_simulation_config({**base, "counts": {"total": 1e6, "activity": {}}})
    with pytest.raises(ConfigError, match="uptake_fraction"):
        load_simulation_config({**base, "counts": {"activity": {"uptake_fraction": 1.5}}})
    with pytest.raises(ConfigError, match="time_per_view_s"):
        load_simulation_config({**base, "counts": {"activity": {"time_per_view_s": [25, 20]}}})
    with pytest.raises(ConfigError, match="resolution"):
        load_simulation_config({**base, "resolution": {"fwhm_mm": 2.0}})
    with pytest.raises(ConfigError, match="resolution"):
        load_simulation_config({**base, "collimator": None, "resolution": {"fwhm_mm": 7.6}})


def test_planar_views_take_the_collimator_response_at_their_distances(tmp_path):
    from spectdl.geometry import Collimator
    from spectdl.physics.psf import planar_response

    base = dict(phantom="wholebody_planar", grid={"shape": [220, 64], "voxel_size_mm": 9.0}, n_samples=2,
                batch_size=2, shard_size=2, counts={"total": 1.0e5}, store=["expected"])
    ideal = read_sample(simulate(base, tmp_path / "ideal", progress=False).manifest_path, 1)["expected"]
    blurred = read_sample(simulate({**base, "planar_distance_mm": [130.0, 110.0]}, tmp_path / "lehr",
                                   progress=False).manifest_path, 1)["expected"]
    # The same phantom, blurred view by view; the total is still the configured count level.
    expect = planar_response(ideal[None].double(), Collimator.preset("LEHR"), [130.0, 110.0], 9.0)[0]
    expect *= 1.0e5 / float(expect.sum())
    assert torch.allclose(blurred.double(), expect, rtol=1e-4, atol=1e-6 * float(expect.max()))
    assert float(blurred.double().sum()) == pytest.approx(1.0e5, rel=1e-5)
    assert float(blurred.max()) < float(ideal.max())
    with pytest.raises(Exception, match="planar_distance_mm: needs a collimator"):
        simulate({**base, "planar_distance_mm": [130.0, 110.0], "collimator": None}, tmp_path / "x", progress=False)


def _fov_config(**kw):
    return dict(phantom="cardiac", phantom_kwargs={"tracer": "rbc", "centre_on_heart": True},
                grid={"shape": [112, 112, 50], "voxel_size_mm": 4.0}, fov={"shape": [60, 60, 40]},
                n_samples=2, batch_size=2, shard_size=2, orbit={"n_angles": 12, "radius_mm": 250.0},
                counts={"total": 1.0e6}, store=["activity", "mu_per_cm", "labels", "expected", "counts"], **kw)


def test_a_field_of_view_keeps_the_central_bins_of_the_whole_body_projection(tmp_path):
    from spectdl.data.simulation import sample_phantom, simulation_projector
    from spectdl.geometry import Collimator, Orbit, VoxelGrid
    from spectdl.phantoms import cardiac
    from spectdl.physics import SpectProjector

    res = simulate(_fov_config(recon={"iterations": 1, "subsets": 4}), tmp_path / "fov", progress=False)
    s = read_sample(res.manifest_path, 1)
    assert s["activity"].shape == (1, 60, 60, 40) and s["expected"].shape == (1, 12, 60, 40)
    # Independently: the whole body rendered and projected on the 112² grid, the central 60 bins and
    # 40 rows kept, scaled to the configured total; the stored volumes are the centred crop.
    rec = json.loads(res.manifest_path.read_text())["samples"][1]
    ph = cardiac(VoxelGrid((112, 112, 50), 4.0), 1, seed=rec["phantom_seed"], tracer="rbc", centre_on_heart=True)
    proj = SpectProjector(VoxelGrid((112, 112, 50), 4.0), Orbit.circular(12, 250.0), Collimator.preset("LEHR"),
                          ph.mu_per_cm)
    y = proj.A(ph.activity.double())[..., 26:86, 5:45]
    assert torch.allclose(s["expected"].double(), (y * 1.0e6 / y.sum())[0], rtol=1e-4, atol=1e-3)
    assert torch.equal(s["activity"], ph.activity[0, :, 26:86, 26:86, 5:45].float())
    # The body outside the field projects into it: more counts than the field's own activity gives
    # (both through the whole body's attenuation).
    in_field = torch.zeros_like(ph.activity, dtype=torch.float64)
    in_field[..., 26:86, 26:86, 5:45] = ph.activity.double()[..., 26:86, 26:86, 5:45]
    assert float(y.sum()) > 1.05 * float(proj.A(in_field)[..., 26:86, 5:45].sum())
    small = SpectProjector(VoxelGrid((60, 60, 40), 4.0), Orbit.circular(12, 250.0), Collimator.preset("LEHR"),
                           ph.mu_per_cm[..., 26:86, 26:86, 5:45])
    inside = small.A(ph.activity.double()[..., 26:86, 26:86, 5:45])
    # The stored data's system model is the field's, and the re-rendered phantom is cropped alike.
    fov_proj = simulation_projector(res.manifest_path, s["mu_per_cm"][None])
    assert tuple(fov_proj.grid.shape) == (60, 60, 40)
    assert torch.allclose(fov_proj.A(s["activity"][None].double()).float(), inside.float(), rtol=1e-4, atol=1e-6)
    # OSEM reconstructs the field from the field's bins (a truncated reconstruction).
    from spectdl.recon import osem

    assert torch.allclose(s["recon_full"][None], osem(s["counts_full"][None], fov_proj, 1, 4).float(), rtol=1e-4,
                          atol=1e-5 * float(s["recon_full"].max()))
    again = sample_phantom(res.manifest_path, 1)
    assert tuple(again.grid.shape) == (60, 60, 40) and torch.equal(again.labels[0], s["labels"].to(again.labels.dtype))


def test_a_field_of_view_is_checked_against_the_grid():
    from spectdl.data.config import SimulationConfig
    from spectdl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"fov.shape: \[61, 61, 40\] does not fit centred"):
        SimulationConfig.from_dict(_fov_config() | {"fov": {"shape": [61, 61, 40]}})
    with pytest.raises(ConfigError, match="orbit.radius_mm: a field of view needs an explicit radius"):
        SimulationConfig.from_dict(_fov_config() | {"orbit": {"n_angles": 12}})
    with pytest.raises(ConfigError, match="square cross-sections"):
        SimulationConfig.from_dict(_fov_config() | {"fov": {"shape": [60, 40, 40]}})


def test_manifest_records_the_forward_loop_and_regenerate_runs_that_loop(tiny_run, tmp_path, monkeypatch):
    """The compiled (numba) and torch depth loops agree to rounding, not bit for bit, so the
    manifest names the one that made it and :func:`regenerate` runs that one."""
    import numba

    from spectdl.physics import SpectProjector

    assert json.loads(tiny_run.manifest_path.read_text())["forward_loop"] == f"numba {numba.__version__}"
    with monkeypatch.context() as m:
        m.setattr(SpectProjector, "compiled_loop", False)
        torch_run = simulate(tiny_config(), tmp_path / "torch", workers=1, progress=False)
    manifest = json.loads(torch_run.manifest_path.read_text())
    assert manifest["forward_loop"] == "torch"
    a = read_sample(tiny_run.manifest_path, 0)["expected"]
    b = read_sample(torch_run.manifest_path, 0)["expected"]
    assert float((a - b).norm() / b.norm()) < 2e-6
    # A manifest of before the loop was recorded (no key) was made by the torch loop.
    del manifest["forward_loop"]
    torch_run.manifest_path.write_text(json.dumps(manifest))
    for index in (0, 9):
        stored, again = read_sample(torch_run.manifest_path, index), regenerate(torch_run.manifest_path, index)
        assert all(torch.equal(again[k], stored[k]) for k in stored)
    monkeypatch.setattr(sim, "forward_loop", lambda: "torch")  # as where numba is missing
    with pytest.raises(SpectdlError, match=r"manifest\.json: forward_loop is 'numba .*numba is not installed"):
        regenerate(tiny_run.manifest_path, 0)
