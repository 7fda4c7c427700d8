import hashlib
import math

import pytest
import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms import cardiac
from spectdl.phantoms import aha
from spectdl.phantoms.cardiac import LABELS, PRESETS, RISK_GROUPS, TERRITORY_ORDER

_SMALL = VoxelGrid((64, 44, 36), 6.0)  # just holds the torso and the heart


def _mean(p, b, name):
    return float(p.activity[b, 0][p.labels[b, 0] == LABELS[name]].mean())


def test_shapes_labels_and_default_grid():
    p = cardiac(batch_size=2, seed=0)
    assert p.grid == VoxelGrid((64, 64, 64), 6.0)
    assert p.activity.shape == p.mu_per_cm.shape == p.labels.shape == (2, 1, 64, 64, 64)
    assert LABELS["gut"] == 7 and LABELS["breasts"] == 8 and p.label_names == LABELS
    for b in range(2):
        present = set(torch.unique(p.labels[b]).tolist())
        # Every organ is on the grid; the gut and breasts only when asked for.
        assert present == set(LABELS.values()) - {LABELS["gut"], LABELS["breasts"]}
    full = cardiac(batch_size=1, seed=0, gut=True, breast_probability=1.0)
    assert set(torch.unique(full.labels).tolist()) == set(LABELS.values())


def test_mpi_regions_hold_the_preset_and_tissue_attenuation():
    p = cardiac(_SMALL, batch_size=3, seed=1, tracer="mpi")
    water, lung = mu_per_cm("water", 140.0), mu_per_cm("lung", 140.0)
    for b in range(3):
        for name, value in PRESETS["mpi"].items():
            region = p.activity[b, 0][p.labels[b, 0] == LABELS[name]]
            torch.testing.assert_close(region, torch.full_like(region, value))
        mu, lab = p.mu_per_cm[b, 0], p.labels[b, 0]
        for name in ("background", "myocardium", "lv_blood", "rv_blood", "liver"):
            region = mu[lab == LABELS[name]]
            torch.testing.assert_close(region, torch.full_like(region, water))
        region = mu[lab == LABELS["lungs"]]
        torch.testing.assert_close(region, torch.full_like(region, lung))
        assert float(mu[lab == 0].abs().max()) == 0.0 and float(p.activity[b, 0][lab == 0].abs().max()) == 0.0


def test_rbc_imbv_on_the_label_map_is_in_range():
    p = cardiac(_SMALL, batch_size=6, seed=2, tracer="rbc")
    for b in range(6):
        imbv = _mean(p, b, "myocardium") / _mean(p, b, "lv_blood")
        assert 0.10 <= imbv <= 0.25
        assert imbv == pytest.approx(float(p.info["imbv"][b]), rel=1e-5)
        assert _mean(p, b, "rv_blood") == pytest.approx(_mean(p, b, "lv_blood"))
    fixed = cardiac(_SMALL, batch_size=2, seed=2, tracer="rbc", imbv=0.2)
    assert _mean(fixed, 1, "myocardium") / _mean(fixed, 1, "lv_blood") == pytest.approx(0.2, rel=1e-5)


@pytest.mark.parametrize("angle", [0.0, 180.0, None])
def test_defect_reduces_mean_myocardial_uptake_by_extent_times_severity(angle):
    extent, severity = 0.25, 0.6
    base = cardiac(batch_size=3, seed=3, tracer="mpi")
    hit = cardiac(batch_size=3, seed=3, tracer="mpi", defect_extent=extent, defect_severity=severity,
                  defect_angle_deg=angle)
    assert torch.equal(base.labels, hit.labels)
    for b in range(3):
        drop = 1 - _mean(hit, b, "myocardium") / _mean(base, b, "myocardium")
        frac = float(hit.info["defect_fraction"][b])
        # Exactly severity × (voxelised defect fraction); that fraction is the extent up to voxels.
        assert drop == pytest.approx(severity * frac, rel=1e-5)
        assert abs(frac - extent) < 0.04
        mask = hit.info["defect_mask"][b, 0]
        inside = hit.activity[b, 0][mask]
        torch.testing.assert_close(inside, torch.full_like(inside, 1 - severity))


