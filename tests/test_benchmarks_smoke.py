"""Smoke test of the benchmark harness's scoring and baselines (no timing, no peers)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run_all():
    return _load("bench_run_all", BENCH / "run_all.py")


@pytest.fixture(scope="module")
def baseline():
    return _load("bench_skimage_baseline", BENCH / "peers" / "skimage_baseline.py")


def _blobs(rng):
    from skimage import draw

    img = rng.normal(100, 5, (200, 200))
    truth = np.zeros((200, 200), np.int32)
    for i, (cy, cx) in enumerate([(40, 40), (40, 120), (130, 60), (150, 150)], start=1):
        rr, cc = draw.disk((cy, cx), 14, shape=img.shape)
        img[rr, cc] += 400
        truth[rr, cc] = i
    return img.astype(np.uint16), truth


def test_baselines_find_separate_blobs(baseline, run_all):
    img, truth = _blobs(np.random.default_rng(0))
    for fn in (baseline.otsu_watershed, baseline.voronoi_otsu):
        lab = fn(img, pixel_size_um=0.5, min_area_um2=30.0)
        s = run_all.score_labels(lab, truth, 0.5)
        assert s["f1"] == 1.0, (fn.__name__, s)
        assert abs(s["area_err_pct"]) < 15, (fn.__name__, s)


def test_near_counts_two_micron_rule(run_all):
    lab = np.zeros((50, 50), np.int32)
    lab[10:20, 10:20] = 1
    # one on the edge, one 1.5 µm outside, one 5 µm outside (px = 0.5 µm)
    pts = np.array([[10.0, 15.0], [21.5, 15.0], [25.0, 15.0]]) * 0.5
    pts[1] = [(19 + 3) * 0.5, 15 * 0.5]
    assert run_all._near_counts(lab, pts, 0.5, 2.0).tolist() == [2]


def test_score_case_coloc_expected(run_all):
    case = {"group": "coloc2", "index": 1, "px": 1.0}
    res = run_all.score_case(case, {"coloc": np.array([0.72, 0.75, 0.75])}, "x")
    assert res["colocalization"]["pearson_err"] == pytest.approx(0.0)


def test_shortfalls_lists_only_where_a_peer_is_better(run_all):
    scores = [
        {"group": "cord", "kind": "gfp_cells", "tool": "spinalquant", "f1": 0.95, "count_err_pct": -2.0},
        {"group": "cord", "kind": "gfp_cells", "tool": "imagej", "f1": 0.97, "count_err_pct": 5.0},
        {"group": "cord", "kind": "gfp_cells", "tool": "cellprofiler", "f1": 0.953, "count_err_pct": 1.0},
    ]
    speed = [
        {"group": "cord", "tool": "spinalquant", "wall_per_img_s": 1.0, "compute_per_img_s": 0.8},
        {"group": "cord", "tool": "cellprofiler", "wall_per_img_s": 3.0, "compute_per_img_s": 0.5},
    ]
    out = run_all.shortfalls(scores, speed)
    text = "\n".join(out)
    assert "imagej f1 0.97" in text  # better by more than the margin
    assert "cellprofiler f1" not in text  # within the 0.005 margin: a tie
    assert "cellprofiler count_err_pct 1" in text  # |1| < |-2| by more than 0.5
    assert "imagej count_err_pct" not in text
    assert any("cellprofiler faster (compute" in x for x in out)
    assert not any("cellprofiler faster (wall" in x for x in out)
    assert len(out) == 3


def test_puncta_limit_helpers():
    lim = _load("bench_puncta_limit", BENCH / "bench_puncta_limit.py")
    # a pixel-centred spot peaks at the requested height; a corner spot keeps its flux
    centred = lim.render((21, 21), 0.5, np.array([[5.0, 5.0]]), np.array([10.0]))
    corner = lim.render((21, 21), 0.5, np.array([[5.25, 5.25]]), np.array([10.0]))
    assert centred.max() == pytest.approx(10.0)
    assert corner.max() < 0.5 * centred.max()
    assert corner.sum() == pytest.approx(centred.sum(), rel=1e-6)
    truth = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]])
    found = np.array([[1.2, 1.0], [5.0, 6.5], [9.0, 9.5], [9.1, 9.0]])
    assert lim.recall(found, truth, tol=1.0) == 2  # one-to-one, within 1 µm
    rows = [{"pixel_size_um": 0.5, "brightness": b, "recall_x": r}
            for b, r in [(4.0, 0.2), (6.0, 0.6), (8.0, 0.95)]]
    out = lim.limits(rows, "recall_x")["0.5"]
    assert out["b50"] == pytest.approx(5.5) and out["b90"] == pytest.approx(7.71, abs=0.01)
    # a noise-only field has no spots; a spot field has isolated spots
    rng = np.random.default_rng(0)
    img, pts = lim.field(rng, 0.7, None, 3)
    assert img.dtype == np.uint16 and len(pts) == 0
    _, pts = lim.field(rng, 0.7, 10.0, 3)
    d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1)) + 1e3 * np.eye(len(pts))
    assert len(pts) > 100 and d.min() >= 4.0


def test_gfap_benchmark_sets_and_one_image():
    gf = _load("bench_gfap", BENCH / "bench_gfap.py")
    sets = gf.sets(quick=True)
    assert all(len(seeds) == 3 for *_, seeds in sets)
    assert {round(frac, 2) for _, _, frac, _, _ in sets} == {0.2, 0.5, 0.86, 0.95}
    _, c, frac, bleed, seeds = next(s for s in sets if s[0].startswith("86% unseen 0.7um"))
    found, true, coef = gf.one_image(c, frac, bleed, seeds[0])
    assert 0 <= found <= 100 and 50 <= true <= 100 and 0 <= coef <= 0.5
