import numpy as np
import pytest

from spectdl.cardiac import (NormalDatabase, PolarMap, estimate_lv_axis, perfusion_indices, polar_map, segment_scores,
                             sss_category)
from spectdl.errors import InputError
from spectdl.phantoms.aha import TERRITORIES, segment_of

from ._images import GRID, blurred, phantoms


def _flat_map(values=None, K=3, J=12, A=4):
    """A synthetic map: every ring sample 80 %, the apex 80 %, unless ``values`` (segment -> value)."""
    t = (np.arange(K) + 0.5) / K
    phi = np.arange(J) * 360.0 / J
    seg = segment_of(np.asarray(t)[:, None], np.asarray(phi)[None, :]).numpy()
    rings = np.full((K, J), 80.0)
    apex = np.full(A, 80.0)
    for s, v in (values or {}).items():
        if s == 17:
            apex[:] = v
        else:
            rings[seg == s] = v
    return PolarMap(rings, apex, t, phi, seg, np.zeros((K, J)), 1.0)


def _db(mean=80.0, sd=4.0):
    m = _flat_map()
    n = m.values().size
    return NormalDatabase(m.layout, np.full(n, mean), np.full(n, sd), np.full(17, mean), np.full(17, sd), 10)


def test_segment_scores_follow_the_thresholds_by_hand():
    # normal 80 ± 4: 76 (z 1, δ 5 %) -> 0; 70 (z 2.5, δ 12.5 %) -> 1; 62 (δ 22.5 %) -> 2; 50 (δ 37.5 %) -> 3;
    # 38 (δ 52.5 %) -> 4; 73 (z 1.75 < 2, δ 8.75 %) -> 0.
    pm = _flat_map({1: 76.0, 4: 70.0, 9: 62.0, 15: 50.0, 17: 38.0, 12: 73.0})
    expect = np.zeros(17, int)
    expect[[3, 8, 14, 16]] = [1, 2, 3, 4]
    np.testing.assert_array_equal(segment_scores(pm, _db()), expect)
    ind = perfusion_indices(pm, _db())
    assert ind["sss"] == 10 and ind["ss_percent"] == pytest.approx(1000 / 68)
    assert ind["sss_rca"] == 1 + 2 + 3 and ind["sss_lad"] == 4 and ind["sss_lcx"] == 0


def test_extent_and_tpd_of_one_half_count_segment_are_one_seventeenth():
    pm = _flat_map({10: 40.0})  # one segment at half the normal mean: z = 10, δ = 50 %
    ind = perfusion_indices(pm, _db())
    assert ind["extent"] == pytest.approx(100 / 17) and ind["tpd"] == pytest.approx(50 / 17)
    assert perfusion_indices(_flat_map(), _db()) == {"sss": 0, "ss_percent": 0, "extent": 0, "tpd": 0,
                                                      "sss_lad": 0, "sss_lcx": 0, "sss_rca": 0}


def test_sss_categories_are_the_clinical_bands():
    got = [sss_category(s) for s in (0, 3, 4, 8, 9, 13, 14, 40)]
    assert got == ["normal", "normal", "mildly abnormal", "mildly abnormal", "moderately abnormal",
                   "moderately abnormal", "severely abnormal", "severely abnormal"]
    with pytest.raises(InputError, match="sss"):
        sss_category(-1)


def test_normal_database_statistics_match_numpy_and_round_trip():
    maps = [_flat_map({s: 80.0 + k for s in range(1, 18)}) for k in (-3.0, 0.0, 5.0)]
    db = NormalDatabase.from_maps(maps, min_sd=0.5)
    np.testing.assert_allclose(db.segment_mean, np.full(17, 80 + 2 / 3))
    np.testing.assert_allclose(db.segment_sd, np.full(17, np.std([-3, 0, 5], ddof=1)))
    np.testing.assert_allclose(NormalDatabase.from_maps(maps, min_sd=10).sample_sd, 10.0)
    back = NormalDatabase.from_dict(db.to_dict())
    np.testing.assert_array_equal(back.sample_mean, db.sample_mean)
    assert back.layout == db.layout and back.n == 3
    with pytest.raises(InputError, match="at least 2"):
        NormalDatabase.from_maps(maps[:1])
    with pytest.raises(InputError, match="one layout"):
        NormalDatabase.from_maps([maps[0], _flat_map(K=6)])
    with pytest.raises(InputError, match="does not match"):
        segment_scores(_flat_map(K=6), db)


@pytest.fixture(scope="module")
def normal_db():
    ph = phantoms(6, seed=3)
    maps = []
    for b in range(6):
        img = blurred(ph, b)
        maps.append(polar_map(img, GRID, estimate_lv_axis(img, GRID)))
    return NormalDatabase.from_maps(maps)


def _indices(db, **defect):
    ph = phantoms(1, seed=100, **defect)
    img = blurred(ph)
    pm = polar_map(img, GRID, estimate_lv_axis(img, GRID))
    return perfusion_indices(pm, db), segment_scores(pm, db), 100 * float(ph.info["defect_fraction"][0])


def test_sss_is_zero_on_a_healthy_phantom_and_rises_with_severity(normal_db):
    healthy, scores, _ = _indices(normal_db)
    assert healthy["sss"] == 0 and not scores.any() and healthy["extent"] < 3 and healthy["tpd"] < 1
    sss = [_indices(normal_db, defect_extent=1 / 6, defect_severity=s, defect_angle_deg=180.0)[0]["sss"]
           for s in (0.3, 0.5, 0.7)]
    assert 0 < sss[0] < sss[1] < sss[2]


@pytest.mark.parametrize("angle,segments,territory", [(180.0, {4, 10, 15}, "RCA"), (90.0, {5, 6, 11, 12, 16}, "LCx")])
def test_a_known_defect_is_found_in_its_segments_with_its_extent(normal_db, angle, segments, territory):
    extent = 1 / 6 if angle == 180 else 1 / 4
    ind, scores, true_extent = _indices(normal_db, defect_extent=extent, defect_severity=0.5, defect_angle_deg=angle)
    assert set((np.nonzero(scores)[0] + 1).tolist()) == segments
    assert ind["sss"] == ind[f"sss_{territory.lower()}"] > 0
    assert set(TERRITORIES[territory]) >= segments
    assert ind["extent"] == pytest.approx(true_extent, abs=5.0)  # % of the LV
    assert 0 < ind["tpd"] < ind["extent"]
