import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from scipy.spatial import ConvexHull

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


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(grid=VoxelGrid((32, 32, 32), 2.0)), GeometryError, "grid: expected a 2-D VoxelGrid"),
        (dict(grid=VoxelGrid((64, 64), 2.0)), GeometryError, "grid: a head reaching"),
        (dict(hot_range=(-0.5, 9.0)), InputError, "hot_range"),
        (dict(head_dents=(-1, 2)), InputError, "head_dents"),
        (dict(head_dents=(1.5, 2)), InputError, "head_dents"),
        (dict(head_dents=17), InputError, "head_dents"),
        (dict(head_dents=1, dent_radius_mm=(0.0, 5.0)), InputError, "dent_radius_mm"),
        (dict(head_dents=1, dent_depth_mm=(0.0, 5.0)), InputError, "dent_depth_mm"),
        (dict(head_dents=1, dent_depth_mm=(10.0, 25.0)), InputError, "dent_depth_mm: .* dent radius"),
        (dict(head_dents=1, dent_radius_mm=(60.0, 70.0), dent_depth_mm=(50.0, 55.0)), InputError,
         "dent_depth_mm: .* semi-axis"),
        (dict(n_regions=(-1, 2)), InputError, "n_regions"),
        (dict(batch_size=0), InputError, "batch_size"),
        (dict(roughness=0.8), InputError, "roughness"),
        (dict(energy_kev=1000.0), InputError, "energy_kev"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        brain2d(seed=0, **kwargs)


# ---------------------------------------------------------------------------------------------
# Out-of-distribution options: concave heads, cold regions, uptake outside [3, 9].

# Values of the convex-only implementation before head_dents and cold regions existed (computed with
# it, then pinned): a default call must keep producing them.
_PINNED = {
    (123, True): dict(
        activity=[5517.014997, 7572.641951, 10242.158635, 7919.584514],
        activity2=[18860.515513, 30552.440058, 48466.538611, 29619.700874],
        mu=[573.330281, 669.886225, 838.892248, 661.015332],
        labels=[[12946, 2733, 317, 388], [12263, 3285, 249, 587], [11370, 3707, 476, 831],
                [12390, 2790, 320, 884]],
        region_activity_0=[6.822717468095712, 3.590605114885159, 7.09208966700885, 6.991375995116725, 0.0],
        semi_axes_0=[79.22239676660682, 55.26731899710584],
    ),
    (7, False): dict(
        activity=[5832.988617, 7214.350631, 5072.240732],
        activity2=[17954.111965, 20935.483337, 9842.806207],
        mu=[618.537855, 763.491441, 713.086246],
        labels=[[12723, 2758, 393, 510], [11714, 3757, 321, 592], [12086, 3779, 369, 150]],
        region_activity_0=[6.6524990027829105, 4.275288918838456, 0.0, 0.0, 0.0],
        semi_axes_0=[76.9845107476601, 60.473874273035314],
    ),
}
_OLD_INFO_KEYS = {
    "seeds", "head_centre_mm", "head_semi_axes_mm", "head_angle_deg", "skull_thickness_mm", "n_regions",
    "region_centre_mm", "region_radius_mm", "region_harmonics", "region_activity", "energy_kev",
}


@pytest.mark.parametrize("seed, antialias", sorted(_PINNED))
def test_default_output_is_the_pinned_convex_only_output(seed, antialias):
    ref = _PINNED[(seed, antialias)]
    p = brain2d(batch_size=len(ref["mu"]), seed=seed, antialias=antialias)
    a, mu = p.activity.double(), p.mu_per_cm.double()
    np.testing.assert_allclose(a.sum((1, 2, 3)).numpy(), ref["activity"], rtol=1e-7)
    np.testing.assert_allclose((a * a).sum((1, 2, 3)).numpy(), ref["activity2"], rtol=1e-7)
    np.testing.assert_allclose(mu.sum((1, 2, 3)).numpy(), ref["mu"], rtol=1e-7)
    counts = [[int((p.labels[b] == k).sum()) for k in range(5)] for b in range(p.batch_size)]
    assert counts == [row + [0] for row in ref["labels"]]  # no cold label without cold regions
    np.testing.assert_allclose(p.info["region_activity"][0].numpy(), ref["region_activity_0"], rtol=1e-12)
    np.testing.assert_allclose(p.info["head_semi_axes_mm"][0].numpy(), ref["semi_axes_0"], rtol=1e-12)
    assert set(p.info) == _OLD_INFO_KEYS  # no dent keys: shards store the same parameters as before


def test_dents_only_bite_the_undented_sample_of_the_same_seed():
    # The dent draws come after all the others: same head, same blobs, same info; only pixels near a
    # dent change, and inside a dent everything is outside.
    kw = dict(batch_size=6, seed=44, antialias=False)
    plain = brain2d(**kw)
    bitten = brain2d(**kw, head_dents=(1, 3))
    for key in _OLD_INFO_KEYS - {"seeds", "energy_kev"}:
        assert torch.equal(plain.info[key], bitten.info[key]), key
    n = bitten.info["n_dents"]
    assert bool(((n >= 1) & (n <= 3)).all())
    assert bitten.info["dent_centre_mm"].shape == (6, 3, 2)
    x = y = (torch.arange(128, dtype=torch.float64) - 63.5) * 2.0
    changed_anywhere = 0
    for b in range(6):
        used = torch.arange(3) < int(n[b])
        c, r = bitten.info["dent_centre_mm"][b], bitten.info["dent_radius_mm"][b]
        assert bool((r[~used] == 0).all()) and bool((bitten.info["dent_depth_mm"][b][~used] == 0).all())
        dx, dy = x[None, :, None] - c[:, None, None, 0], y[None, None, :] - c[:, None, None, 1]
        dist = torch.sqrt(dx * dx + dy * dy)
        gap = torch.where(used[:, None, None], dist - r[:, None, None], torch.tensor(math.inf)).amin(0)
        far = gap > float(bitten.info["skull_thickness_mm"][b]) + 0.01
        assert torch.equal(bitten.activity[b, 0][far], plain.activity[b, 0][far])
        assert torch.equal(bitten.labels[b, 0][far], plain.labels[b, 0][far])
        inside = gap < 0
        assert bool((bitten.activity[b, 0][inside] == 0).all())
        assert bool((bitten.mu_per_cm[b, 0][inside] == 0).all())
        bite = inside & (plain.labels[b, 0] > 0)
        assert int(bite.sum()) > 20  # each head really loses pixels
        changed_anywhere += int((bitten.labels[b] != plain.labels[b]).sum())
    assert changed_anywhere > 0


def _hull_ratio(mask: np.ndarray) -> float:
    """Area of a pixel mask over the area of the convex hull of its pixels' corners."""
    ij = np.argwhere(mask)
    offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    corners = (ij[:, None, :] + offsets[None]).reshape(-1, 2)
    return float(mask.sum()) / ConvexHull(corners).volume


def test_dented_heads_are_not_convex():
    # A fine grid (0.5 mm) so that the staircase of the pixels costs < 1 % of the hull.
    grid = VoxelGrid((512, 512), 0.5)
    convex = brain2d(grid, batch_size=4, seed=3, antialias=False)
    dented = brain2d(grid, batch_size=4, seed=3, antialias=False, head_dents=3, dent_depth_mm=(15.0, 20.0))
    for b in range(4):
        assert _hull_ratio((convex.labels[b, 0] > 0).numpy()) > 0.99
        assert _hull_ratio((dented.labels[b, 0] > 0).numpy()) < 0.97
        # One connected head around one connected brain, and no hole: a dent is a notch.
        lab = dented.labels[b, 0].numpy()
        brain = (lab == LABELS["background"]) | (lab >= LABELS["hot"])
        assert ndimage.label(lab > 0)[1] == 1 and ndimage.label(brain)[1] == 1
        assert ndimage.label(lab == 0)[1] == 1


def test_skull_ring_follows_the_dent():
    # Along each dent's arc inside the head: air just inside the disc, bone at half the skull
    # thickness beyond it, water-filled brain beyond the skull.
    grid = VoxelGrid((512, 512), 0.5)
    p = brain2d(grid, batch_size=4, seed=8, antialias=False, head_dents=(1, 2), n_regions=0)
    bone, water = mu_per_cm("bone", 140.0), mu_per_cm("water", 140.0)
    lab, mu = p.labels[:, 0], p.mu_per_cm[:, 0]
    checked = 0
    for b in range(4):
        t = float(p.info["skull_thickness_mm"][b])
        head_c = p.info["head_centre_mm"][b]
        for j in range(int(p.info["n_dents"][b])):
            c, r = p.info["dent_centre_mm"][b, j], float(p.info["dent_radius_mm"][b, j])
            inward = math.atan2(float(head_c[1] - c[1]), float(head_c[0] - c[0]))
            for dphi in np.linspace(-0.3, 0.3, 7):
                def pixel(dist):
                    px = float(c[0]) + dist * math.cos(inward + dphi)
                    py = float(c[1]) + dist * math.sin(inward + dphi)
                    return round(px / 0.5 + 255.5), round(py / 0.5 + 255.5)

                def near_other_dents(dist):
                    i, k = pixel(dist)
                    pos = torch.tensor([(i - 255.5) * 0.5, (k - 255.5) * 0.5], dtype=torch.float64)
                    others = [q for q in range(int(p.info["n_dents"][b])) if q != j]
                    centres, radii = p.info["dent_centre_mm"][b], p.info["dent_radius_mm"][b]
                    return any(float((pos - centres[q]).norm()) < float(radii[q]) + t + 2 for q in others)

                if near_other_dents(r + t):
                    continue
                i, k = pixel(r - 1.0)
                assert int(lab[b, i, k]) == LABELS["outside"] and float(mu[b, i, k]) == 0.0
                i, k = pixel(r + t / 2)
                assert int(lab[b, i, k]) == LABELS["skull"]
                assert float(mu[b, i, k]) == pytest.approx(bone, rel=1e-6)
                i, k = pixel(r + t + 1.0)
                assert int(lab[b, i, k]) == LABELS["background"]
                assert float(mu[b, i, k]) == pytest.approx(water, rel=1e-6)
                checked += 1
    assert checked >= 10


def test_cold_region_holds_its_value_and_the_background_stays_1():
    kw = dict(batch_size=6, seed=12, n_regions=1, hot_mean=0.4, hot_sd=0.2, hot_range=(0.0, 0.9))
    p = brain2d(**kw)
    values = p.info["region_activity"][:, 0]
    assert bool(((values >= 0) & (values <= 0.9)).all()) and float(values.min()) < float(values.max())
    for b in range(6):
        cx, cy = p.info["region_centre_mm"][b, 0].tolist()
        i, k = round(cx / 2.0 + 63.5), round(cy / 2.0 + 63.5)
        assert float(p.activity[b, 0, i, k]) == pytest.approx(float(values[b]), abs=1e-5)
        assert int(p.labels[b, 0, i, k]) == LABELS["cold"]
    # Pixel centres only: every background pixel is exactly 1, every cold pixel its region's value.
    q = brain2d(**kw, antialias=False)
    lab, act = q.labels[:, 0], q.activity[:, 0]
    assert not bool((lab == LABELS["hot"]).any())
    assert bool((act[lab == LABELS["background"]] == 1).all())
    for b in range(6):
        cold = act[b][lab[b] == LABELS["cold"]]
        assert cold.numel() > 10
        torch.testing.assert_close(cold, torch.full_like(cold, float(values[b])), rtol=0, atol=1e-6)
    # A cold region of activity 0 is a hole in the uptake.
    zero = brain2d(batch_size=2, seed=12, n_regions=1, hot_range=(0.0, 0.0), antialias=False)
    assert bool((zero.activity[zero.labels == LABELS["cold"]] == 0).all())
    assert int((zero.labels == LABELS["cold"]).sum()) > 0


def _star_inside(info, b, k, x, y):
    """Pixel centres inside region ``k`` of sample ``b`` and their distance to its edge (mm)."""
    cx, cy = info["region_centre_mm"][b, k].tolist()
    r0 = float(info["region_radius_mm"][b, k])
    amp, phase = info["region_harmonics"][b, k, :, 0], info["region_harmonics"][b, k, :, 1]
    u, v = x[:, None] - cx, y[None, :] - cy
    r, phi = torch.sqrt(u * u + v * v), torch.atan2(v, u)
    order = torch.arange(1, amp.numel() + 1, dtype=torch.float64)
    terms = amp[:, None, None] * torch.cos(order[:, None, None] * phi - phase[:, None, None])
    radius = r0 * (1 + terms.sum(0))
    return r <= radius, (r - radius).abs()


def test_overlapping_hot_and_cold_regions_take_the_strongest_contrast():
    # Reference: at each brain pixel (centres only) the covering region with the largest |v − 1|
    # sets the value; hot and cold labels follow the winner.
    p = brain2d(batch_size=8, seed=2, n_regions=(4, 6), hot_mean=1.0, hot_sd=3.0, hot_range=(0.0, 9.0),
                antialias=False, dtype=torch.float64)
    x = (torch.arange(128, dtype=torch.float64) - 63.5) * 2.0
    both = 0
    for b in range(8):
        lab = p.labels[b, 0]
        brain = (lab == LABELS["background"]) | (lab >= LABELS["hot"])
        best = torch.zeros(128, 128, dtype=torch.float64)
        n_hot = torch.zeros(128, 128, dtype=torch.int64)
        n_cold = torch.zeros(128, 128, dtype=torch.int64)
        margin = torch.full((128, 128), math.inf, dtype=torch.float64)
        for k in range(int(p.info["n_regions"][b])):
            v = float(p.info["region_activity"][b, k])
            inside, dist = _star_inside(p.info, b, k, x, x)
            margin = torch.minimum(margin, dist)
            delta = inside.to(torch.float64) * (v - 1.0)
            best = torch.where(delta.abs() > best.abs(), delta, best)
            (n_hot if v >= 1 else n_cold).add_(inside.long())
        ok = brain & (margin > 1e-6)
        torch.testing.assert_close(p.activity[b, 0][ok], (1 + best)[ok], rtol=0, atol=1e-12)
        hot_or_bg = torch.where(n_hot > 0, LABELS["hot"], LABELS["background"])
        expected = torch.where(best < 0, LABELS["cold"], hot_or_bg)
        assert torch.equal(lab[ok], expected[ok])
        both += int(((n_hot > 0) & (n_cold > 0) & ok).sum())
    assert both > 0  # the seed does put hot and cold regions on top of each other


@pytest.mark.parametrize("hot_range, hot_mean", [((10.0, 14.0), 12.0), ((1.5, 2.5), 2.0)])
def test_uptake_outside_the_training_range(hot_range, hot_mean):
    p = brain2d(batch_size=8, seed=6, hot_range=hot_range, hot_mean=hot_mean, hot_sd=1.0, antialias=False)
    lo, hi = hot_range
    for b in range(8):
        values = p.info["region_activity"][b][: int(p.info["n_regions"][b])]
        assert bool(((values >= lo) & (values <= hi)).all())
        hot = p.activity[b][p.labels[b] == LABELS["hot"]].double()
        assert hot.numel() > 0
        assert float((hot[:, None] - values[None, :]).abs().min(1).values.max()) < 1e-5
    inside = p.activity[p.labels == LABELS["hot"]]
    assert float(inside.min()) >= lo - 1e-6 and float(inside.max()) <= hi + 1e-6


def test_dents_and_cold_regions_keep_batch_equivalence():
    kw = dict(head_dents=(0, 3), hot_mean=1.0, hot_sd=2.0, hot_range=(0.0, 9.0))
    a = brain2d(batch_size=4, seed=77, **kw)
    alone = brain2d(batch_size=1, seed=a.info["seeds"][2], **kw)
    assert torch.equal(alone.activity[0], a.activity[2]) and torch.equal(alone.labels[0], a.labels[2])
    assert torch.equal(alone.info["dent_centre_mm"][0], a.info["dent_centre_mm"][2])


def test_dent_geometry_is_ignored_without_dents():
    # A small head would not hold the default dents; without dents it must not be rejected.
    small = brain2d(batch_size=1, seed=0, head_semi_axes_mm=((20.0, 25.0), (15.0, 18.0)),
                    region_radius_mm=(3.0, 5.0))
    assert int((small.labels > 0).sum()) > 0
