import math

import pytest
import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms import PlanarPhantom, wholebody_planar
from spectdl.phantoms.wholebody import LABELS, _Canvas


def _numeric_views(inside, y_lo, y_hi, half_mm, mu_mm, conc, n=2000):
    """Reference: integrate conc·exp(−μ·depth) over ``[y_lo, y_hi]`` (midpoint rule), every pixel."""
    y = torch.linspace(y_lo, y_hi, n + 1, dtype=torch.float64)
    y = (y[1:] + y[:-1]) / 2
    dy = (y_hi - y_lo) / n
    m = inside(y).double()  # [R, C, n]
    ant = (conc * m * torch.exp(-mu_mm * (half_mm - y)) * dy).sum(-1)
    post = (conc * m * torch.exp(-mu_mm * (y + half_mm)) * dy).sum(-1)
    return ant, post


def test_attenuated_projection_of_an_ellipsoid_and_a_bar_matches_numerical_integration():
    grid = VoxelGrid((34, 26), 2.0)
    mu_mm = mu_per_cm("water", 140.0) / 10
    c = _Canvas(grid, mu_mm, torch.device("cpu"), torch.float64)
    c.half.fill_(50.0)
    win, h, yc = c.ellipsoid(3.0, 40.0, 20.0, 15.0, 25.0, yc=10.0, angle_rad=0.3)
    c.deposit(win, h, yc, 3.0, None)
    win, h, yc = c.bar(-20.0, 10.0, 10.0, 70.0, 6.0, 4.0, yc=-30.0)
    c.deposit(win, h, yc, 2.0, None)

    Z = c.z.double()[:, None, None]
    X = c.x.double()[None, :, None]

    def inside(y):
        c, s = math.cos(0.3), math.sin(0.3)
        u, v = (X - 3) * c + (Z - 40) * s, (Z - 40) * c - (X - 3) * s
        return (u / 20) ** 2 + ((y - 10) / 15) ** 2 + (v / 25) ** 2 <= 1

    def in_bar(y):
        ex, ez = 30.0, 60.0
        s = (((X + 20) * ex + (Z - 10) * ez) / (ex * ex + ez * ez)).clamp(0, 1)
        r = 6.0 + s * (4.0 - 6.0)
        return (X + 20 - s * ex) ** 2 + (Z - 10 - s * ez) ** 2 + (y + 30) ** 2 <= r * r

    a1, p1 = _numeric_views(inside, -5.0, 25.0, 50.0, mu_mm, 3.0)
    a2, p2 = _numeric_views(in_bar, -36.0, -24.0, 50.0, mu_mm, 2.0)
    torch.testing.assert_close(c.anterior[0], a1 + a2, atol=1e-3 * float((a1 + a2).max()), rtol=0)
    torch.testing.assert_close(c.posterior[0], p1 + p2, atol=1e-3 * float((p1 + p2).max()), rtol=0)
    assert float(c.anterior.max()) > 10.0


def test_shapes_labels_and_counts():
    p = wholebody_planar(batch_size=2, seed=0, total_counts=1.5e6)
    assert isinstance(p, PlanarPhantom) and p.grid == VoxelGrid((1024, 256), 2.26)
    for t in (p.anterior, p.posterior, p.labels, p.lesion_mask):
        assert t.shape == (2, 1, 1024, 256)
    totals = p.anterior.double().sum((1, 2, 3))
    torch.testing.assert_close(totals, torch.full((2,), 1.5e6, dtype=torch.float64))
    assert bool((p.anterior >= 0).all()) and bool((p.posterior >= 0).all())
    assert set(torch.unique(p.labels).tolist()) <= set(LABELS.values())
    assert {1, 2, 3, 4} <= set(torch.unique(p.labels).tolist())
    assert float(p.anterior[p.labels == 0].abs().max()) == 0.0  # nothing outside the body
    rows = torch.nonzero(p.labels[0, 0].sum(1)).flatten()
    height = (int(rows.max()) - int(rows.min()) + 1) * 2.26
    assert height == pytest.approx(float(p.info["height_mm"][0]), abs=10.0)


def test_anterior_and_posterior_see_depth():
    kw = dict(batch_size=2, seed=4, n_lesions=0)
    p = wholebody_planar(**kw)
    # The same bodies with organs at soft-tissue uptake: the difference is the organs' own signal.
    plain = wholebody_planar(kidney_uptake=(1.0, 1.0), bladder_uptake=(1.0, 1.0), **kw)
    for b in range(2):
        lab, ant, post = p.labels[b, 0], p.anterior[b, 0], p.posterior[b, 0]
        extra_ant, extra_post = ant - plain.anterior[b, 0], post - plain.posterior[b, 0]
        bladder, kidney = lab == LABELS["bladder"], lab == LABELS["kidney"]
        assert float(extra_ant[bladder].sum()) > 1.5 * float(extra_post[bladder].sum())  # anterior organ
        assert float(extra_post[kidney].sum()) > 1.5 * float(extra_ant[kidney].sum())  # posterior organ
        # Soft tissue alone (no bone, no organ in the column) is symmetric front to back.
        soft = lab == LABELS["soft_tissue"]
        ratio = ant[soft] / post[soft].clamp_min(1e-9)
        assert float(ratio.median()) == pytest.approx(1.0, abs=0.05)


