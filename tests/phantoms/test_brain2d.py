import math
import time

import numpy as np
import pytest
import torch
from scipy import stats

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms import brain2d
from spectdl.phantoms.brain2d import LABELS


def test_shapes_dtype_and_default_grid():
    p = brain2d(batch_size=3, seed=1)
    assert p.grid == VoxelGrid((128, 128), 2.0)
    assert p.activity.shape == p.mu_per_cm.shape == p.labels.shape == (3, 1, 128, 128)
    assert p.activity.dtype == torch.float32 and p.labels.dtype == torch.int64
    assert set(torch.unique(p.labels).tolist()) <= set(LABELS.values())
    assert p.label_names == LABELS and len(p.info["seeds"]) == 3
    assert brain2d(batch_size=1, seed=1, dtype=torch.float64).activity.dtype == torch.float64


def test_every_label_region_holds_the_preset_values_without_antialiasing():
    p = brain2d(batch_size=6, seed=7, antialias=False)
    act, mu, lab = p.activity, p.mu_per_cm, p.labels
    water, bone = mu_per_cm("water", 140.0), mu_per_cm("bone", 140.0)
    assert bool((act[lab == 0] == 0).all()) and bool((mu[lab == 0] == 0).all())
    assert bool((act[lab == 1] == 1).all()) and bool((act[lab == 2] == 1).all())
    torch.testing.assert_close(mu[lab == 1], torch.full_like(mu[lab == 1], water))
    torch.testing.assert_close(mu[lab == 3], torch.full_like(mu[lab == 3], water))
    torch.testing.assert_close(mu[lab == 2], torch.full_like(mu[lab == 2], bone))
    for b in range(6):
        hot = act[b][lab[b] == 3]
        values = p.info["region_activity"][b][: int(p.info["n_regions"][b])].float()
        assert int(p.info["n_regions"][b]) >= 1 and hot.numel() > 0
        # Each hot pixel holds one of its sample's region activities, all in [3, 9].
        assert bool((hot[:, None] - values[None, :]).abs().min(1).values.max() < 1e-5)
        assert bool(((values >= 3) & (values <= 9)).all())


def test_head_area_matches_pi_a_b():
    # Anti-aliased edges: the summed coverage is the ellipse area (analytic), to ~0.02 %.
    p = brain2d(batch_size=8, seed=3, n_regions=0)
    area = p.activity.sum((1, 2, 3)).double() * 4.0  # 2 mm pixels
    ab = p.info["head_semi_axes_mm"]
    torch.testing.assert_close(area, math.pi * ab[:, 0] * ab[:, 1], rtol=1e-3, atol=0)
    ring = (p.mu_per_cm - mu_per_cm("water", 140.0) * (p.activity > 0)).clamp_min(0)
    assert float(ring.max()) > 0.05  # the skull is bone


def test_blob_area_matches_its_fourier_radius():
    # A star-shaped blob r(φ) = r0 (1 + Σ α_k cos(kφ − φ_k)) has area π r0² (1 + Σ α_k² / 2).
    p = brain2d(batch_size=40, seed=11, n_regions=1)
    checked, errors = 0, []
    for b in range(40):
        amp = p.info["region_harmonics"][b, 0, :, 0]
        r0 = float(p.info["region_radius_mm"][b, 0])
        reach = r0 * (1 + float(amp.sum()))
        centre = p.info["region_centre_mm"][b, 0]
        head_c, (a, bb) = p.info["head_centre_mm"][b], p.info["head_semi_axes_mm"][b]
        theta = math.radians(float(p.info["head_angle_deg"][b]))
        t = float(p.info["skull_thickness_mm"][b])
        phi = torch.linspace(0, 2 * math.pi, 90, dtype=torch.float64)
        px = centre[0] + (reach + 3) * torch.cos(phi) - head_c[0]
        py = centre[1] + (reach + 3) * torch.sin(phi) - head_c[1]
        u = px * math.cos(theta) + py * math.sin(theta)
        v = -px * math.sin(theta) + py * math.cos(theta)
        if float(((u / (a - t)) ** 2 + (v / (bb - t)) ** 2).max()) > 1:
            continue  # the blob is clipped by the skull; its area is not the analytic one
        value = float(p.info["region_activity"][b, 0])
        mask = (p.labels[b] == 1) | (p.labels[b] == 3)
        measured = float((p.activity[b][mask] - 1).sum()) / (value - 1) * 4.0
        expected = math.pi * r0**2 * (1 + float((amp**2).sum()) / 2)
        errors.append(measured / expected - 1)
        checked += 1
    assert checked >= 10 and max(abs(e) for e in errors) < 0.025, errors


def test_hot_activity_is_a_gaussian_centred_at_6_clipped_to_3_9():
    p = brain2d(batch_size=400, seed=5, n_regions=(5, 5))
    v = p.info["region_activity"].flatten().numpy()
    n = v.size
    p_clip = stats.norm.cdf(-2.0)  # N(6, 1.5) below 3 or above 9
    se = math.sqrt(p_clip * (1 - p_clip) / n)
    assert abs(np.mean(v == 3.0) - p_clip) < 4 * se and abs(np.mean(v == 9.0) - p_clip) < 4 * se
    inner = v[(v > 3) & (v < 9)]
    assert stats.kstest(inner, stats.truncnorm(-2, 2, loc=6, scale=1.5).cdf).pvalue > 1e-3


def test_deterministic_and_batch_equivalent():
    a = brain2d(batch_size=5, seed=21)
    b = brain2d(batch_size=5, seed=21)
    assert torch.equal(a.activity, b.activity) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.activity, brain2d(batch_size=5, seed=22).activity)
    alone = brain2d(batch_size=1, seed=a.info["seeds"][3])
    assert torch.equal(alone.activity[0], a.activity[3]) and torch.equal(alone.mu_per_cm[0], a.mu_per_cm[3])
    g1 = brain2d(batch_size=2, generator=torch.Generator().manual_seed(9))
    g2 = brain2d(batch_size=2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(g1.activity, g2.activity)


def test_fast_enough_for_20000_phantoms_in_a_minute():
    # CPU time of this process (all its threads), so that other jobs on a shared machine do not
    # count; on an idle machine with one thread it equals the wall time.
    brain2d(batch_size=64, seed=0)
    best = math.inf
    for rep in range(3):
        t0 = time.process_time()
        brain2d(batch_size=64, seed=rep)
        best = min(best, (time.process_time() - t0) / 64)
    assert best * 20000 < 60.0, f"{best * 1e3:.2f} ms of CPU per phantom"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(grid=VoxelGrid((32, 32, 32), 2.0)), GeometryError, "grid: expected a 2-D VoxelGrid"),
        (dict(grid=VoxelGrid((64, 64), 2.0)), GeometryError, "grid: a head reaching"),
        (dict(hot_range=(0.5, 9.0)), InputError, "hot_range"),
        (dict(n_regions=(-1, 2)), InputError, "n_regions"),
        (dict(batch_size=0), InputError, "batch_size"),
        (dict(roughness=0.8), InputError, "roughness"),
        (dict(energy_kev=1000.0), InputError, "energy_kev"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        brain2d(seed=0, **kwargs)