def test_defect_sits_at_the_requested_wall():
    # An anterior defect (0°) lies on the LV's anterior side: its voxels are displaced towards +y
    # from the LV axis, an inferior one (180°) the other way.
    for angle, sign in ((0.0, 1.0), (180.0, -1.0)):
        p = cardiac(batch_size=1, seed=4, defect_extent=0.15, defect_angle_deg=angle)
        axes = [(torch.arange(64, dtype=torch.float64) - 31.5) * 6.0] * 3
        X, Y, Z = torch.meshgrid(*axes, indexing="ij")
        m = p.info["defect_mask"][0, 0]
        centroid = torch.stack([X[m].mean(), Y[m].mean(), Z[m].mean()])
        v = centroid - p.info["lv_centre_mm"][0]
        d = p.info["lv_axis"][0]
        perp = v - (v @ d) * d
        assert sign * float(perp[1]) > 5.0


def test_myocardial_volume_matches_the_truncated_shell():
    # Cavity: (u/L)² + (ρ/r)² ≤ 1 for u ≥ −L/2 has volume π r² L (2/3 + 1/2 − 1/24)
    # = 1.125 π r² L.
    # Shell: the same with (L + w, r + w), cut at the same plane, minus the cavity.
    grid = VoxelGrid((120, 84, 68), 3.0)
    p = cardiac(grid, batch_size=2, seed=6)
    for b in range(2):
        L, r, w = (float(p.info[k][b]) for k in ("lv_long_mm", "lv_short_mm", "lv_wall_mm"))
        lo, ro = L + w, r + w
        cavity = 1.125 * math.pi * r * r * L
        outer = math.pi * ro * ro * ((lo - lo / 3) - (-L / 2 + (L / 2) ** 3 / (3 * lo * lo)))
        counts = [int((p.labels[b, 0] == LABELS[n]).sum()) * 27.0 for n in ("lv_blood", "myocardium")]
        assert counts[0] == pytest.approx(cavity, rel=0.03)
        # The RV takes no LV voxels, so the myocardium is the whole shell.
        assert counts[1] == pytest.approx(outer - cavity, rel=0.04)


def test_supersampling_keeps_total_activity():
    grid = _SMALL
    one = cardiac(grid, seed=7, tracer="rbc", imbv=0.15)
    two = cardiac(grid, seed=7, tracer="rbc", imbv=0.15, supersample=2)
    assert float(two.activity.sum()) == pytest.approx(float(one.activity.sum()), rel=0.01)
    assert float(two.mu_per_cm.sum()) == pytest.approx(float(one.mu_per_cm.sum()), rel=0.01)
    # Partial volume: edge voxels hold mixtures.
    assert len(torch.unique(two.activity)) > len(torch.unique(one.activity))


def test_deterministic_and_batch_equivalent():
    grid = _SMALL
    a = cardiac(grid, batch_size=4, seed=8, tracer="rbc")
    assert torch.equal(a.activity, cardiac(grid, batch_size=4, seed=8, tracer="rbc").activity)
    assert not torch.equal(a.labels, cardiac(grid, batch_size=4, seed=9, tracer="rbc").labels)
    alone = cardiac(grid, batch_size=1, seed=a.info["seeds"][2], tracer="rbc")
    assert torch.equal(alone.activity[0], a.activity[2]) and torch.equal(alone.labels[0], a.labels[2])