def test_lesions_add_activity_only_inside_their_mask():
    kw = dict(batch_size=2, seed=12, n_lesions=(3, 3))
    hot = wholebody_planar(lesion_contrast=(3.0, 3.0), **kw)
    flat = wholebody_planar(lesion_contrast=(1.0, 1.0), **kw)
    assert torch.equal(hot.info["lesion_centre_mm"], flat.info["lesion_centre_mm"])
    diff = hot.anterior - flat.anterior
    assert float(diff[~hot.lesion_mask].abs().max()) == 0.0
    assert float(diff[hot.lesion_mask].min()) >= 0.0 and float(diff.sum()) > 0
    assert bool((hot.labels[hot.lesion_mask] == LABELS["lesion"]).all())
    assert hot.info["n_lesions"].tolist() == [3, 3]
    # Each lesion sits on bone: its centre pixel was labelled bone before the lesion was drawn.
    for b in range(2):
        for zc, xc in hot.info["lesion_centre_mm"][b].tolist():
            r, c = int(zc / 2.26), int(round(xc / 2.26 + 127.5))
            hit = int(flat.labels[b, 0, r, c])
            assert hit in (LABELS["bone"], LABELS["kidney"], LABELS["bladder"], LABELS["lesion"])
    none = wholebody_planar(batch_size=1, seed=12, n_lesions=0)
    assert not bool(none.lesion_mask.any())


def test_deterministic_batch_equivalent_and_mirror():
    a = wholebody_planar(batch_size=3, seed=5)
    assert torch.equal(a.anterior, wholebody_planar(batch_size=3, seed=5).anterior)
    assert not torch.equal(a.anterior, wholebody_planar(batch_size=3, seed=6).anterior)
    alone = wholebody_planar(batch_size=1, seed=a.info["seeds"][1])
    assert torch.equal(alone.anterior[0], a.anterior[1]) and torch.equal(alone.labels[0], a.labels[1])
    m = wholebody_planar(batch_size=1, seed=a.info["seeds"][1], mirror_posterior=True)
    assert torch.equal(m.posterior[0], a.posterior[1].flip(-1))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(grid=VoxelGrid((512, 256), 2.26)), GeometryError, "grid: a whole-body view"),
        (dict(grid=VoxelGrid((64, 64, 64), 2.26)), GeometryError, "grid: expected a 2-D VoxelGrid"),
        (dict(lesion_radius_mm=(-1.0, 3.0)), InputError, "lesion_radius_mm"),
        (dict(n_lesions=(2, 1)), InputError, "n_lesions"),
        (dict(height_mm=(1500.0, 2500.0)), InputError, "height_mm"),
        (dict(total_counts=0.0), InputError, "total_counts"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        wholebody_planar(seed=0, **kwargs)


def test_default_samples_are_unchanged_by_the_diagnosis_option():
    # Sums taken before the option existed.
    p = wholebody_planar(batch_size=3, seed=7)
    assert float(p.anterior.double().sum()) == pytest.approx(27084939.68350777, rel=1e-6)
    assert float(p.posterior.double().sum()) == pytest.approx(29249288.803994983, rel=1e-6)
    assert int(p.lesion_mask.sum()) == 234 and p.info["n_lesions"].tolist() == [0, 2, 3]
    assert "diagnosis" not in p.info


def test_diagnoses_follow_their_probabilities_and_lesion_ranges():
    from scipy import stats

    from spectdl.phantoms.wholebody import DIAGNOSES

    grid = VoxelGrid((900, 220), 2.26)
    probs = {"normal": 0.25, "benign": 0.25, "malignant": 0.5}
    p = wholebody_planar(grid, batch_size=60, seed=11, diagnoses=probs, height_mm=(1550.0, 1800.0))
    names = p.info["diagnosis"]
    n = len(names)
    for name, prob in probs.items():
        k = names.count(name)
        assert stats.binom.cdf(k, n, prob) > 0.001 and stats.binom.sf(k - 1, n, prob) > 0.001  # not implausible
    for b, name in enumerate(names):
        spec = DIAGNOSES[name]
        count = int(p.info["n_lesions"][b])
        assert spec["n_lesions"][0] <= count <= spec["n_lesions"][1]
        k = p.info["lesion_contrast"][b, :count]
        r = p.info["lesion_radius_mm"][b, :count]
        assert ((k >= spec["contrast"][0]) & (k <= spec["contrast"][1])).all()
        assert ((r >= spec["radius_mm"][0]) & (r <= spec["radius_mm"][1])).all()
        assert bool(p.info["malignant"][b]) == (name == "malignant")
        assert bool(p.lesion_mask[b].any()) == (count > 0)
    # Batch equivalence: a sample alone from its seed is the same sample.
    alone = wholebody_planar(grid, batch_size=1, seed=p.info["seeds"][5], diagnoses=probs, height_mm=(1550.0, 1800.0))
    assert alone.info["diagnosis"] == names[5:6] and torch.equal(alone.anterior[0], p.anterior[5])
    with pytest.raises(InputError, match="unknown diagnosis"):
        wholebody_planar(grid, diagnoses={"fracture": 1.0}, height_mm=(1550.0, 1800.0))
    with pytest.raises(InputError, match="sum to 0"):
        wholebody_planar(grid, diagnoses={"normal": 0.0}, height_mm=(1550.0, 1800.0))
