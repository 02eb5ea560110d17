"""Puncta detection: synthetic spot fields, trackpy's reference localisations, phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from scipy.special import erf

from spinalquant.segment.puncta import PunctaParams, detect_puncta, local_noise, spot_response

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COLUMNS = ["y_px", "x_px", "y_um", "x_um", "amplitude", "snr"]


# ------------------------------------------------------------------ helpers
def _render(shape, ps, pts_um, amp, sigma_um):
    """Pixel-integrated Gaussian spots; ``amp`` is the peak of a pixel-centred spot."""
    out = np.zeros(shape)
    h = int(np.ceil(4 * sigma_um / ps)) + 2
    s2 = np.sqrt(2) * sigma_um
    peak = erf(0.5 * ps / s2) ** 2
    for (y, x), a in zip(pts_um, amp, strict=True):
        iy = np.arange(round(y / ps) - h, round(y / ps) + h + 1)
        ix = np.arange(round(x / ps) - h, round(x / ps) + h + 1)
        wy = 0.5 * (erf(((iy + 0.5) * ps - y) / s2) - erf(((iy - 0.5) * ps - y) / s2))
        wx = 0.5 * (erf(((ix + 0.5) * ps - x) / s2) - erf(((ix - 0.5) * ps - x) / s2))
        oky = (iy >= 0) & (iy < shape[0])
        okx = (ix >= 0) & (ix < shape[1])
        out[np.ix_(iy[oky], ix[okx])] += a * np.outer(wy[oky], wx[okx]) / peak
    return out


def spot_field(seed, ps, snr, *, sigma_um=0.2, density_per_um2=0.02, extent_um=100.0,
               background=50.0, read_noise=3.0):
    """Spots with Poisson + read noise on an uneven background.

    ``snr`` is the peak height of a pixel-centred spot over the background noise
    std (amplitudes vary 0.8-1.5x). Returns a uint16 image and the true (y, x) µm.
    """
    rng = np.random.default_rng(seed)
    n_px = int(extent_um / ps)
    shape = (n_px, n_px)
    n = int(density_per_um2 * extent_um**2)
    pts: list[np.ndarray] = []
    while len(pts) < n:  # at least 1.5 µm apart (resolvable at 0.7 µm pixels)
        p = rng.uniform(1, extent_um - 1, 2)
        if all(np.hypot(*(p - q)) > 1.5 for q in pts):
            pts.append(p)
    pts_a = np.array(pts)
    yy, xx = np.mgrid[:n_px, :n_px] * ps / extent_um
    bg = background * (0.6 + 0.8 * yy + 0.3 * np.sin(3 * xx))  # gradient + ripple
    noise_sd = np.sqrt(bg.mean() + read_noise**2)
    amp = snr * noise_sd * rng.uniform(0.8, 1.5, n)
    lam = bg + _render(shape, ps, pts_a, amp, sigma_um)
    img = rng.poisson(lam) + rng.normal(0, read_noise, shape) + 100
    return np.clip(img, 0, 65535).astype(np.uint16), pts_a


def match(found_yx, true_yx, tol):
    """Greedy one-to-one matching within ``tol``: (n_matched, distances of matches)."""
    if len(found_yx) == 0 or len(true_yx) == 0:
        return 0, np.array([])
    d, j = cKDTree(true_yx).query(found_yx, distance_upper_bound=tol)
    used: set[int] = set()
    dists = []
    for i in np.argsort(d):
        if np.isfinite(d[i]) and j[i] not in used:
            used.add(int(j[i]))
            dists.append(d[i])
    return len(dists), np.array(dists)


def f1(found_yx, true_yx, tol):
    tp, _ = match(found_yx, true_yx, tol)
    if tp == 0:
        return 0.0
    p, r = tp / len(found_yx), tp / len(true_yx)
    return 2 * p * r / (p + r)


# -------------------------------------------------------------------- basics
def test_empty_and_flat_images_have_header():
    for img in (np.zeros((40, 40), np.uint8), np.full((40, 40), 1000, np.uint16)):
        out = detect_puncta(img, pixel_size_um=0.3)
        assert list(out.columns) == COLUMNS and len(out) == 0


def test_single_spot_position_units_and_dtype_invariance():
    ps = 0.25
    pts = np.array([[5.13, 7.41]])
    rng = np.random.default_rng(3)
    base = _render((48, 48), ps, pts, [400.0], 0.2) + 100 + rng.normal(0, 4, (48, 48))
    results = []
    for dtype in (np.uint16, np.float32, np.float64):
        img = base.astype(dtype)
        before = img.copy()
        out = detect_puncta(img, pixel_size_um=ps)
        assert np.array_equal(img, before)  # input untouched
        assert len(out) == 1
        results.append(out)
        assert out.y_um[0] == pytest.approx(out.y_px[0] * ps)
        assert np.hypot(out.y_um[0] - 5.13, out.x_um[0] - 7.41) < 0.1  # < 0.4 px
        assert out.amplitude[0] == pytest.approx(400, rel=0.35)
    pd.testing.assert_frame_equal(results[1], results[2], atol=1e-3)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="2-D"):
        detect_puncta(np.zeros((2, 8, 8)), pixel_size_um=0.3)
    with pytest.raises(ValueError, match="pixel_size_um"):
        detect_puncta(np.zeros((8, 8)), pixel_size_um=0)
    with pytest.raises(ValueError, match="reference"):
        detect_puncta(np.zeros((8, 8)), pixel_size_um=0.3, reference=np.zeros((2, 9, 8)))
    with pytest.raises(ValueError, match="threshold_snr"):
        PunctaParams(threshold_snr=0)
    with pytest.raises(ValueError, match="background_ratio"):
        PunctaParams(background_ratio=1.0)


def test_detection_scale_follows_optics_and_pixel_size():
    p = PunctaParams()
    assert p.sigma_um() == pytest.approx(0.21 * 0.52 / 1.3)
    assert p.sigma_px(0.3) == pytest.approx(0.7)  # floored
    assert PunctaParams(psf_sigma_um=0.3).sigma_px(0.1) == pytest.approx(3.0)


def test_local_noise_is_robust_to_spots_and_follows_variance():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (200, 200))
    img[:, 100:] *= 3  # noisier right half
    img[::7, ::7] += 50  # 2% outliers
    med, sd = local_noise(img, window_px=20)
    assert np.median(sd[:, :80]) == pytest.approx(1.0, rel=0.15)
    assert np.median(sd[:, 120:]) == pytest.approx(3.0, rel=0.15)
    assert np.abs(np.median(med)) < 0.2


@pytest.mark.parametrize(("ps", "need_recall"), [(0.5, 0.98), (0.7, 0.88)])
def test_dense_puncta_do_not_inflate_the_noise_estimate(ps, need_recall):
    # ventral-horn neuropil density, 0.05 puncta/µm², from the independent generator:
    # with the tiles' plain median and MAD the response's sigma read 47-53 % above
    # the same generator's spot-free field (seeds 34-37), and 0.7 µm/px recall was
    # 0.80-0.83; without the pixels near spots (module notes, step 4) 1.03-1.08, 0.91-0.93
    import independent_phantoms as ip  # tests/ is on sys.path

    from spinalquant.measure.matching import match_points
    from spinalquant.segment.puncta import isolated_spots, noise_window_px

    kw = dict(pixel_size_um=ps, n_somata=0, snr=20.0, bg="flat")
    ph = ip.puncta_field(34, neuropil_density_per_um2=0.05, **kw)
    free = ip.puncta_field(34, neuropil_density_per_um2=0.0, **kw).projection()
    dense = ph.projection()
    sd = [np.median(isolated_spots(im, pixel_size_um=ps)["noise_sd"]) for im in (dense, free)]
    assert sd[0] / sd[1] <= 1.10, sd
    # the public helper says the same with the spot scale, and shows the inflation without it
    sigma, window = PunctaParams().sigma_px(ps), noise_window_px(ps)
    resp = [spot_response(im, sigma_px=sigma) for im in (dense, free)]
    ref = np.median(local_noise(resp[1], window_px=window)[1])
    assert np.median(local_noise(resp[0], window_px=window)[1]) / ref >= 1.3
    assert np.median(local_noise(resp[0], window_px=window, spot_sigma_px=sigma)[1]) / ref <= 1.10
    out = detect_puncta(dense, pixel_size_um=ps)
    m = match_points(out[["y_um", "x_um"]].to_numpy(), ph.truth[["y_um", "x_um"]].to_numpy(),
                     max_dist=1.0)
    assert m["recall"] >= need_recall and m["precision"] >= 0.99, m


def test_edge_pixels_noise_gain():
    # the filters repeat the edge pixels: in white noise the response is noisier on the
    # outermost rows and columns than inside, and the significance accounts for that
    from spinalquant.segment.puncta import _edge_gain

    h, w, sigma = 30, 23, 0.9
    var = np.zeros((h, w))
    for k in range(h * w):  # the response's variance: the sum of its squared impulse responses
        unit = np.zeros((h, w))
        unit.flat[k] = 1.0
        var += spot_response(unit, sigma_px=sigma).astype(np.float64) ** 2
    yy, xx = np.mgrid[:h, :w]
    gain = _edge_gain((h, w), sigma, 3.0, yy.ravel(), xx.ravel()).reshape(h, w)
    np.testing.assert_allclose(gain, np.sqrt(var / var[15, 11]), rtol=1e-4)
    assert gain[0, 11] > 1.1 and gain[15, 11] == pytest.approx(1.0)


# ----------------------------------------------------------- synthetic fields
@pytest.mark.parametrize("ps", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("snr", [12, 20])
def test_synthetic_spot_field_f1_and_subpixel(ps, snr):
    img, truth = spot_field(seed=int(ps * 10) + snr, ps=ps, snr=snr)
    out = detect_puncta(img, pixel_size_um=ps)
    found = out[["y_um", "x_um"]].to_numpy()
    score = f1(found, truth, tol=1.0)
    assert score >= 0.90, f"F1 {score:.3f} at {ps} µm/px, snr {snr}"
    # sub-pixel localisation: RMS error well below a pixel (integer pixels give ~0.41 px)
    _, d = match(found, truth, tol=1.0)
    rms_px = np.sqrt(np.mean(d**2)) / ps
    assert rms_px < 0.3, f"RMS localisation error {rms_px:.2f} px"


@pytest.mark.parametrize("ps", [0.3, 0.7])
def test_low_snr_does_not_hallucinate(ps):
    img, truth = spot_field(seed=7, ps=ps, snr=4)
    out = detect_puncta(img, pixel_size_um=ps)
    tp, _ = match(out[["y_um", "x_um"]].to_numpy(), truth, tol=1.0)
    assert len(out) > 0
    assert tp / len(out) >= 0.95  # precision stays high when recall drops


def test_pure_noise_false_positive_rate():
    rng = np.random.default_rng(11)
    ps, n = 0.4, 500  # 200 x 200 µm = 40 000 µm², max projection of 5 planes
    z = rng.poisson(40, (5, n, n)) + rng.normal(0, 3, (5, n, n))
    out = detect_puncta(z.max(axis=0), pixel_size_um=ps)
    assert len(out) <= 20  # < 0.5 per 1000 µm² (phantom neuropil density is 2)


def test_granules_rejected_with_reference_channels():
    ps = 0.4
    img, truth = spot_field(seed=5, ps=ps, snr=15, extent_um=60.0)
    rng = np.random.default_rng(6)
    gran = rng.uniform(5, 55, (12, 2))
    shape = img.shape
    spots_g = _render(shape, ps, gran, np.full(12, 600.0), 0.45)
    syn = img + spots_g.astype(np.uint16)
    # two reference channels: granules are bright in both, plus smooth structure
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blob = 300 * np.exp(-((yy - 60) ** 2 + (xx - 80) ** 2) / (2 * 25.0**2))
    refs = np.stack([
        rng.poisson(60 + blob + 0.8 * spots_g) + rng.normal(0, 3, shape),
        rng.poisson(40 + 0.6 * spots_g) + rng.normal(0, 3, shape),
    ])
    without = detect_puncta(syn, pixel_size_um=ps)
    with_ref = detect_puncta(syn, pixel_size_um=ps, reference=refs)
    n_gran = lambda df: match(df[["y_um", "x_um"]].to_numpy(), gran, 1.0)[0]  # noqa: E731
    assert n_gran(without) >= 10  # granules look like puncta in one channel...
    assert n_gran(with_ref) <= 1  # ...and are removed with the other channels
    tp, _ = match(with_ref[["y_um", "x_um"]].to_numpy(), truth, 1.0)
    assert tp >= 0.95 * match(without[["y_um", "x_um"]].to_numpy(), truth, 1.0)[0]
    # a spot bright in only ONE of the references is kept
    only_one = detect_puncta(syn, pixel_size_um=ps, reference=refs[:1] * 0 + refs[1:2].mean())
    assert n_gran(only_one) >= 10


# ------------------------------------------------------------ trackpy data
def test_trackpy_reference_localisations():
    folder = DATA / "spots_trackpy"
    if not folder.is_dir():
        pytest.skip(f"shared test data not found at {folder}")
    from skimage import io

    frame = io.imread(folder / "T76S3F00001.png")
    ref = np.load(folder / "reproducibility_v0.4.npz")["arr_3"]  # (y, x) of 344 features
    inverted = 255 - frame.astype(np.int16)  # dark particles on a bright background
    # colloids ~9 px across: sigma 1.5 px, background/noise window 40 px (no physical units)
    params = PunctaParams(psf_sigma_um=1.5, threshold_snr=5.0, noise_window_um=40.0)
    out = detect_puncta(inverted, pixel_size_um=1.0, params=params)
    found = out[["y_px", "x_px"]].to_numpy()
    d, _ = cKDTree(found).query(ref)
    recall = float(np.mean(d <= 1.0))
    assert recall >= 0.9, f"recall {recall:.3f} of trackpy's features within 1 px"
    assert np.sqrt(np.mean(d[d <= 1.0] ** 2)) < 0.3  # agrees to a fraction of a pixel
    # trackpy's minmass cut keeps the brightest; our brightest N agree mostly
    top = out.nlargest(len(ref), "amplitude")[["y_px", "x_px"]].to_numpy()
    d_top, _ = cKDTree(ref).query(top)
    assert np.mean(d_top <= 1.0) >= 0.75


# ---------------------------------------------------------------- phantoms
def _phantom_case(seed, ps, snr):
    synthetic = pytest.importorskip("spinalquant.synthetic")
    from spinalquant.preprocess import project

    ph = synthetic.make_cord_section(
        seed=seed, pixel_size_um=ps, snr=snr, shape=(int(160 / ps),) * 2,
        n_motor_neurons=3, n_small_chat=4, n_gfp_cells=6, n_granules=10,
    )
    st = ph.stack
    syn = project(st.channel("synapse"))
    refs = np.stack([project(st.channel(c)) for c in ("nuclei", "gfp", "gfap", "chat")])
    return ph, syn, refs


@pytest.mark.parametrize(("seed", "ps", "snr"), [(0, 0.3, 8.0), (1, 0.5, 6.0), (2, 0.7, 10.0)])
def test_phantom_puncta_f1(seed, ps, snr):
    ph, syn, refs = _phantom_case(seed, ps, snr)
    out = detect_puncta(syn, pixel_size_um=ps, reference=refs)
    truth = ph.truth["puncta"][["y_um", "x_um"]].to_numpy()
    score = f1(out[["y_um", "x_um"]].to_numpy(), truth, tol=1.0)
    assert score >= 0.90, f"puncta F1 {score:.3f}"
    # the phantom puts puncta as close as 0.9 µm (adjacent pixels at 0.7 µm/px):
    # such pairs are decomposed by the one- vs two-spot fit (module notes, step 6)
    assert abs(len(out) - len(truth)) <= 0.05 * len(truth), (len(out), len(truth))
    granules = ph.truth["granules"][["y_um", "x_um"]].to_numpy()
    assert match(out[["y_um", "x_um"]].to_numpy(), granules, 1.0)[0] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("ps", [0.3, 0.4, 0.5, 0.6, 0.7])
@pytest.mark.parametrize("snr", [6.0, 8.0, 12.0])
@pytest.mark.parametrize("seed", [10, 11])
def test_phantom_puncta_sweep(seed, ps, snr):
    ph, syn, refs = _phantom_case(seed, ps, snr)
    out = detect_puncta(syn, pixel_size_um=ps, reference=refs)
    truth = ph.truth["puncta"][["y_um", "x_um"]].to_numpy()
    score = f1(out[["y_um", "x_um"]].to_numpy(), truth, tol=1.0)
    assert score >= 0.90, f"puncta F1 {score:.3f} (seed {seed}, {ps} µm/px, snr {snr})"
    # counts within 5 %; dim puncta on 0.7 µm pixels: about 10 % are below the
    # detection threshold (isolated spots of response snr < 5, not merged pairs).
    # That is the detection limit, not a tuning gap: at an equal false-detection
    # rate no single-scale filter tried (DoG 0.4-0.7 px, sub-pixel-phase matched
    # filters) recovers more than ~2 % of them, and blob_log recovers none more
    # (benchmarks/bench_puncta_limit.py measures recall against brightness)
    tol = 0.13 if (ps >= 0.7 and snr <= 6) else 0.05
    assert abs(len(out) - len(truth)) <= tol * len(truth), (len(out), len(truth))


def test_close_pairs_are_split_single_spots_are_not():
    ps = 0.7
    rng = np.random.default_rng(21)
    # 30 pairs 1.4-1.6 µm apart (2-2.3 px: one smoothed maximum) and 30 single spots
    centres = np.array([(y, x) for y in np.arange(5, 77, 8.0) for x in np.arange(5, 77, 8.0)])
    rng.shuffle(centres)
    ang = rng.uniform(0, np.pi, 30)
    sep = rng.uniform(1.4, 1.6, 30)
    off = 0.5 * sep[:, None] * np.column_stack([np.sin(ang), np.cos(ang)])
    pairs = np.concatenate([centres[:30] + off, centres[:30] - off])
    singles = centres[30:60]
    pts = np.concatenate([pairs, singles])
    amp = 25 * np.sqrt(53.0) * rng.uniform(0.8, 1.2, len(pts))
    lam = 50 + _render((115, 115), ps, pts, amp, 0.25)
    img = (rng.poisson(lam) + rng.normal(0, 3, lam.shape)).clip(0).astype(np.uint16)
    split = detect_puncta(img, pixel_size_um=ps)
    merged = detect_puncta(img, pixel_size_um=ps, params=PunctaParams(split_snr=None))
    tp_split, _ = match(split[["y_um", "x_um"]].to_numpy(), pts, 0.7)
    tp_merged, _ = match(merged[["y_um", "x_um"]].to_numpy(), pts, 0.7)
    assert tp_merged <= 81  # pairs merge in the smoothed response...
    assert tp_split >= 84  # ...and most are resolved on the unsmoothed image
    # no single spot is split: at most one detection within 1 µm of each
    d = cKDTree(split[["y_um", "x_um"]].to_numpy()).query_ball_point(singles, 1.0)
    assert max(len(x) for x in d) == 1
    assert len(split) <= len(pts) + 1


def _pairs_and_singles(seed, snr, ps=0.7, sep_um=(0.9, 1.2)):
    """30 pairs ``sep_um`` apart (adjacent pixels at 0.7 µm/px) and 51 single spots.

    Pair spots have sigma 0.25 µm; singles 0.2-0.4 µm (boutons of several sizes),
    so a wide single is not mistaken for a pair. ``snr`` is the peak of a
    pixel-centred spot over the background noise (amplitudes vary 0.8-1.25x).
    Also returns the Gaussian heights (image units) of the 60 pair spots.
    """
    rng = np.random.default_rng(seed)
    centres = np.array([(y, x) for y in np.arange(5, 77, 8.0) for x in np.arange(5, 77, 8.0)])
    rng.shuffle(centres)
    ang = rng.uniform(0, np.pi, 30)
    off = 0.5 * rng.uniform(*sep_um, 30)[:, None] * np.column_stack([np.sin(ang), np.cos(ang)])
    pairs = np.stack([centres[:30] + off, centres[:30] - off], axis=1)  # (30, 2, 2)
    singles = centres[30:]
    shape, noise_sd = (115, 115), np.sqrt(50 + 3.0**2)
    amp = snr * noise_sd * rng.uniform(0.8, 1.25, 60)
    lam = 50 + _render(shape, ps, pairs.reshape(-1, 2), amp, 0.25)
    for p, s in zip(singles, rng.uniform(0.2, 0.4, len(singles)), strict=True):
        lam += _render(shape, ps, p[None], [snr * noise_sd * rng.uniform(0.8, 1.25)], s)
    img = (rng.poisson(lam) + rng.normal(0, 3, shape)).clip(0).astype(np.uint16)
    s = 0.25 / ps
    height = amp / erf(0.5 / (np.sqrt(2) * s)) ** 2 / (2 * np.pi * s * s)
    return img, pairs, singles, height


def _resolved_pairs(found, pairs, tol=0.4):
    """Pairs both of whose spots have their own detection within ``tol`` µm; their errors."""
    tree = cKDTree(found)
    n, err = 0, []
    for a, b in pairs:
        (da, ia), (db, ib) = tree.query(a), tree.query(b)
        if da < tol and db < tol and ia != ib:
            n += 1
            err += [da, db]
    return n, np.asarray(err)


@pytest.mark.parametrize(("seed", "snr", "need"), [(1, 25.0, 28), (2, 15.0, 22)])
def test_unresolved_pairs_are_decomposed_single_spots_never(seed, snr, need):
    ps = 0.7
    img, pairs, singles, height = _pairs_and_singles(seed, snr, ps)
    out = detect_puncta(img, pixel_size_um=ps)
    found = out[["y_um", "x_um"]].to_numpy()
    resolved, err = _resolved_pairs(found, pairs)
    assert resolved >= need, f"{resolved}/30 pairs 0.9-1.2 µm apart resolved"
    assert np.sqrt(np.mean(err**2)) < 0.2  # each spot of a pair located to < 0.3 px
    # a decomposed spot's amplitude is its Gaussian's height (measured 0.95-1.07 x,
    # seeds 1, 2, 31, 32; the pixel value at its centre would read ~0.56 x)
    d, i = cKDTree(found).query(pairs.reshape(-1, 2))
    ratio = out["amplitude"].to_numpy()[i[d < 0.4]] / height[d < 0.4]
    assert 0.85 < np.median(ratio) < 1.15
    # single spots (also the wide ones) are never split
    assert max(len(n) for n in cKDTree(found).query_ball_point(singles, 1.5)) == 1
    # nothing else appears: at most two detections per pair, one per single
    assert len(out) <= 2 * len(pairs) + len(singles)
    # without splitting such pairs stay merged (one smoothed maximum, no dip)
    merged = detect_puncta(img, pixel_size_um=ps, params=PunctaParams(split_snr=None))
    assert _resolved_pairs(merged[["y_um", "x_um"]].to_numpy(), pairs)[0] <= 3


def test_decomposed_spots_stay_inside_the_image():
    # pairs cut by the image edge: a fitted centre must not drift outside it
    # (without the check 35 of 360 such crops, seeds 1-3, gave one)
    ps = 0.7
    img, pairs, _, _ = _pairs_and_singles(3, 20.0, ps)
    n_split = 0
    for py, px in pairs[:, 0, :] / ps:
        for y0, x0 in ((round(py) - 1, round(px) - 1), (round(py), round(px))):
            sub = img[max(0, y0):, max(0, x0):]
            out = detect_puncta(sub, pixel_size_um=ps)
            y, x = out["y_px"].to_numpy(), out["x_px"].to_numpy()
            assert np.all((y >= -0.5) & (y < sub.shape[0] - 0.5) & (x >= -0.5) & (x < sub.shape[1] - 0.5))
            n_split += int(np.count_nonzero((y < 2) & (x < 2)) >= 2)
    assert n_split >= 5  # pairs at the corner are still decomposed


# ------------------------------------------------------- image-wide calibration
def test_calibration_overrides_validated():
    with pytest.raises(ValueError, match="together"):
        PunctaParams(fixed_spot_sigma_px=0.7)
    with pytest.raises(ValueError, match="fixed_split_excess"):
        PunctaParams(fixed_spot_sigma_px=0.7, fixed_misfit=1.2, fixed_split_excess=0.5)
    with pytest.raises(ValueError, match="fixed_noise_floor"):
        PunctaParams(fixed_noise_floor=float("nan"))
    with pytest.raises(ValueError, match="origin_px"):
        PunctaParams(origin_px=(3, -1))
    assert PunctaParams(origin_px=[4, 5]).origin_px == (4, 5)
    p = PunctaParams(fixed_spot_sigma_px=0.7, fixed_misfit=1.2, fixed_split_excess=1.5)
    assert p.split_calibration() == (0.7, 1.2, 1.5)
    assert PunctaParams().split_calibration() is None


@pytest.mark.parametrize(("seed", "ps"), [(21, 0.5), (22, 0.7)])
def test_calibration_gathered_window_by_window_is_the_whole_images(seed, ps):
    from spinalquant.segment.puncta import image_wide_calibration, isolated_spots
    from spinalquant.synthetic import make_cord_section

    ph = make_cord_section(seed=seed, shape=(480, 480), pixel_size_um=ps, n_motor_neurons=4,
                           n_gfp_cells=10)
    syn = ph.stack.channel("synapse").max(axis=0)
    def read(y0, y1, x0, x1):
        return syn[y0:y1, x0:x1]

    whole = image_wide_calibration([isolated_spots(syn, pixel_size_um=ps)], pixel_size_um=ps, read=read)
    assert set(whole) == {"fixed_noise_floor", "fixed_spot_sigma_px", "fixed_misfit",
                          "fixed_split_excess", "fixed_scale_px"}
    # the whole image's own calibration, given back: the very same puncta
    base = detect_puncta(syn, pixel_size_um=ps)
    assert len(base) > 150
    pd.testing.assert_frame_equal(detect_puncta(syn, pixel_size_um=ps, params=PunctaParams(**whole)),
                                  base)
    # gathered over overlapping windows (origins off the noise grid): the same numbers, and
    # each window, told its calibration and origin, finds its core's puncta as the whole image
    parts = assert_tiled_equals_whole(syn, ps, whole, base, read, tile_px=170, margin_px=40)
    with pytest.raises(ValueError, match="read"):
        image_wide_calibration(parts, pixel_size_um=ps)
    # a different calibration changes the decomposition
    other = PunctaParams(**{**whole, "fixed_split_excess": 50.0})
    assert len(detect_puncta(syn, pixel_size_um=ps, params=other)) < len(base)


def assert_tiled_equals_whole(img, ps, whole, base, read, *, tile_px, margin_px):
    """A tiled run over ``img``: windows gathered, calibrated image-wide (must equal ``whole``)
    and detected with that calibration and their origins; the cores' puncta must be the whole
    image's ``base`` to 1e-9. Returns the windows' :func:`isolated_spots`."""
    from spinalquant.segment.puncta import image_wide_calibration, isolated_spots
    from spinalquant.tiling import tile_grid

    tiles = tile_grid(img.shape, tile_px=tile_px, margin_px=margin_px)
    parts = []
    for t in tiles:
        y0, y1, x0, x1 = t.window
        parts.append(isolated_spots(img[y0:y1, x0:x1], pixel_size_um=ps, core=t.core, origin=(y0, x0),
                                    image_shape=img.shape))
    assert image_wide_calibration(parts, pixel_size_um=ps, read=read) == whole
    got = []
    for t in tiles:
        y0, y1, x0, x1 = t.window
        df = detect_puncta(img[y0:y1, x0:x1], pixel_size_um=ps,
                           params=PunctaParams(**whole, origin_px=(y0, x0)))
        df = df.assign(y_px=df.y_px + y0, x_px=df.x_px + x0)
        cy0, cy1, cx0, cx1 = t.core
        iy, ix = np.rint(df.y_px), np.rint(df.x_px)
        got.append(df[(iy >= cy0) & (iy < cy1) & (ix >= cx0) & (ix < cx1)])
    got = pd.concat(got).sort_values(["y_px", "x_px"]).reset_index(drop=True)
    assert len(got) == len(base)
    for col in ("y_px", "x_px", "amplitude", "snr"):
        assert np.allclose(got[col], base[col], rtol=1e-9, atol=1e-9), col
    return parts