def test_uptake_override():
    p = cardiac(_SMALL, seed=1, uptake={"liver": 0.0})
    assert float(p.activity[p.labels == LABELS["liver"]].abs().max()) == 0.0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(tracer="fdg"), InputError, "tracer: unknown preset 'fdg'"),
        (dict(defect_extent=1.5), InputError, "defect_extent"),
        (dict(defect_severity=-0.1), InputError, "defect_severity"),
        (dict(imbv=(0.3, 0.1)), InputError, "imbv"),
        (dict(uptake={"spleen": 1.0}), InputError, "uptake: unknown region 'spleen'"),
        (dict(uptake={"liver": -1.0}), InputError, "uptake"),
        (dict(supersample=0), InputError, "supersample"),
        (dict(grid=VoxelGrid((64, 64), 6.0)), GeometryError, "grid: expected a 3-D VoxelGrid"),
        (dict(grid=VoxelGrid((48, 48, 64), 6.0)), GeometryError, "grid: the cardiac torso needs"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        cardiac(seed=0, **kwargs)


# ------------------------------------------------------------------------------------------------
# Perfusion-study options: risk groups (territorial defects), gut, uptake ranges, body scale, breasts

_STUDY = VoxelGrid((64, 64, 64), 6.4)  # the mpi-projection study's grid
_ALL_ON = dict(risk_groups=["healthy", "low", "intermediate", "high"], gut=True,
               uptake_ranges={"liver": [0.4, 1.0], "gut": [0.2, 0.9]}, body_scale=[0.9, 1.1],
               breast_probability=0.3)


def _sha(t):
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


# Computed with the code before these options existed (sha256 prefixes of the raw tensor bytes,
# and float64 sums): the defaults must keep every sample bit for bit.
_BEFORE = [
    (dict(seed=11, batch_size=2), 29369.96036054194, 26582.26230762899,
     "a826a1701a77f37e", "c155bfe25af8029e"),
    (dict(seed=12, tracer="rbc"), 12805.822669282556, 13503.32108721137,
     "73e95f537c6c2dbb", "af063a4f9b1ddeec"),
    (dict(seed=13, defect_extent=0.2, defect_severity=0.5), 13588.420138187706, 12988.459490370005,
     "e5ab5a0b42a2ac1c", "499beaf9245c9e84"),
]


@pytest.mark.parametrize("kwargs, act_sum, mu_sum, act_sha, lab_sha", _BEFORE)
def test_defaults_keep_the_earlier_samples(kwargs, act_sum, mu_sum, act_sha, lab_sha):
    p = cardiac(**kwargs)
    assert float(p.activity.double().sum()) == act_sum
    assert float(p.mu_per_cm.double().sum()) == pytest.approx(mu_sum, rel=1e-12)
    assert _sha(p.activity) == act_sha and _sha(p.labels) == lab_sha
    q = cardiac(**kwargs, risk_groups=None, gut=False, body_scale=1.0, breast_probability=0.0,
                uptake_ranges=None)
    assert torch.equal(p.activity, q.activity) and torch.equal(p.mu_per_cm, q.mu_per_cm)
    assert torch.equal(p.labels, q.labels)
    assert p.info["risk_group"] == ["healthy"] * p.batch_size
    assert not p.info["territory_defect"].any()
    assert float(p.info["segment_defect_fraction"].abs().max()) == 0.0
    # segment_severity holds the sector defect alone here: its voxel-weighted mean over the
    # segments is the mean myocardial reduction, severity × the sector's voxelised fraction.
    seg = p.info["segment_map"].long().reshape(p.batch_size, -1)
    for b in range(p.batch_size):
        n = torch.bincount(seg[b], minlength=18)[1:].double()
        mean = float((p.info["segment_severity"][b] * n).sum() / n.sum())
        sev = kwargs.get("defect_severity", 0.0) if kwargs.get("defect_extent", 0.0) > 0 else 0.0
        assert mean == pytest.approx(sev * float(p.info["defect_fraction"][b]), abs=1e-12)
    assert float(p.info["body_scale"].sub(1.0).abs().max()) == 0.0 and not p.info["breasts"].any()


def _aha_coords(p, b):
    """Independent AHA (t, φ°) of every voxel centre of sample b, from info and the frame rules."""
    axes = [(torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * s
            for n, s in zip(p.grid.shape, p.grid.voxel_size_mm)]
    P = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    c = p.info["lv_centre_mm"][b].double()
    d = p.info["lv_axis"][b].double()
    d = d / d.norm()
    y = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    ant = y - (y @ d) * d
    ant = ant / ant.norm()
    lat = x - (x @ d) * d - (x @ ant) * ant
    lat = lat / lat.norm()
    rel = P - c
    L = float(p.info["lv_long_mm"][b])
    t = (rel @ d + L / 2) / (1.5 * L)
    phi = torch.rad2deg(torch.atan2(rel @ lat, rel @ ant))
    return t, phi


@pytest.mark.parametrize("territory", ["RCA", "LAD"])
def test_one_territorial_defect_lies_in_its_territory_at_the_drawn_depth(territory):
    p = cardiac(batch_size=8, seed=21, risk_groups=["low"], dtype=torch.float64)
    k = TERRITORY_ORDER.index(territory)
    hits = [b for b in range(8) if bool(p.info["territory_defect"][b, k])]
    assert hits, "seed 21 should give this territory in 8 low-risk samples"
    b = hits[0]
    assert p.info["territory_defect"][b].sum() == 1  # low risk: one territory
    sev = float(p.info["territory_severity"][b, k])
    ext = float(p.info["territory_extent"][b, k])
    assert 0.25 <= sev <= 0.40 and 0.3 <= ext <= 0.5
    myo = p.labels[b, 0] == LABELS["myocardium"]
    t, phi = _aha_coords(p, b)
    seg = torch.where(myo, aha.segment_of(t, phi), 0)
    assert int((seg != p.info["segment_map"][b, 0].long()).sum()) == 0
    in_terr = torch.isin(seg, torch.tensor(aha.TERRITORIES[territory]))
    expected = myo & in_terr & (t >= 1 - ext)
    mask = p.info["defect_mask"][b, 0]
    assert torch.equal(mask, expected)
    assert int(mask.sum()) > 20
    # Every defect voxel is in one of the territory's segments; only the LAD holds the apical cap.
    assert set(torch.unique(seg[mask]).tolist()) <= set(aha.TERRITORIES[territory])
    assert bool((seg[mask] == 17).any()) == (territory == "LAD")
    act = p.activity[b, 0]
    torch.testing.assert_close(act[mask], torch.full_like(act[mask], 1 - sev), rtol=1e-12, atol=0)
    assert float(act[myo & ~mask].min()) == float(act[myo & ~mask].max()) == 1.0
    assert float(act[mask].mean()) / 1.0 == pytest.approx(1 - sev, rel=1e-12)
    # Per-segment summaries against the independent masks.
    for s in range(1, 18):
        n = int((seg == s).sum())
        frac = int((mask & (seg == s)).sum()) / n
        assert float(p.info["segment_defect_fraction"][b, s - 1]) == pytest.approx(frac, abs=1e-12)
        assert float(p.info["segment_severity"][b, s - 1]) == pytest.approx(frac * sev, abs=1e-9)
    assert float(p.info["defect_fraction"][b]) == pytest.approx(int(mask.sum()) / int(myo.sum()))


def test_segment_map_covers_the_myocardium_with_all_17_segments():
    p = cardiac(batch_size=3, seed=22)
    assert p.info["segment_map"].dtype == torch.int8 and p.info["segment_map"].shape == p.labels.shape
    for b in range(3):
        seg = p.info["segment_map"][b, 0].long()
        myo = p.labels[b, 0] == LABELS["myocardium"]
        assert int(seg[~myo].abs().sum()) == 0
        assert int(seg[myo].min()) >= 1 and int(seg[myo].max()) <= 17
        assert set(torch.unique(seg[myo]).tolist()) == set(range(1, 18))
        # Rings of the model: the apex (17) sits beyond the cavity, the basal ring at the base.
        t, phi = _aha_coords(p, b)
        assert float(t[myo & (seg == 17)].min()) > 1.0
        assert float(t[myo & (seg <= 6)].max()) < 1 / 3 + 1e-6


def test_risk_groups_follow_the_table():
    groups = ["healthy", "low", "intermediate", "high"]
    p = cardiac(_SMALL, batch_size=40, seed=23, risk_groups=groups)
    names = p.info["risk_group"]
    assert set(names) == set(groups)
    assert [groups[i] for i in p.info["risk_group_index"].tolist()] == names
    on, sev, ext = p.info["territory_defect"], p.info["territory_severity"], p.info["territory_extent"]
    assert on.shape == sev.shape == ext.shape == (40, 3) and sev.dtype == torch.float64
    chosen = set()
    for b, name in enumerate(names):
        spec = RISK_GROUPS[name]
        n = int(on[b].sum())
        assert spec["territories"][0] <= n <= spec["territories"][1]
        assert float(sev[b][~on[b]].abs().sum()) == 0.0 and float(ext[b][~on[b]].abs().sum()) == 0.0
        for k in torch.nonzero(on[b]).flatten().tolist():
            chosen.add(k)
            assert spec["severity"][0] <= float(sev[b, k]) <= spec["severity"][1]
            assert spec["extent"][0] <= float(ext[b, k]) <= spec["extent"][1]
        myo = p.activity[b, 0][p.labels[b, 0] == LABELS["myocardium"]]
        if name == "healthy":
            assert n == 0 and float(myo.min()) == 1.0 and not p.info["defect_mask"][b].any()
            assert float(p.info["segment_defect_fraction"][b].abs().max()) == 0.0
        else:
            # The reduced uptakes are exactly 1 − severity of the affected territories.
            lows = set(round(x, 5) for x in torch.unique(myo).tolist()) - {1.0}
            assert lows == {round(1 - float(sev[b, k]), 5) for k in torch.nonzero(on[b]).flatten().tolist()}
    assert chosen == {0, 1, 2}
    assert RISK_GROUPS["healthy"]["territories"] == (0, 0) and RISK_GROUPS["high"]["territories"] == (1, 2)


def test_batch_equivalence_with_every_new_option():
    a = cardiac(_STUDY, batch_size=3, seed=24, defect_extent=0.1, **_ALL_ON)
    for b in (2,):
        alone = cardiac(_STUDY, batch_size=1, seed=a.info["seeds"][b], defect_extent=0.1, **_ALL_ON)
        assert torch.equal(alone.activity[0], a.activity[b]) and torch.equal(alone.labels[0], a.labels[b])
        assert torch.equal(alone.mu_per_cm[0], a.mu_per_cm[b])
        assert torch.equal(alone.info["segment_map"][0], a.info["segment_map"][b])
        assert alone.info["risk_group"][0] == a.info["risk_group"][b]
        for key in ("territory_defect", "territory_severity", "segment_severity", "body_scale", "breasts"):
            assert torch.equal(alone.info[key][0], a.info[key][b])
        for name in ("liver", "gut"):
            assert float(alone.info["uptake"][name][0]) == float(a.info["uptake"][name][b])


def test_gut_below_the_heart_and_uptake_ranges():
    off = cardiac(batch_size=4, seed=25)
    on = cardiac(batch_size=4, seed=25, gut=True, uptake_ranges={"liver": [0.4, 1.0], "gut": (0.2, 0.9)})
    assert not (off.labels == LABELS["gut"]).any()
    z = (torch.arange(64, dtype=torch.float64) - 31.5) * 6.0
    water = mu_per_cm("water", 140.0)
    seen = {"liver": [], "gut": []}
    for b in range(4):
        gut = on.labels[b, 0] == LABELS["gut"]
        assert int(gut.sum()) * 0.216 > 30  # more than 30 cm³ of bowel
        zs = z[None, None, :].expand(64, 64, 64)[gut]
        assert float(zs.mean()) < float(on.info["lv_centre_mm"][b, 2]) - 60
        # The gut takes neither heart nor liver voxels.
        for name in ("myocardium", "lv_blood", "rv_blood", "liver"):
            assert torch.equal(on.labels[b, 0] == LABELS[name], off.labels[b, 0] == LABELS[name])
        torch.testing.assert_close(on.mu_per_cm[b, 0][gut], torch.full_like(on.mu_per_cm[b, 0][gut], water))
        for name, (lo, hi) in (("liver", (0.4, 1.0)), ("gut", (0.2, 0.9))):
            value = float(on.info["uptake"][name][b])
            assert lo <= value <= hi
            seen[name].append(value)
            region = on.activity[b, 0][on.labels[b, 0] == LABELS[name]]
            torch.testing.assert_close(region, torch.full_like(region, value))
    assert all(len(set(v)) == 4 for v in seen.values())  # drawn per sample
    assert float(on.info["uptake"]["lungs"][0]) == PRESETS["mpi"]["lungs"]
    # The preset's gut concentration when no range is given, and for "rbc".
    assert PRESETS["mpi"]["gut"] == 0.5 and PRESETS["rbc"]["gut"] == 0.1
    fixed = cardiac(_SMALL, seed=25, gut=True)
    assert float(fixed.info["uptake"]["gut"][0]) == 0.5
    # rbc: a range on the LV blood keeps the drawn IMBV ratio.
    rbc = cardiac(_SMALL, batch_size=3, seed=26, tracer="rbc", uptake_ranges={"lv_blood": (2.0, 3.0)})
    for b in range(3):
        assert 2.0 <= _mean(rbc, b, "lv_blood") <= 3.0
        assert 0.10 <= _mean(rbc, b, "myocardium") / _mean(rbc, b, "lv_blood") <= 0.25


def test_body_scale_scales_the_torso_only():
    base = cardiac(_STUDY, batch_size=3, seed=27)
    scaled = cardiac(_STUDY, batch_size=3, seed=27, body_scale=(0.9, 1.1))
    s = scaled.info["body_scale"]
    assert float(s.min()) >= 0.9 and float(s.max()) <= 1.1 and len(set(s.tolist())) == 3
    torch.testing.assert_close(scaled.info["torso_semi_axes_mm"],
                               base.info["torso_semi_axes_mm"] * s[:, None])
    torch.testing.assert_close(scaled.info["lv_centre_mm"], base.info["lv_centre_mm"])
    for b in range(3):
        for name in ("myocardium", "lv_blood", "rv_blood"):
            assert torch.equal(scaled.labels[b, 0] == LABELS[name], base.labels[b, 0] == LABELS[name])
        # The body's cross-section on the grid: π a b (both axes scaled).
        a_mm, b_mm = scaled.info["torso_semi_axes_mm"][b].tolist()
        area = float((scaled.labels[b, 0, :, :, 32] > 0).sum()) * 6.4**2
        assert area == pytest.approx(math.pi * a_mm * b_mm, rel=0.02)
    fixed = cardiac(_STUDY, seed=27, body_scale=1.05)
    torch.testing.assert_close(fixed.info["torso_semi_axes_mm"], base.info["torso_semi_axes_mm"][:1] * 1.05)
    # 360 mm holds the widest torso at scale 1 but not at 1.1.
    narrow = VoxelGrid((60, 44, 36), 6.0)
    cardiac(narrow, seed=0)
    with pytest.raises(GeometryError, match="along x"):
        cardiac(narrow, seed=0, body_scale=(0.9, 1.1))


def test_breasts_add_anterior_soft_tissue():
    none = cardiac(batch_size=2, seed=28, breast_probability=0.0)
    both = cardiac(batch_size=2, seed=28, breast_probability=1.0)
    assert not none.info["breasts"].any() and both.info["breasts"].all()
    assert not (none.labels == LABELS["breasts"]).any()
    y = (torch.arange(64, dtype=torch.float64) - 31.5) * 6.0
    Y = y[None, :, None].expand(64, 64, 64)
    water = mu_per_cm("water", 140.0)
    for b in range(2):
        br = both.labels[b, 0] == LABELS["breasts"]
        was = none.labels[b, 0][br]
        assert int(br.sum()) > 500 and float(Y[br].min()) > 0
        assert set(torch.unique(was).tolist()) <= {LABELS["outside"], LABELS["background"]}
        added = int((was == LABELS["outside"]).sum())
        assert added > 200  # they stick out of the torso
        gain = float(both.mu_per_cm[b].double().sum() - none.mu_per_cm[b].double().sum())
        assert gain == pytest.approx(added * water, rel=1e-5)
        region = both.activity[b, 0][br]
        torch.testing.assert_close(region, torch.full_like(region, PRESETS["mpi"]["background"]))
        # Everything else is unchanged.
        assert torch.equal(both.labels[b, 0][~br], none.labels[b, 0][~br])
    some = cardiac(_STUDY, batch_size=12, seed=29, breast_probability=0.3, body_scale=(0.9, 1.1))
    flags = some.info["breasts"]
    assert 0 < int(flags.sum()) < 12
    for b in range(12):
        assert bool((some.labels[b] == LABELS["breasts"]).any()) == bool(flags[b])
    with pytest.raises(GeometryError, match="along y"):
        cardiac(_SMALL, seed=0, breast_probability=0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(risk_groups=["healthy", "sick"]), "risk_groups: unknown group 'sick'"),
        (dict(risk_groups="low"), "risk_groups"),
        (dict(risk_groups=[]), "risk_groups"),
        (dict(uptake_ranges={"spleen": (0.1, 0.2)}),
         "uptake_ranges: unknown region 'spleen'; expected some of"),
        (dict(uptake_ranges={"liver": (0.9, 0.1)}), r"uptake_ranges\['liver'\]"),
        (dict(uptake_ranges={"liver": (-1.0, 0.1)}), r"uptake_ranges\['liver'\]"),
        (dict(uptake_ranges={"liver": (0.1, 0.2, 0.3)}), r"uptake_ranges\['liver'\]"),
        (dict(uptake_ranges=[0.1, 0.2]), "uptake_ranges"),
        (dict(uptake={"liver": 0.5}, uptake_ranges={"liver": (0.1, 0.2)}), "uptake_ranges: region 'liver'"),
        (dict(breast_probability=1.5), "breast_probability"),
        (dict(breast_probability=-0.1), "breast_probability"),
        (dict(body_scale=(1.1, 0.9)), "body_scale"),
        (dict(body_scale=0.0), "body_scale"),
        (dict(gut="yes"), "gut"),
    ],
)
def test_bad_perfusion_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        cardiac(seed=0, **kwargs)


