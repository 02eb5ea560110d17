"""Colocalization coefficients against Fiji Coloc 2's own test images and values."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from spinalquant.measure.colocalization import (
    colocalization,
    costes_pvalue,
    costes_thresholds,
    li_icq,
    manders,
    measure_gfp_cells,
    pearson,
    spearman,
)
from spinalquant.measure.matching import match_labels, match_points

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coloc2"

needs_coloc2 = pytest.mark.skipif(
    not (DATA / "mandersA.tiff").exists(), reason=f"Coloc 2 test images not found under {DATA}"
)


def _read(name):
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("imagecodecs", reason="the Coloc 2 TIFFs are LZW-compressed")
    return tifffile.imread(DATA / name)


# Manders et al. 1993 figures as reproduced by Coloc 2 (README table)
MANDERS = {
    "A": (1.00, 1.0, 1.0),
    "B": (0.72, 0.75, 0.75),
    "C": (0.44, 0.5, 0.5),
    "D": (0.16, 0.25, 0.25),
    "E": (-0.12, 0.0, 0.0),
    "F": (0.22, 0.25, 0.3333),
    "G": (0.30, 0.25, 0.50),
    "H": (0.48, 0.25, 1.00),
    "I": (0.23, 0.083, 0.75),
}


@needs_coloc2
@pytest.mark.parametrize("letter", list(MANDERS))
def test_manders_paper_images(letter):
    a = _read("mandersA.tiff")
    b = _read(f"manders{letter}.tiff")
    r_exp, m1_exp, m2_exp = MANDERS[letter]
    assert pearson(a, b) == pytest.approx(r_exp, abs=0.01)
    m1, m2 = manders(a, b)
    # Coloc 2 asserts 1e-4 (1e-3 for A-I M1, whose expected value is rounded)
    assert m1 == pytest.approx(m1_exp, abs=1e-3 if letter == "I" else 1e-4)
    assert m2 == pytest.approx(m2_exp, abs=1e-4)


@needs_coloc2
def test_zero_correlation_stack():
    g = _read("greenZstack.tif")
    r = _read("redZstack.tif")
    assert g.shape == (10, 64, 64)
    assert pearson(g, r) == pytest.approx(0.0, abs=0.05)
    assert abs(spearman(g, r)) < 0.012


@needs_coloc2
def test_synthetic_negative_spearman():
    a = _read("syntheticNegCh1.tif")
    b = _read("syntheticNegCh2.tif")
    assert spearman(a, b) == pytest.approx(-0.1743, abs=0.001)


@needs_coloc2
def test_thresholded_manders_real_noisy_pair():
    """Coloc 2's mandersRealNoisyImagesTest (colocsample1b + mask, T1=70, T2=53).

    The shared data set does not ship colocsample1b; the test runs when it is added.
    """
    names = ("colocsample1b-green.tif", "colocsample1b-red.tif", "colocsample1b-mask.tif")
    if not all((DATA / n).exists() for n in names):
        pytest.skip("colocsample1b-{green,red,mask}.tif are not in shared/data/coloc2")
    a, b, mask = (_read(n) for n in names)
    tm1, tm2 = manders(a, b, threshold_a=70, threshold_b=53, mask=mask > 0)
    assert tm1 == pytest.approx(0.705665, abs=1e-6)
    assert tm2 == pytest.approx(0.724752, abs=1e-6)
    assert spearman(a, b, mask=None) == pytest.approx(0.5463, abs=0.001)
    assert 0.34 <= li_icq(a, b) <= 0.35


def test_thresholded_manders_definition():
    """tM1 uses b >= T_b (inclusive), b > 0, and the unthresholded sum of a."""
    a = np.array([[10, 20, 30, 40]], dtype=np.uint8)
    b = np.array([[0, 5, 6, 7]], dtype=np.uint8)
    m1, m2 = manders(a, b, threshold_a=30, threshold_b=6)
    assert m1 == pytest.approx((30 + 40) / 100)
    assert m2 == pytest.approx((6 + 7) / 18)
    # above-zero M1 ignores the zero pixel of b
    assert manders(a, b)[0] == pytest.approx(90 / 100)
    # a mask restricts numerator and denominator
    mask = np.array([[True, True, False, True]])
    assert manders(a, b, threshold_b=6, mask=mask)[0] == pytest.approx(40 / 70)


def _brute_costes(x, y):
    """Reference: scan every integer threshold on the regression line (slow)."""
    xf, yf = x.astype(float).ravel(), y.astype(float).ravel()
    mx, my = xf.mean(), yf.mean()
    vx, vy = xf.var(ddof=1), yf.var(ddof=1)
    cov = np.cov(xf, yf)[0, 1]
    m = (vy - vx + np.sqrt((vy - vx) ** 2 + 4 * cov**2)) / (2 * cov)
    c = my - m * mx
    assert m < 1
    best = None
    for t in range(int(xf.min()), int(xf.max()) + 1):
        sel = (xf < t) | (yf < m * t + c)
        if sel.sum() < 2 or xf[sel].std() == 0 or yf[sel].std() == 0:
            continue
        if np.corrcoef(xf[sel], yf[sel])[0, 1] <= 0:
            best = t
    return best, m * best + c


def test_costes_matches_brute_force_scan():
    rng = np.random.default_rng(3)
    signal = rng.gamma(1.5, 40, (96, 96))
    a = np.clip(signal + rng.normal(20, 8, signal.shape), 0, 255).astype(np.uint8)
    b = np.clip(0.7 * signal + rng.normal(15, 8, signal.shape), 0, 255).astype(np.uint8)
    ta, tb = costes_thresholds(a, b)
    ra, rb = _brute_costes(a, b)
    assert ta == pytest.approx(ra, abs=0)
    assert tb == pytest.approx(round(rb), abs=0)
    # sanity: r below the threshold pair is not positive, r above it is
    below = (a < ta) | (b < tb)
    assert np.corrcoef(a[below].astype(float), b[below].astype(float))[0, 1] <= 0.05
    assert pearson(a, b, mask=~below) > 0.3


def test_costes_is_fast_on_large_images():
    rng = np.random.default_rng(0)
    s = rng.gamma(2, 200, (2048, 2048))
    a = np.clip(s + rng.normal(100, 50, s.shape), 0, 4095).astype(np.uint16)
    b = np.clip(0.5 * s + rng.normal(100, 50, s.shape), 0, 4095).astype(np.uint16)
    t0 = time.perf_counter()
    ta, tb = costes_thresholds(a, b)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0
    assert np.isfinite(ta) and np.isfinite(tb)
    assert a.min() < ta < a.max() and b.min() < tb < b.max()


def test_costes_not_applicable_to_anticorrelated():
    x = np.linspace(0, 100, 400).reshape(20, 20)
    assert all(np.isnan(costes_thresholds(x, 100 - x)))


def test_costes_pvalue_separates_colocalized_from_independent():
    rng = np.random.default_rng(5)
    from scipy import ndimage as ndi

    s = ndi.gaussian_filter(rng.random((128, 128)), 2)
    t = ndi.gaussian_filter(rng.random((128, 128)), 2)
    noisy = s + rng.normal(0, 0.01, s.shape)
    assert costes_pvalue(s, noisy, n_iter=50, pixel_size_um=0.2, psf_fwhm_um=1.0) < 0.05
    assert costes_pvalue(s, t, n_iter=50, block_size_px=5) > 0.05


def test_colocalization_dict_and_inputs_untouched():
    rng = np.random.default_rng(2)
    s = rng.gamma(2, 30, (64, 64))
    a = np.clip(s + rng.normal(10, 5, s.shape), 0, 255).astype(np.uint8)
    b = np.clip(s + rng.normal(10, 5, s.shape), 0, 255).astype(np.uint8)
    a0, b0 = a.copy(), b.copy()
    d = colocalization(a, b, pvalue=True, n_iter=10)
    assert set(d) == {
        "pearson", "manders_m1", "manders_m2", "costes_threshold_a", "costes_threshold_b",
        "tm1", "tm2", "pvalue",
    }
    assert d["pearson"] > 0.8
    assert 0 < d["tm1"] <= d["manders_m1"] <= 1
    assert d["pvalue"] < 0.2
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    with pytest.raises(ValueError, match="shape"):
        pearson(a, b[:10])


def test_measure_gfp_cells_units():
    lab = np.zeros((20, 20), np.int32)
    lab[2:6, 4:8] = 1
    df = measure_gfp_cells(lab, pixel_size_um=0.5)
    assert list(df.columns) == ["label", "y_um", "x_um", "area_um2", "equivalent_diameter_um"]
    row = df.iloc[0]
    assert row.area_um2 == pytest.approx(4.0)
    # rows 2-5, columns 4-7: centre at pixel (3.5, 5.5), top-left pixel centre at 0
    assert (row.y_um, row.x_um) == pytest.approx((1.75, 2.75))
    assert row.equivalent_diameter_um == pytest.approx(np.sqrt(4 * 4.0 / np.pi))
    empty = measure_gfp_cells(np.zeros((5, 5), int), pixel_size_um=1.0)
    assert len(empty) == 0 and "area_um2" in empty.columns


def test_match_helpers():
    t = np.zeros((20, 20), int)
    t[1:6, 1:6] = 1
    t[10:15, 10:15] = 2
    p = np.zeros_like(t)
    p[1:6, 2:7] = 5  # IoU 20/30
    p[17:19, 17:19] = 9
    r = match_labels(p, t, iou=0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert r["mean_iou"] == pytest.approx(20 / 30)
    assert match_labels(p, t, iou=0.7)["tp"] == 0
    r = match_points([[0, 0], [5, 5], [5.5, 5]], [[0.5, 0], [5, 5.2]], max_dist=1.0)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    assert r["f1"] == pytest.approx(0.8)
