"""Motor-neuron segmentation, measurement and perisomatic puncta."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from spinalquant.measure.synapses import assign_puncta, perisomatic_puncta
from spinalquant.segment.motor_neurons import (
    MotorNeuronParams,
    background_bin_px,
    foreground,
    measure_motor_neurons,
    remove_background,
    segment_motor_neurons,
    threshold_levels,
)
from spinalquant.segment.puncta import detect_puncta

MN_COLUMNS = ["label", "y_um", "x_um", "area_um2", "perimeter_um", "equivalent_diameter_um"]


# ------------------------------------------------------------------ helpers
def _scene(ps, *, seed=0, snr=8.0):
    """ChAT-like image: somata with dim nuclei, a touching pair, dendrites, small cells.

    Returns (image uint16, list of (y_um, x_um, kind)) with kind 'mn' or 'small'.
    """
    rng = np.random.default_rng(seed)
    ext = 240.0
    n = int(ext / ps)
    yy, xx = (np.mgrid[:n, :n] * ps).astype(float)
    sig = np.zeros((n, n))
    truth = []

    def soma(cy, cx, r, kind, bright=1.0):
        d = np.hypot(yy - cy, xx - cx)
        body = d < r
        nucleus = np.hypot(yy - cy - 1, xx - cx + 1) < 0.4 * r
        sig[body] = np.maximum(sig[body], bright * np.where(nucleus[body], 0.25, 1.0))
        truth.append((cy, cx, kind))

    soma(50, 50, 14, "mn")
    soma(60, 170, 12, "mn", bright=0.6)  # a dim neuron (ALS)
    soma(150, 60, 12.5, "mn")  # touching pair, centres 23 µm apart
    soma(150, 83, 12.5, "mn")
    soma(180, 180, 15, "mn")
    for cy, cx in ((110, 130), (40, 110), (200, 110), (120, 200)):
        soma(cy, cx, 6.5, "small")  # ~130 µm² ChAT+ interneurons
    # thin dendrites (1.2 µm wide) radiating from two neurons
    from skimage.draw import line

    den = np.zeros((n, n), bool)
    for cy, cx, ang in ((50, 50, 0.3), (180, 180, 2.5), (180, 180, 4.0)):
        y0, x0 = cy + 14 * np.sin(ang), cx + 14 * np.cos(ang)
        y1, x1 = cy + 60 * np.sin(ang), cx + 60 * np.cos(ang)
        rr, cc = line(int(y0 / ps), int(x0 / ps), int(y1 / ps), int(x1 / ps))
        ok = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
        den[rr[ok], cc[ok]] = True
    den = ndi.distance_transform_edt(~den) * ps <= 0.6
    sig[den] = np.maximum(sig[den], 0.8)
    sig = ndi.gaussian_filter(sig, 0.3 / ps)
    bg = 30.0 * (1 + 0.4 * (yy / ext) - 0.3 * (xx / ext) ** 2)
    noise_sd = np.sqrt(30.0 + 9.0)
    lam = bg + snr * noise_sd * sig
    img = rng.poisson(lam) + rng.normal(0, 3, (n, n))
    return np.clip(img * 8 + 100, 0, 65535).astype(np.uint16), truth


def _match(found_yx, true_yx, tol):
    if len(found_yx) == 0 or len(true_yx) == 0:
        return 0
    d, j = cKDTree(true_yx).query(found_yx, distance_upper_bound=tol)
    used: set[int] = set()
    for i in np.argsort(d):
        if np.isfinite(d[i]) and j[i] not in used:
            used.add(int(j[i]))
    return len(used)


# ------------------------------------------------------------ segmentation
@pytest.mark.parametrize("ps", [0.3, 0.5, 0.7])
def test_scene_somata_split_small_cells_excluded(ps):
    img, truth = _scene(ps, seed=int(ps * 10))
    before = img.copy()
    labels = segment_motor_neurons(img, pixel_size_um=ps)
    assert np.array_equal(img, before)
    assert labels.dtype == np.int32 and labels.shape == img.shape
    table = measure_motor_neurons(labels, pixel_size_um=ps)
    mn = np.array([(y, x) for y, x, k in truth if k == "mn"])
    small = np.array([(y, x) for y, x, k in truth if k == "small"])
    found = table[["y_um", "x_um"]].to_numpy()
    assert len(table) == len(mn)  # the touching pair is split, nothing else appears
    assert _match(found, mn, 3.0) == len(mn)
    assert _match(found, small, 8.0) == 0
    # areas close to the disc areas: dim nucleus filled, dendrites cut off
    areas = table.sort_values(["y_um", "x_um"])["area_um2"].to_numpy()
    radii = {(50, 50): 14, (60, 170): 12, (150, 60): 12.5, (150, 83): 12.5, (180, 180): 15}
    for (cy, cx), r in radii.items():
        i = np.argmin(np.hypot(table.y_um - cy, table.x_um - cx))
        assert table.area_um2.iloc[i] == pytest.approx(np.pi * r**2, rel=0.12)
    assert np.all(areas >= 300)


@pytest.mark.parametrize("ps", [0.3, 0.5, 0.7])
def test_nucleus_behind_a_thin_rim_is_part_of_the_soma(ps):
    # the nucleus lies 0.5 µm from the soma edge: blurred, that rim falls below
    # the soma's half-maximum and the nucleus opens to the outside (a bay)
    rng = np.random.default_rng(7)
    n = int(100 / ps)
    yy, xx = np.mgrid[:n, :n] * ps
    body = np.hypot(yy - 50, xx - 50) < 13  # 531 µm²
    nucleus = np.hypot(yy - 50, xx - 56.5) < 6
    sig = ndi.gaussian_filter(np.where(body, np.where(nucleus, 0.3, 1.0), 0.0), 0.6 / ps)
    img = (rng.poisson(30 + 8 * np.sqrt(39) * sig) * 8 + 100).astype(np.uint16)
    true_area = body.sum() * ps**2
    t = measure_motor_neurons(segment_motor_neurons(img, pixel_size_um=ps), pixel_size_um=ps)
    assert len(t) == 1
    assert t.area_um2.iloc[0] == pytest.approx(true_area, rel=0.05)
    # without the bay filling the nucleus is lost (a fifth of the soma)
    off = segment_motor_neurons(img, pixel_size_um=ps, params=MotorNeuronParams(nucleus_level=0.0))
    assert (off > 0).sum() * ps**2 < 0.85 * true_area
    with pytest.raises(ValueError, match="nucleus_level"):
        MotorNeuronParams(nucleus_level=0.6)


def _taper(yy, xx, cy, cx, ang, start, length, w0, w1):
    """Mask of a process leaving (cy, cx) at angle ``ang`` (rad): from ``start``
    µm out, ``length`` µm long, tapering from ``w0`` to ``w1`` µm wide."""
    uy, ux = np.sin(ang), np.cos(ang)
    along = (yy - cy) * uy + (xx - cx) * ux
    across = np.abs(-(yy - cy) * ux + (xx - cx) * uy)
    frac = np.clip((along - start) / length, 0, 1)
    return (along >= start) & (along <= start + length) & (across <= (w0 + (w1 - w0) * frac) / 2)


def _noisy(sig, bg, ps, seed):
    rng = np.random.default_rng(seed)
    img = rng.poisson(30 * bg + 8 * np.sqrt(39) * ndi.gaussian_filter(sig, 0.4 / ps))
    return (img * 8 + 100).astype(np.uint16)


@pytest.mark.parametrize("ps", [0.35, 0.7])
def test_background_haze_is_no_soma_and_joins_none(ps):
    # autofluorescent haze: smooth swellings tens of µm across, one alone (as
    # bright as a dim soma at its top) and one under a bright soma
    n = round(220 / ps)
    yy, xx = np.mgrid[:n, :n] * ps
    sig = np.zeros((n, n))
    sig[np.hypot(yy - 60, xx - 60) < 15] = 1.3
    sig[np.hypot(yy - 160, xx - 150) < 13] = 0.55  # dim (ALS)
    bg = (1 + 1.0 * np.exp(-(np.hypot(yy - 150, xx - 50) / 25) ** 2 / 2)
          + 0.8 * np.exp(-(np.hypot(yy - 70, xx - 75) / 30) ** 2 / 2))
    img = _noisy(sig, bg, ps, seed=round(ps * 10))
    t = measure_motor_neurons(segment_motor_neurons(img, pixel_size_um=ps), pixel_size_um=ps)
    assert len(t) == 2, t
    for cy, cx, r in ((60, 60, 15), (160, 150, 13)):
        i = np.argmin(np.hypot(t.y_um - cy, t.x_um - cx))
        assert np.hypot(t.y_um.iloc[i] - cy, t.x_um.iloc[i] - cx) < 2.0
        assert t.area_um2.iloc[i] == pytest.approx(np.pi * r**2, rel=0.10)
    # with neither the sharp-edge test nor a soma-scale background, the swelling
    # is counted (the mechanism this guards against)
    old = MotorNeuronParams(edge_contrast=0.0, background_radius_um=60.0)
    assert segment_motor_neurons(img, pixel_size_um=ps, params=old).max() > 2


@pytest.mark.parametrize("ps", [0.35, 0.7])
def test_long_dendrites_cut_short_stumps_kept(ps):
    n = round(200 / ps)
    yy, xx = np.mgrid[:n, :n] * ps
    sig = np.zeros((n, n))
    body_a = np.hypot(yy - 60, xx - 70) < 14
    body_b = np.hypot(yy - 140, xx - 130) < 14
    long_a = _taper(yy, xx, 60, 70, 0.4, 10, 40, 6, 1.5) | _taper(yy, xx, 60, 70, 3.0, 10, 32, 6, 1.5)
    short_b = _taper(yy, xx, 140, 130, 0.9, 10, 11, 6, 2.5) | _taper(yy, xx, 140, 130, 4.0, 10, 11, 6, 2.5)
    sig[body_a | long_a | body_b | short_b] = 1.0
    img = _noisy(sig, np.ones((n, n)), ps, seed=3)
    t = measure_motor_neurons(segment_motor_neurons(img, pixel_size_um=ps), pixel_size_um=ps)
    assert len(t) == 2
    a = t.iloc[np.argmin(np.hypot(t.y_um - 60, t.x_um - 70))]
    b = t.iloc[np.argmin(np.hypot(t.y_um - 140, t.x_um - 130))]
    # dendrites 40 and 32 µm long are not the soma; 7 µm stumps are (manual outlines)
    assert np.hypot(a.y_um - 60, a.x_um - 70) < 1.5
    assert a.area_um2 == pytest.approx(body_a.sum() * ps**2, rel=0.08)
    assert b.area_um2 == pytest.approx((body_b | short_b).sum() * ps**2, rel=0.08)
    kept = segment_motor_neurons(img, pixel_size_um=ps, params=MotorNeuronParams(stump_length_ratio=None))
    ka = measure_motor_neurons(kept, pixel_size_um=ps)
    assert ka.area_um2.max() > 1.2 * body_a.sum() * ps**2


def test_min_area_parameter_and_border_exclusion():
    ps = 0.5
    img, _ = _scene(ps)
    everything = segment_motor_neurons(img, pixel_size_um=ps, params=MotorNeuronParams(min_area_um2=50))
    assert everything.max() == 9  # small ChAT+ cells appear when the size cut is lowered
    big = segment_motor_neurons(img, pixel_size_um=ps, params=MotorNeuronParams(min_area_um2=560))
    assert big.max() == 2  # only the 14 and 15 µm-radius somata (616 and 707 µm²)
    shifted = img[:, 80:]  # cut two somata at the left edge
    kept = segment_motor_neurons(shifted, pixel_size_um=ps)
    dropped = segment_motor_neurons(shifted, pixel_size_um=ps,
                                    params=MotorNeuronParams(exclude_border=True))
    assert 0 < dropped.max() < kept.max()


def test_fixed_levels_reproduce_the_image_own_and_change_the_outlines():
    ps = 0.5
    img, _ = _scene(ps, seed=3)
    base = segment_motor_neurons(img, pixel_size_um=ps)
    levels = threshold_levels(foreground(img, pixel_size_um=ps), threshold_snr=3.0)
    same = segment_motor_neurons(img, pixel_size_um=ps, params=MotorNeuronParams(fixed_levels=levels))
    assert base.max() == 5 and np.array_equal(same, base)
    low, high, floor, med = levels
    tight = (low, high, floor + 0.9 * (low - floor), med)  # a higher floor for the nucleus
    # each soma is cut half way between its surround (at least the median) and
    # its brightness, far above the extent level: a higher median moves the cut
    higher = segment_motor_neurons(img, pixel_size_um=ps, params=MotorNeuronParams(
        fixed_levels=(low, high, floor, med + 0.5 * (floor - med))))
    assert np.count_nonzero(higher) != np.count_nonzero(base)
    assert MotorNeuronParams(fixed_levels=tight).fixed_levels == tuple(float(v) for v in tight)
    with pytest.raises(ValueError, match="fixed_levels"):
        MotorNeuronParams(fixed_levels=(high, low, floor, med))  # low above high
    with pytest.raises(ValueError, match="origin_px"):
        MotorNeuronParams(origin_px=(-1, 0))


def test_background_of_a_window_anchored_on_the_image_blocks():
    # a window told its origin pools the whole image's blocks: the same background
    # away from the window's edge (beyond the opening's and the smoothing's reach)
    rng = np.random.default_rng(5)
    ps, radius = 1.0, 10.0
    assert background_bin_px(ps, MotorNeuronParams(background_radius_um=radius)) == 2
    img = ndi.gaussian_filter(rng.normal(100, 20, (240, 240)), 3) + np.linspace(0, 50, 240)
    whole = remove_background(img, pixel_size_um=ps, radius_um=radius)
    y0, x0 = 37, 53  # not multiples of the 2 px blocks
    win = img[y0:, x0:]
    inner = (slice(60, -1), slice(60, -1))
    anchored = remove_background(win, pixel_size_um=ps, radius_um=radius, origin_px=(y0, x0))
    plain = remove_background(win, pixel_size_um=ps, radius_um=radius)
    err = np.abs(anchored[inner] - whole[y0:, x0:][inner]).max()
    assert err < 1e-3
    assert np.abs(plain[inner] - whole[y0:, x0:][inner]).max() > 100 * err + 1e-3


def test_dtype_and_empty_inputs():
    ps = 0.5
    img, _ = _scene(ps, seed=3)
    a = segment_motor_neurons(img, pixel_size_um=ps)
    b = segment_motor_neurons(img.astype(np.float32), pixel_size_um=ps)
    assert np.array_equal(a, b)
    assert segment_motor_neurons(np.zeros((80, 80), np.uint8), pixel_size_um=ps).max() == 0
    noise = np.random.default_rng(0).normal(100, 5, (300, 300))
    assert segment_motor_neurons(noise, pixel_size_um=ps).max() == 0
    empty = measure_motor_neurons(np.zeros((10, 10), np.int32), pixel_size_um=ps)
    assert list(empty.columns) == MN_COLUMNS and len(empty) == 0
    with pytest.raises(ValueError, match="2-D"):
        segment_motor_neurons(np.zeros((2, 8, 8)), pixel_size_um=ps)
    with pytest.raises(ValueError, match="pixel_size_um"):
        segment_motor_neurons(np.zeros((8, 8)), pixel_size_um=-1)
    with pytest.raises(ValueError, match="max_area_um2"):
        MotorNeuronParams(min_area_um2=300, max_area_um2=200)


def test_measure_matches_regionprops_units():
    lab = np.zeros((100, 100), np.int32)
    yy, xx = np.mgrid[:100, :100]
    lab[np.hypot(yy - 40, xx - 50) < 20] = 1
    lab[70:90, 10:30] = 2
    t = measure_motor_neurons(lab, pixel_size_um=0.4)
    assert list(t.columns) == MN_COLUMNS
    assert t.area_um2.iloc[1] == pytest.approx(400 * 0.16)
    assert t.y_um.iloc[0] == pytest.approx(40 * 0.4) and t.x_um.iloc[0] == pytest.approx(50 * 0.4)
    assert t.equivalent_diameter_um.iloc[0] == pytest.approx(40 * 0.4, rel=0.02)
    assert t.perimeter_um.iloc[0] == pytest.approx(2 * np.pi * 20 * 0.4, rel=0.05)


# ---------------------------------------------------------- perisomatic puncta
def test_assign_puncta_rules():
    ps = 0.5
    lab = np.zeros((100, 100), np.int32)
    lab[20:40, 20:40] = 1  # 10 µm square, outline at y = 10..19.5 µm
    lab[20:40, 48:68] = 2  # 4 µm (8 px) gap between the two
    pts = pd.DataFrame({
        "y_um": [15.0, 8.5, 15.0, 15.0, 15.0, 15.0, 10.5, 15.0, 40.0],
        "x_um": [8.5, 15.0, 21.0, 22.5, 12.0, 15.0, 10.5, 24.5, 40.0],
    })
    got = assign_puncta(lab, pts, pixel_size_um=ps).tolist()
    # 1.5 µm left, 1.5 µm above, 1.5 µm right of soma 1 (nearer than soma 2),
    # 1.5 µm left of soma 2 -> soma 2, 3.5 µm away -> none, 5 µm deep -> none,
    # on the outline corner -> 1, between (nearest is 2), far -> none
    assert got == [1, 1, 1, 2, 0, 0, 1, 2, 0]
    strict = assign_puncta(lab, pd.DataFrame({"y_um": [11.0], "x_um": [15.0]}),
                           pixel_size_um=ps, inside_um=0.0)
    assert strict.tolist() == [0]  # 1 µm inside is not counted with inside_um = 0



@pytest.mark.parametrize("ps", [0.3, 0.5, 0.7])
def test_band_measured_from_the_outline_at_every_pixel_size(ps):
    # a soma whose left edge (a pixel edge) lies at x = 20 µm: puncta 1.9 µm and
    # 2.1 µm outside it, 0.9 µm and 1.1 µm inside it, whatever the pixel size
    n = round(60 / ps)
    lab = np.zeros((n, n), np.int32)
    edge_px = round(20 / ps)
    lab[:, edge_px:] = 3
    edge_um = (edge_px - 0.5) * ps
    pts = pd.DataFrame({"y_um": [30.0] * 4, "x_um": edge_um + np.array([-1.9, -2.1, 0.9, 1.1])})
    assert assign_puncta(lab, pts, pixel_size_um=ps).tolist() == [3, 0, 3, 0]

def test_perisomatic_counts_and_normalisation():
    ps = 0.25
    lab = np.zeros((200, 200), np.int32)
    yy, xx = np.mgrid[:200, :200]
    lab[np.hypot(yy - 100, xx - 100) < 60] = 7  # radius 15 µm
    rng = np.random.default_rng(2)
    ang = rng.uniform(0, 2 * np.pi, 60)
    rad = np.r_[rng.uniform(15.2, 16.8, 30), rng.uniform(17.6, 20, 20), rng.uniform(0, 12, 10)]
    pts = pd.DataFrame({"y_um": 25 + rad * np.sin(ang), "x_um": 25 + rad * np.cos(ang)})
    t = perisomatic_puncta(lab, pts, pixel_size_um=ps)
    assert t.label.tolist() == [7]
    assert t.n_puncta.iloc[0] == 30  # the ring within 2 µm; farther and deep ones not
    assert t.perimeter_um.iloc[0] == pytest.approx(2 * np.pi * 15, rel=0.05)
    assert t.puncta_per_100um.iloc[0] == pytest.approx(100 * 30 / t.perimeter_um.iloc[0])
    empty = perisomatic_puncta(np.zeros((5, 5), np.int32), pts, pixel_size_um=ps)
    assert list(empty.columns) == ["label", "n_puncta", "perimeter_um", "puncta_per_100um"]
    none = perisomatic_puncta(lab, pts.iloc[:0], pixel_size_um=ps)
    assert none.n_puncta.tolist() == [0]
    with pytest.raises(ValueError, match="y_um"):
        perisomatic_puncta(lab, pd.DataFrame({"y": [1.0]}), pixel_size_um=ps)


# ---------------------------------------------------------------- phantoms
def _phantom(seed, ps, snr, size_um=240.0, n_mn=5):
    synthetic = pytest.importorskip("spinalquant.synthetic")
    from spinalquant.preprocess import project

    ph = synthetic.make_cord_section(
        seed=seed, pixel_size_um=ps, snr=snr, shape=(int(size_um / ps),) * 2,
        n_motor_neurons=n_mn, n_small_chat=8, n_gfp_cells=6, n_granules=10,
    )
    return ph, project


def _evaluate(ph, project, ps):
    st = ph.stack
    chat = project(st.channel("chat"))
    labels = segment_motor_neurons(chat, pixel_size_um=ps)
    table = measure_motor_neurons(labels, pixel_size_um=ps)
    truth = ph.truth["motor_neurons"]
    small = ph.truth["small_chat_cells"]
    found = table[["y_um", "x_um"]].to_numpy()
    tp = _match(found, truth[["y_um", "x_um"]].to_numpy(), 5.0)
    f1 = 2 * tp / (len(found) + len(truth)) if len(truth) else 1.0
    n_small = _match(found, small[["y_um", "x_um"]].to_numpy(), 6.0)
    return labels, table, f1, n_small


@pytest.mark.parametrize(("seed", "ps", "snr"), [(0, 0.3, 8.0), (1, 0.5, 8.0), (2, 0.7, 10.0)])
def test_phantom_motor_neurons_and_perisomatic_puncta(seed, ps, snr):
    ph, project = _phantom(seed, ps, snr)
    labels, table, f1, n_small = _evaluate(ph, project, ps)
    assert f1 >= 0.95, f"motor-neuron F1 {f1:.3f}"
    assert n_small == 0
    truth = ph.truth["motor_neurons"]
    assert abs(len(table) - len(truth)) <= 0.05 * len(truth)
    # area within 15% of truth for every matched neuron
    _, j = cKDTree(table[["y_um", "x_um"]].to_numpy()).query(truth[["y_um", "x_um"]].to_numpy())
    ratio = table.area_um2.to_numpy()[j] / truth.area_um2.to_numpy()
    assert np.all(np.abs(ratio - 1) < 0.15), ratio

    st = ph.stack
    syn = project(st.channel("synapse"))
    refs = np.stack([project(st.channel(c)) for c in ("nuclei", "gfp", "gfap", "chat")])
    puncta = detect_puncta(syn, pixel_size_um=ps, reference=refs)
    counts = perisomatic_puncta(labels, puncta, pixel_size_um=ps)
    per = counts.set_index("label").loc[table.label.to_numpy(), "n_puncta"].to_numpy()[j]
    true_n = truth.n_puncta.to_numpy()
    # The phantom places puncta down to 0.9 µm apart (adjacent pixels at 0.7 µm/px);
    # such pairs are decomposed by the puncta detector's two-spot fit. With the true
    # soma outlines the perisomatic totals are within 2 % (measured); the segmented
    # outlines lose a few puncta at the tips of dendrite stumps (blurred, they fall
    # below the soma's half-maximum) and at sharp corners
    exact = perisomatic_puncta(ph.labels["motor_neurons"], puncta, pixel_size_um=ps)
    assert abs(exact.n_puncta.sum() - true_n.sum()) <= 0.05 * true_n.sum(), (exact, true_n)
    tol_image = 0.05
    assert np.all(np.abs(per - true_n) <= np.maximum(4, 0.35 * true_n)), (per, true_n)
    assert abs(per.sum() - true_n.sum()) <= tol_image * true_n.sum(), (per, true_n)


@pytest.mark.slow
@pytest.mark.parametrize("ps", [0.3, 0.45, 0.6, 0.7])
@pytest.mark.parametrize("snr", [5.0, 8.0, 12.0])
@pytest.mark.parametrize("seed", [20, 21])
def test_phantom_motor_neuron_sweep(seed, ps, snr):
    ph, project = _phantom(seed, ps, snr, size_um=360.0, n_mn=8)
    _, table, f1, n_small = _evaluate(ph, project, ps)
    where = f"seed {seed}, {ps} µm/px, snr {snr}"
    assert f1 >= 0.95, f"motor-neuron F1 {f1:.3f} ({where})"
    assert n_small == 0
    truth = ph.truth["motor_neurons"]
    assert abs(len(table) - len(truth)) <= 0.05 * len(truth)
    # every soma outlined at its true size, dendrite stumps and a dim nucleus
    # near the soma edge (open through a thin rim) included
    _, j = cKDTree(table[["y_um", "x_um"]].to_numpy()).query(truth[["y_um", "x_um"]].to_numpy())
    ratio = table.area_um2.to_numpy()[j] / truth.area_um2.to_numpy()
    assert np.all(np.abs(ratio - 1) < 0.15), f"area found/true {np.round(ratio, 3)} ({where})"