def test_segment_map_uses_the_reorientation_conventions():
    # t and φ as spectdl.cardiac.orientation reads a phantom (base −L/2, cavity end L, apex L + w).
    reorient = pytest.importorskip("spectdl.cardiac.orientation")
    p = cardiac(batch_size=2, seed=30, dtype=torch.float64)
    axes = [(torch.arange(64, dtype=torch.float64) - 31.5) * 6.0] * 3
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).numpy()
    for b in range(2):
        lv = reorient.lv_geometry_from_phantom(p, b)
        L, w = float(p.info["lv_long_mm"][b]), float(p.info["lv_wall_mm"][b])
        assert (lv.base_mm, lv.cavity_end_mm, lv.apex_mm) == pytest.approx((-L / 2, L, L + w))
        u, a, l = lv.coords(pts)
        seg = aha.segment_of(torch.from_numpy(lv.t_of(u)), torch.rad2deg(torch.atan2(torch.from_numpy(l),
                                                                                     torch.from_numpy(a))))
        myo = p.labels[b, 0] == LABELS["myocardium"]
        mismatch = int((seg[myo] != p.info["segment_map"][b, 0][myo].long()).sum())
        assert mismatch <= 2  # rounding at a sector boundary at most


def test_end_systole_shrinks_the_cavity_by_the_ejection_fraction_and_keeps_the_myocardium():
    fine = VoxelGrid((124, 88, 70), 3.0)
    ed = cardiac(fine, batch_size=2, seed=31, tracer="rbc")
    es = cardiac(fine, batch_size=2, seed=31, tracer="rbc", phase="es")
    ef = ed.info["ejection_fraction"]
    assert torch.equal(ef, es.info["ejection_fraction"]) and bool(((ef >= 0.5) & (ef <= 0.7)).all())
    for b in range(2):
        cav = [int((p.labels[b, 0] == LABELS["lv_blood"]).sum()) for p in (ed, es)]
        myo = [int((p.labels[b, 0] == LABELS["myocardium"]).sum()) for p in (ed, es)]
        assert cav[1] / cav[0] == pytest.approx(1 - float(ef[b]), rel=0.05)
        assert myo[1] / myo[0] == pytest.approx(1.0, rel=0.05)
        assert float(es.info["lv_wall_mm"][b]) > float(ed.info["lv_wall_mm"][b])
        s = (1 - float(ef[b])) ** (1 / 3)
        assert float(es.info["lv_long_mm"][b]) == pytest.approx(s * float(ed.info["lv_long_mm"][b]))
    # The rest of the body is the same: only the heart's voxels change (the RV sits against the
    # septum, placed from the LV's size, so it follows the LV).
    heart = [LABELS[n] for n in ("myocardium", "lv_blood", "rv_blood")]
    same = (ed.labels == es.labels) | torch.isin(ed.labels, torch.tensor(heart)) | torch.isin(es.labels, torch.tensor(heart))
    assert bool(same.all())


