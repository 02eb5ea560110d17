"""GFP+ cell segmentation and the GFAP call: real nuclei (DSB2018) and cord phantoms."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from independent_phantoms import calls_right  # tests/ is on sys.path
from scipy import ndimage as ndi

from spinalquant.errors import ConfigError
from spinalquant.measure.colocalization import measure_gfp_cells
from spinalquant.measure.matching import match_labels, match_points, matched_area_errors
from spinalquant.segment.gfp_cells import (
    GfapPositivityParams,
    GfpCellParams,
    detection_threshold,
    estimate_bleed_through,
    gfap_positivity,
    segment_gfp_cells,
    segment_gfp_cells_3d,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ------------------------------------------------------------- helpers
def test_area_error_helper():
    t = np.zeros((20, 20), int)
    t[2:8, 2:8] = 1
    t[10:18, 10:18] = 2
    p = np.zeros_like(t)
    p[2:8, 2:9] = 5
    p[0:2, 0:2] = 6
    np.testing.assert_allclose(matched_area_errors(p, t), [42 / 36 - 1])


# ------------------------------------------------------------- real nuclei
def test_stardist_dsb2018_f1_and_area():
    """DSB2018 nuclei as stand-in GFP cells, default parameters.

    The image has no calibration; 1.5 µm/px makes the median nucleus (64 px)
    about 13.5 µm across, inside the 8–16 µm range of GFP+ cell bodies. Eight
    of the 65 annotations are faint 21-px discs barely above background, so
    F1 ≈ 0.93 is the ceiling for an intensity-threshold method. The
    annotations run a little outside the half maximum (area bias ≈ -10 %).
    """
    folder = DATA / "stardist_dsb2018"
    if not (folder / "tests_img2d.tif").exists():
        pytest.skip(f"stardist DSB2018 test pair not found under {folder}")
    tifffile = pytest.importorskip("tifffile")
    img = tifffile.imread(folder / "tests_img2d.tif")
    truth = tifffile.imread(folder / "tests_mask2d.tif")
    lab = segment_gfp_cells(img, pixel_size_um=1.5)
    r = match_labels(lab, truth, iou=0.5)
    err = matched_area_errors(lab, truth)
    assert r["f1"] >= 0.85, r
    assert np.mean(np.abs(err)) <= 0.15, np.mean(err)
    assert abs(np.mean(err)) <= 0.12, np.mean(err)
    # the intensity split is close behind
    params = GfpCellParams(split="intensity", min_separation_um=4.0)
    r2 = match_labels(segment_gfp_cells(img, pixel_size_um=1.5, params=params), truth, iou=0.5)
    assert r2["f1"] >= 0.80, r2


# ------------------------------------------------------------- phantoms
synthetic = pytest.importorskip("spinalquant.synthetic")


def _evaluate(seed, snr, n_cells, px, *, n_granules=20, shape=(640, 640)):
    ph = synthetic.make_cord_section(
        seed=seed, shape=shape, pixel_size_um=px, snr=snr, n_gfp_cells=n_cells,
        n_granules=n_granules,
    )
    names = list(ph.stack.channel_names)
    proj = {n: ph.stack.data[i].max(axis=0) for i, n in enumerate(names)}
    reference = np.stack([proj[n] for n in names if n != "EGFP"])
    gfp0 = proj["EGFP"].copy()
    lab = segment_gfp_cells(proj["EGFP"], pixel_size_um=px, reference=reference)
    np.testing.assert_array_equal(proj["EGFP"], gfp0)  # input untouched
    assert lab.dtype == np.int32
    table = measure_gfp_cells(lab, pixel_size_um=px)
    truth = ph.truth["gfp_cells"]
    m = match_points(table[["y_um", "x_um"]].to_numpy(), truth[["y_um", "x_um"]].to_numpy(), max_dist=6.0)
    pos = gfap_positivity(lab, proj["GFAP"], gfp=proj["EGFP"], pixel_size_um=px)
    pct = 100.0 * pos["gfap_positive"].mean()
    pct_true = 100.0 * truth["gfap_positive"].mean()
    # granules must not be counted: no unmatched object sits on a granule
    gr = ph.truth["granules"][["y_um", "x_um"]].to_numpy()
    t_lab = ph.labels["gfp_cells"]
    iy = np.clip((table["y_um"] / px).astype(int), 0, lab.shape[0] - 1)
    ix = np.clip((table["x_um"] / px).astype(int), 0, lab.shape[1] - 1)
    spurious = table[t_lab[iy, ix] == 0][["y_um", "x_um"]].to_numpy()
    on_granule = 0
    if len(spurious) and len(gr):
        d = np.hypot(*(spurious[:, None, :] - gr[None, :, :]).transpose(2, 0, 1))
        on_granule = int(np.sum(d.min(axis=1) < 3.0))
    err = matched_area_errors(lab, t_lab)
    # per-cell calls: each found cell against the truth cell under most of its pixels
    truth_call = dict(zip(truth["label"], truth["gfap_positive"], strict=True))
    right = calls_right(t_lab, lab, pos, truth_call)
    pos.attrs["calls_right"] = float(np.mean(right)) if right else float("nan")
    pos.attrs["n_true_positive"] = int(truth["gfap_positive"].sum())
    return m, len(table), len(truth), pct, pct_true, on_granule, pos, err


def _check(seed, snr, n_cells, px, *, max_area_error=0.10, max_bias=0.06, max_pct_error=3.0,
           min_calls_right=0.9, **kw):
    m, n_pred, n_true, pct, pct_true, on_granule, pos, err = _evaluate(seed, snr, n_cells, px, **kw)
    area = float(np.mean(np.abs(err)))
    msg = (f"seed={seed} snr={snr} n={n_cells} px={px}: {m} pct={pct:.1f} vs {pct_true:.1f} "
           f"calls right {pos.attrs['calls_right']:.3f} "
           f"|area error|={area:.3f} bias={np.mean(err):+.3f}")
    assert m["f1"] >= 0.95, msg
    # each matched cell's area within 10 % on average, and no systematic bias
    assert len(err) >= 0.9 * n_true, msg
    assert area <= max_area_error, msg
    assert abs(np.mean(err)) <= max_bias, msg
    assert abs(n_pred - n_true) <= max(1, 0.05 * n_true), msg
    assert abs(pct - pct_true) <= max_pct_error, msg
    assert pos.attrs["calls_right"] >= min_calls_right, msg
    assert on_granule == 0, msg
    pos.attrs["n_true"] = n_true
    return pos


@pytest.mark.parametrize(
    ("seed", "snr", "n_cells", "px"),
    [(0, 8.0, 40, 0.5), (1, 4.0, 40, 0.45), (3, 5.0, 50, 0.7)],
)
def test_phantom_accuracy(seed, snr, n_cells, px):
    _check(seed, snr, n_cells, px)


@pytest.mark.slow
@pytest.mark.parametrize("snr", [3.0, 4.0, 8.0, 16.0])
@pytest.mark.parametrize(("n_cells", "px"), [(30, 0.3), (60, 0.5), (60, 0.7)])
def test_phantom_accuracy_sweep(snr, n_cells, px):
    """Seeds 10 and 11 of each condition: segmentation per image, %GFAP+ over their cells.

    The issue's targets (area 10 %, bias 6 %, %GFAP+ within 3 pp) hold from SNR 4 up;
    at SNR 3 (cell signal 3x the background noise) we state the looser, measured
    envelope: area 14 %, bias 8 %, %GFAP+ within 8 pp (one or two dim cells' calls).
    %GFAP+ is held to 3 points over the two images' cells together, as the study pools
    its cells, and to 5 points in each image: the phantom's host astrocyte processes
    overlap some GFAP-negative donor cells in the projection, and one such cell of 30
    is 3.3 points. Each image must also have at least 90 % of its cells' calls right.
    """
    shape = (900, 900) if px < 0.4 else (640, 640)
    strict = snr >= 4
    found_pos = found = true_pos = true = 0
    for seed in (10, 11):
        pos = _check(seed, snr, n_cells, px, n_granules=40, shape=shape,
                     max_area_error=0.10 if strict else 0.14, max_bias=0.06 if strict else 0.08,
                     max_pct_error=5.0 if strict else 8.0, min_calls_right=0.9 if strict else 0.85)
        found_pos += int(pos["gfap_positive"].sum())
        found += len(pos)
        true_pos += pos.attrs["n_true_positive"]
        true += pos.attrs["n_true"]
    pooled, pooled_true = 100.0 * found_pos / found, 100.0 * true_pos / true
    assert abs(pooled - pooled_true) <= (3.0 if strict else 8.0), (pooled, pooled_true)


def test_bleed_through_estimate_on_phantom():
    pos = _check(5, 8.0, 40, 0.5)
    coef = float(pos["bleed_coefficient"].iloc[0])
    # the phantom adds 8 % of the GFP signal to GFAP; the background offsets of
    # the two channels differ a little, so allow a loose band
    assert 0.04 <= coef <= 0.16


# ------------------------------------------------------------- unit checks
def _disc_image(centres, radius, shape=(120, 120), level=200.0, bg=20.0, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, bg)
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = level
    return (img + rng.normal(0, 4, shape)).clip(0).astype(np.uint16)


def test_touching_cells_are_split_and_small_ones_dropped():
    px = 0.5
    # two touching 12 µm cells (r = 12 px) 20 px apart, one 2 µm speck
    img = _disc_image([(60, 40), (60, 60)], 12)
    img[20:24, 100:104] = 200
    lab = segment_gfp_cells(img, pixel_size_um=px)
    assert lab.max() == 2
    assert lab[22, 102] == 0
    # same biology at another pixel size gives the same count
    img2 = _disc_image([(30, 20), (30, 30)], 6, shape=(60, 60))
    assert segment_gfp_cells(img2, pixel_size_um=1.0).max() == 2


def test_empty_and_flat_images():
    flat = np.full((64, 64), 100, np.uint16)
    assert segment_gfp_cells(flat, pixel_size_um=0.5).max() == 0
    noise = np.random.default_rng(1).normal(100, 5, (128, 128)).astype(np.float32)
    assert segment_gfp_cells(noise, pixel_size_um=0.5).max() == 0


def test_granule_bright_in_every_channel_is_rejected():
    px = 1.0
    gfp = _disc_image([(30, 30), (80, 80)], 5)
    ref = np.stack([_disc_image([(80, 80)], 5, seed=s) for s in (1, 2, 3)])
    lab = segment_gfp_cells(gfp, pixel_size_um=px, reference=ref)
    assert lab.max() == 1 and lab[30, 30] > 0 and lab[80, 80] == 0
    # bright in only some reference channels: a real cell (e.g. DAPI nucleus)
    ref[1] = _disc_image([], 5, seed=9)
    assert segment_gfp_cells(gfp, pixel_size_um=px, reference=ref).max() == 2


def test_3d_counts_a_cell_once():
    zz, yy, xx = np.mgrid[:9, :80, :80]
    vol = 10.0 + 200 * (((zz - 4) * 1.5) ** 2 + (yy - 40) ** 2 + (xx - 30) ** 2 < 64)
    vol += 200 * (((zz - 2) * 1.5) ** 2 + (yy - 40) ** 2 + (xx - 60) ** 2 < 49)
    lab = segment_gfp_cells_3d(vol.astype(np.uint16), spacing_zyx=(1.5, 1.0, 1.0))
    assert lab.shape == vol.shape and lab.max() == 2


def test_gfap_positivity_rule_and_bleed_correction():
    rng = np.random.default_rng(0)
    lab = np.zeros((80, 220), np.int32)
    for k in range(10):
        lab[30:42, 6 + 21 * k : 18 + 21 * k] = k + 1
    gfp = 100 + rng.normal(0, 5, lab.shape) + 800 * (lab > 0)
    gfap_true = 300.0 * (lab > 6)  # cells 7..10 GFAP+
    gfap = 120 + rng.normal(0, 5, lab.shape) + gfap_true + 0.2 * gfp
    naive = gfap_positivity(lab, gfap, pixel_size_um=1.0, params=GfapPositivityParams(bleed_coefficient=0.0))
    assert naive["gfap_positive"].all()  # bleed-through alone looks "positive"
    res = gfap_positivity(lab, gfap, gfp=gfp, pixel_size_um=1.0)
    assert res["gfap_positive"].tolist() == [False] * 6 + [True] * 4
    assert res["bleed_coefficient"].iloc[0] == pytest.approx(0.2, abs=0.03)
    assert estimate_bleed_through(gfp, gfap, labels=lab, pixel_size_um=1.0) == pytest.approx(0.2, abs=0.03)
    assert {"label", "gfap_inside", "gfap_background", "gfap_ratio", "gfap_positive"} <= set(res.columns)
    empty = gfap_positivity(np.zeros_like(lab), gfap, pixel_size_um=1.0)
    assert len(empty) == 0 and "gfap_positive" in empty.columns


def test_validation():
    with pytest.raises(ValueError, match="pixel_size_um"):
        segment_gfp_cells(np.zeros((10, 10)), pixel_size_um=0)
    with pytest.raises(ValueError, match=r"\(Y, X\)"):
        segment_gfp_cells(np.zeros((2, 10, 10)), pixel_size_um=1.0)
    with pytest.raises(ConfigError):
        GfpCellParams(threshold_method="magic")
    with pytest.raises(ConfigError):
        GfapPositivityParams(ring_width_um=0)


def _rough_background_image(shape, px, seed):
    """Slowly varying tissue background + 10 µm bright discs + pixel noise, float32."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    bg = 300 + 4000 * ndi.gaussian_filter(rng.normal(0, 1, shape), 12 / px)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    discs = np.zeros(shape)
    n = round(shape[0] * shape[1] * px * px / 1500)  # one cell per 1500 µm²
    for cy, cx in rng.uniform(0, shape, (n, 2)):
        discs += 500 * (np.hypot(yy - cy, xx - cx) < 5 / px)
    return (bg + discs + rng.normal(0, 20, shape)).astype(np.float32)


@pytest.mark.parametrize(("seed", "px", "size_um", "origin"),
                         [(30, 0.5, 40.0, (37, 53)), (31, 0.37, 40.0, (101, 6)), (32, 0.65, 25.0, (5, 202))])
def test_background_of_a_window_anchored_at_its_origin_is_the_whole_images(seed, px, size_um, origin):
    from spinalquant.segment.gfp_cells import (
        background_block_px,
        background_reach_um,
        background_residual,
    )

    k = background_block_px(size_um, px)
    assert k > 1 and origin[0] % k and origin[1] % k  # the window's origin is not on a block corner
    m = int(np.ceil((background_reach_um(size_um) + 4 * 0.7) / px))  # reach of the background + smoothing
    m2 = m + int(np.ceil(20 / px))  # + a cell diameter and its outline's ring
    h = w = 2 * m2 + round(100 / px)  # an interior of 100 µm
    (y0, x0) = origin
    img = _rough_background_image((y0 + h + 40, x0 + w + 40), px, seed)
    kw = {"spacing": (px, px), "smooth_sigma_um": 0.7, "background_size_um": size_um}
    whole = background_residual(img, **kw)
    win = img[y0 : y0 + h, x0 : x0 + w]
    anchored = background_residual(win, origin_px=origin, **kw)
    plain = background_residual(win, **kw)
    inside = (slice(m, h - m), slice(m, w - m))
    ref = whole[y0 : y0 + h, x0 : x0 + w][inside]
    tol = 8 * np.finfo(np.float32).eps * float(np.abs(whole).max())  # float rounding of the interpolation
    np.testing.assert_allclose(anchored[inside], ref, rtol=0, atol=tol)
    # without the anchor the window pools other blocks: a visibly different background
    assert np.abs(plain[inside] - ref).max() > 100 * tol
    # segmentation uses it through GfpCellParams.origin_px: with the whole image's
    # threshold, the cells away from the window's edges are the whole image's
    thr, med, _ = detection_threshold(whole, noise_k=4.0)
    p = GfpCellParams(background_size_um=size_um, fixed_threshold=thr, fixed_median=med)
    cells = segment_gfp_cells(img, pixel_size_um=px, params=p)[y0 : y0 + h, x0 : x0 + w] > 0
    anchored_cells = segment_gfp_cells(
        win, pixel_size_um=px, params=dataclasses.replace(p, origin_px=origin)) > 0
    inner = (slice(m2, h - m2), slice(m2, w - m2))
    assert cells[inner].mean() > 0.01  # cells to compare
    assert np.array_equal(anchored_cells[inner], cells[inner])
    # 3-D: the anchor applies to y and x
    r3 = background_residual(np.stack([win] * 3), spacing=(2.0, px, px), smooth_sigma_um=0.0,
                             background_size_um=size_um, origin_px=origin)
    r2 = background_residual(win, spacing=(px, px), smooth_sigma_um=0.0, background_size_um=size_um,
                             origin_px=origin)
    np.testing.assert_allclose(r3[1], r2, rtol=0, atol=tol)


def test_origin_px_validation():
    from spinalquant.segment.gfp_cells import background_residual

    assert GfpCellParams(origin_px=[3, np.int64(4)]).origin_px == (3, 4)
    for bad in ((1.5, 0), (-1, 0), (1, 2, 3), (True, 0)):
        with pytest.raises(ConfigError, match="origin_px"):
            GfpCellParams(origin_px=bad)
    with pytest.raises(ValueError, match="origin_px"):
        background_residual(np.zeros((20, 20)), spacing=(1, 1), smooth_sigma_um=0, background_size_um=10,
                            origin_px=(0, -4))


def _ellipses(seed, ps=0.8, snr=5.0):
    """Four separate elongated, textured cells (aspect 1.3-2) in noise."""
    rng = np.random.default_rng(seed)
    n = int(120 / ps)
    yy, xx = np.mgrid[:n, :n] * ps
    cells = np.zeros((n, n))
    for cy, cx in [(30, 30), (30, 90), (90, 30), (90, 90)]:
        a, b, th = rng.uniform(8, 10), rng.uniform(5, 6.5), rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
        v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
        cells += ((u / a) ** 2 + (v / b) ** 2 < 1) * (1 + 0.15 * rng.standard_normal((n, n)))
    return (100 + snr * 10 * cells + rng.normal(0, 10, (n, n))).astype(np.float32)


def test_one_noisy_elongated_cell_is_not_split():
    """A ragged outline gives the distance transform two maxima, but no neck.

    Measured before the neck test: 31 extra cells in 24 of these 40 images."""
    counts = [int(segment_gfp_cells(_ellipses(s), pixel_size_um=0.8).max()) for s in range(40)]
    assert counts == [4] * 40, counts


def test_touching_cells_with_a_neck_stay_two():
    ps = 0.5
    yy, xx = np.mgrid[:120, :160] * ps
    rng = np.random.default_rng(3)
    found = []
    for gap_um in (9.0, 10.5, 12.0):  # centres of two 12 µm cells this far apart (overlapping)
        pair = (np.hypot(yy - 30, xx - 40) < 6) | (np.hypot(yy - 30, xx - 40 - gap_um) < 6)
        img = (100 + 60 * pair + rng.normal(0, 5, pair.shape)).astype(np.float32)
        found.append(int(segment_gfp_cells(img, pixel_size_um=ps).max()))
    assert found == [2, 2, 2], found


def _bleed_field(n_neg, n_pos=22, coef=0.1, seed=0):
    """Cells in a row: GFP varies, GFAP = coef * GFP (+ own GFAP in the positive ones)."""
    rng = np.random.default_rng(seed)
    n = n_neg + n_pos
    lab = np.zeros((40, 20 * n), np.int32)
    g = rng.normal(100, 3, lab.shape)
    f = rng.normal(80, 3, lab.shape)
    for k in range(n):
        cell = (slice(15, 25), slice(5 + 20 * k, 15 + 20 * k))
        lab[cell] = k + 1
        g[cell] += rng.uniform(300, 900)
        if k >= n_neg:
            f[cell] += rng.uniform(250, 600)
    return lab, g, f + coef * g


def test_bleed_through_with_few_gfap_negative_cells():
    """Most cells GFAP+ (the study: 85.7 %): a single GFAP-negative cell is enough, at any
    fraction of negatives (a lower quantile of the ratios would land on GFAP+ cells)."""
    for n_neg, n_pos in ((1, 22), (2, 22), (3, 22), (6, 22), (20, 5)):
        lab, g, f = _bleed_field(n_neg, n_pos=n_pos)
        coef = estimate_bleed_through(g, f, labels=lab, pixel_size_um=1.0)
        assert coef == pytest.approx(0.1, abs=0.01), (n_neg, coef)
    # no GFAP-negative cell at all: the weakest GFAP+ cells are taken for negatives, so
    # the estimate is too high (the documented case for a GFP-only control)
    lab, g, f = _bleed_field(0)
    assert estimate_bleed_through(g, f, labels=lab, pixel_size_um=1.0) > 0.3


def test_bleed_through_ignores_a_ring_that_caught_other_gfap():
    """A negative cell whose background ring lies on a bright GFAP structure has a GFAP
    excess below zero; it must not pull the estimate (and the correction) to 0."""
    lab, g, f = _bleed_field(3)
    ring = (slice(8, 14), slice(0, 20))  # above the first (negative) cell, 3-5 px from it
    f[ring] += 2000.0
    f[(slice(26, 32), slice(0, 20))] += 2000.0  # and below it: most of its ring
    coef = estimate_bleed_through(g, f, labels=lab, pixel_size_um=1.0)
    assert coef == pytest.approx(0.1, abs=0.01)



def _cells_with_dim_nucleus(seed, px, *, n=30, size_um=320.0, touch=0.0):
    """Irregular (star-shaped, elongated) GFP cells whose central nucleus is 35 % dimmer."""
    rng = np.random.default_rng(seed)
    shape = (int(size_um / px),) * 2
    yy, xx = np.mgrid[: shape[0], : shape[1]] * px
    truth = np.zeros(shape, np.int32)
    signal = np.zeros(shape)
    placed = []
    while len(placed) < n:
        r = rng.uniform(5, 9)
        if placed and rng.random() < touch:
            y0, x0, r0 = placed[rng.integers(len(placed))]
            ang = rng.uniform(0, 2 * np.pi)
            cy, cx = y0 + 0.95 * (r0 + r) * np.sin(ang), x0 + 0.95 * (r0 + r) * np.cos(ang)
            if not (15 < cy < size_um - 15 and 15 < cx < size_um - 15):
                continue
        else:
            cy, cx = rng.uniform(20, size_um - 20, 2)
            if any(np.hypot(cy - y0, cx - x0) < 1.6 * (r + r0) + 2.5 for y0, x0, r0 in placed):
                continue
        turn, elong = rng.uniform(0, np.pi), rng.uniform(1.0, 1.5)
        u = ((yy - cy) * np.cos(turn) + (xx - cx) * np.sin(turn)) / np.sqrt(elong)
        v = (-(yy - cy) * np.sin(turn) + (xx - cx) * np.cos(turn)) * np.sqrt(elong)
        k = np.arange(2, 6)[:, None, None]
        amp = rng.uniform(-1, 1, (4, 1, 1)) * 0.2 / np.sqrt(k)
        edge = r * (1 + (amp * np.cos(k * np.arctan2(v, u) + rng.uniform(0, 2 * np.pi, (4, 1, 1)))).sum(0))
        rel = np.hypot(u, v) / edge
        cell = (rel <= 1) & (truth == 0)
        if np.count_nonzero(cell) < 0.95 * np.count_nonzero(rel <= 1):
            continue
        truth[cell] = len(placed) + 1
        signal[cell] = rng.uniform(0.45, 1.0) * np.where(rel[cell] < 0.45, 0.65, 1.0)
        placed.append((cy, cx, r))
    signal = ndi.gaussian_filter(signal, 0.25 / px)
    return rng.poisson(100 + 60 * signal).astype(np.uint16), truth  # SNR 6 on a 100-photon background


@pytest.mark.parametrize("px", [0.5, 0.7, 1.0])
@pytest.mark.parametrize("touch", [0.0, 0.5])
def test_cells_with_a_dim_nucleus_are_not_split(px, touch):
    """A nucleus 35 % dimmer than the cytoplasm falls partly below the detection threshold
    on coarse pixels; the hole it leaves must not split the cell (it did: F1 0.71-0.80 at
    1 µm/px). Touching cells are still told apart. F1 ≥ 0.95 over the issue's 0.3-0.7 µm/px,
    ≥ 0.90 at 1 µm/px (a 5 µm cell is then 10 px across)."""
    found, true, scores = 0, 0, []
    for seed in (40, 41):
        img, truth = _cells_with_dim_nucleus(seed, px, touch=touch)
        lab = segment_gfp_cells(img, pixel_size_um=px)
        found += int(np.count_nonzero(np.bincount(lab.ravel())[1:]))
        true += int(truth.max())
        scores.append(match_labels(lab, truth, iou=0.5)["f1"])
    assert min(scores) >= (0.95 if px <= 0.7 else 0.90), scores
    assert abs(found - true) <= 0.05 * true, (found, true)