def test_a_heart_centred_truncated_grid_is_the_centre_of_a_larger_one():
    big = cardiac(VoxelGrid((116, 116, 50), 4.0), batch_size=2, seed=32, tracer="rbc", centre_on_heart=True,
                  contrast_ct=True)
    small = cardiac(VoxelGrid((70, 70, 50), 4.0), batch_size=2, seed=32, tracer="rbc", centre_on_heart=True,
                    truncate=True, contrast_ct=True)
    crop = (slice(None), slice(None), slice(23, 93), slice(23, 93), slice(None))
    assert torch.equal(small.labels, big.labels[crop]) and torch.equal(small.activity, big.activity[crop])
    assert torch.equal(small.ct_hu, big.ct_hu[crop])
    torch.testing.assert_close(small.info["lv_centre_mm"], torch.zeros(2, 3, dtype=torch.float64))
    # The LV's voxels lie round the grid centre: their mean is within one LV length of 0 along the axis.
    for b in range(2):
        myo = (small.labels[b, 0] == LABELS["myocardium"]).nonzero().double()
        centroid = (myo - torch.tensor([34.5, 34.5, 24.5], dtype=torch.float64)).mean(0) * 4.0
        assert float(centroid.norm()) < float(small.info["lv_long_mm"][b])
    with pytest.raises(GeometryError):
        cardiac(VoxelGrid((70, 70, 50), 4.0), seed=32, centre_on_heart=True)


def test_contrast_ct_holds_each_regions_hu():
    from spectdl.phantoms.cardiac import CONTRAST_CT_HU

    p = cardiac(batch_size=1, seed=33, contrast_ct=True, gut=True)
    for name, value in LABELS.items():
        region = p.ct_hu[0, 0][p.labels[0, 0] == value]
        if region.numel():
            torch.testing.assert_close(region, torch.full_like(region, CONTRAST_CT_HU[name]))
    assert cardiac(batch_size=1, seed=33).ct_hu is None
    with pytest.raises(InputError, match="phase"):
        cardiac(batch_size=1, seed=33, phase="mid")
