"""Phantoms: determinism, truth consistency, requested biology, units, dtypes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage import measure

from spinalquant.synthetic import (
    _COLUMNS,
    Phantom,
    _min_feret_px,
    make_cord_section,
    make_muscle_section,
)

SMALL_CORD = dict(shape=(320, 320), n_z=2, n_gfp_cells=20, n_motor_neurons=4, n_small_chat=6,
                  puncta_per_neuron=20, n_granules=6)
SMALL_MUSCLE = dict(shape=(400, 400), pixel_size_um=0.8)


@pytest.fixture(scope="module")
def cord() -> Phantom:
    return make_cord_section(seed=3, **SMALL_CORD)


@pytest.fixture(scope="module")
def cord_roi() -> Phantom:
    return make_cord_section(seed=4, with_roi=True, **SMALL_CORD)


@pytest.fixture(scope="module")
def muscle() -> Phantom:
    return make_muscle_section(seed=5, **SMALL_MUSCLE)


# ----------------------------------------------------------------- determinism
def test_same_seed_same_output():
    a = make_cord_section(seed=7, **SMALL_CORD)
    b = make_cord_section(seed=7, **SMALL_CORD)
    np.testing.assert_array_equal(a.stack.data, b.stack.data)
    for kind in a.truth:
        pd.testing.assert_frame_equal(a.truth[kind], b.truth[kind])
    for kind in a.labels:
        np.testing.assert_array_equal(a.labels[kind], b.labels[kind])
    c = make_cord_section(seed=8, **SMALL_CORD)
    assert not np.array_equal(a.stack.data, c.stack.data)


def test_muscle_same_seed_same_output():
    a = make_muscle_section(seed=1, shape=(200, 200))
    b = make_muscle_section(seed=1, shape=(200, 200))
    np.testing.assert_array_equal(a.stack.data, b.stack.data)
    pd.testing.assert_frame_equal(a.truth["fibers"], b.truth["fibers"])
    assert not np.array_equal(a.stack.data, make_muscle_section(seed=2, shape=(200, 200)).stack.data)


# ------------------------------------------------------------ truth consistency
@pytest.mark.parametrize("kind", ["gfp_cells", "astrocytes", "motor_neurons", "small_chat_cells"])
def test_cord_truth_matches_labels(cord, kind):
    lab = cord.labels[kind]
    table = cord.truth[kind]
    p = cord.stack.pixel_size_um[1]
    ids = np.unique(lab[lab > 0])
    np.testing.assert_array_equal(np.sort(table["label"].to_numpy()), ids)
    counts = np.bincount(lab.ravel())[table["label"].to_numpy()]
    np.testing.assert_allclose(table["area_um2"].to_numpy(), counts * p * p)
    for row in table.itertuples():
        yy, xx = np.nonzero(lab == row.label)
        assert abs(yy.mean() * p - row.y_um) < 1e-6
        assert abs(xx.mean() * p - row.x_um) < 1e-6


def test_truth_tables_have_contract_columns(cord, muscle):
    for kind, table in cord.truth.items():
        assert set(_COLUMNS[kind]) <= set(table.columns), kind
    assert set(_COLUMNS["fibers"]) <= set(muscle.truth["fibers"].columns)


def test_empty_tables_keep_columns():
    ph = make_cord_section(seed=0, shape=(128, 128), n_gfp_cells=0, n_motor_neurons=0,
                           n_small_chat=0, n_granules=0, neuropil_puncta_per_1000um2=0,
                           n_astrocytes=0, n_z=1)
    for kind, table in ph.truth.items():
        assert len(table) == 0
        assert set(_COLUMNS[kind]) <= set(table.columns), kind


def test_fiber_truth_matches_labels(muscle):
    lab = muscle.labels["fibers"]
    t = muscle.truth["fibers"]
    p = muscle.stack.pixel_size_um[1]
    counts = np.bincount(lab.ravel())[t["label"].to_numpy()]
    np.testing.assert_allclose(t["area_um2"].to_numpy(), counts * p * p)
    edge = set(np.unique(np.r_[lab[0], lab[-1], lab[:, 0], lab[:, -1]])) - {0}
    assert set(t.loc[t["touches_border"], "label"]) == edge
    # fibers are separated by interstitium: no two labels touch
    for a, b in ((lab[1:], lab[:-1]), (lab[:, 1:], lab[:, :-1])):
        assert not np.any((a > 0) & (b > 0) & (a != b))


# --------------------------------------------------------------- min Feret
def test_min_feret_of_rectangle_and_disc():
    rect = np.argwhere(np.ones((4, 10), bool))
    assert _min_feret_px(rect) == pytest.approx(4.0)
    yy, xx = np.mgrid[-30:31, -30:31]
    disc = np.argwhere(yy**2 + xx**2 <= 25**2)
    assert _min_feret_px(disc) == pytest.approx(51.0, abs=0.6)
    # a rotated thin bar: width is measured across, not along the axes
    img = np.zeros((80, 80), bool)
    for t in np.linspace(0, 50, 400):
        img[int(10 + t), int(10 + t)] = True
    assert _min_feret_px(np.argwhere(img)) < 2.0


# ----------------------------------------------------------- requested biology
def test_cord_counts(cord):
    t = cord.truth
    assert len(t["gfp_cells"]) == SMALL_CORD["n_gfp_cells"]
    assert len(t["motor_neurons"]) == SMALL_CORD["n_motor_neurons"]
    assert len(t["small_chat_cells"]) == SMALL_CORD["n_small_chat"]
    assert len(t["granules"]) == SMALL_CORD["n_granules"]
    # astrocytes = host astrocytes + GFAP+ donor cells
    assert len(t["astrocytes"]) >= t["gfp_cells"]["gfap_positive"].sum()


@pytest.mark.parametrize("fraction", [0.857, 0.5, 0.0, 1.0])
def test_gfap_fraction(fraction):
    ph = make_cord_section(seed=1, shape=(256, 256), n_z=1, n_gfp_cells=14, n_motor_neurons=1,
                           n_small_chat=2, gfap_fraction=fraction)
    got = ph.truth["gfp_cells"]["gfap_positive"].mean()
    assert abs(got - fraction) <= 0.5 / 14 + 1e-9


def test_gfp_cell_sizes(cord):
    d = 2 * np.sqrt(cord.truth["gfp_cells"]["area_um2"] / np.pi)
    assert d.min() >= 6.0 and d.max() <= 18.0
    assert 8.0 <= d.median() <= 16.0


def test_chat_cell_sizes(cord, cord_roi):
    for ph in (cord, cord_roi):
        assert (ph.truth["motor_neurons"]["area_um2"] >= 350).all()
        assert (ph.truth["small_chat_cells"]["area_um2"] <= 200).all()


def test_puncta(cord):
    pun = cord.truth["puncta"]
    h, w = cord.labels["gfp_cells"].shape
    p = cord.stack.pixel_size_um[1]
    assert pun["y_um"].between(0, (h - 1) * p).all()
    assert pun["x_um"].between(0, (w - 1) * p).all()
    mn = cord.truth["motor_neurons"]
    assert (mn["n_puncta"] == SMALL_CORD["puncta_per_neuron"]).all()
    counts = pun.loc[pun["neuron"] > 0, "neuron"].value_counts()
    for row in mn.itertuples():
        assert counts.get(row.label, 0) == row.n_puncta
    # perisomatic puncta are on or just outside the outline, never inside a soma
    lab = cord.labels["motor_neurons"]
    iy = np.rint(pun["y_um"] / p).astype(int)
    ix = np.rint(pun["x_um"] / p).astype(int)
    assert (lab[iy, ix] == 0).all()
    # neuropil puncta exist at the requested density (within 20 %)
    n_np = (pun["neuron"] == 0).sum()
    expected = 2.0 * h * w * p * p / 1000
    assert 0.8 * expected <= n_np <= 1.05 * expected


def test_roi(cord_roi, cord):
    assert cord.roi is None
    roi = cord_roi.roi
    assert roi.ndim == 2 and roi.shape[1] == 2 and len(roi) >= 8
    h, w = cord_roi.labels["gfp_cells"].shape
    assert (roi[:, 0] >= 0).all() and (roi[:, 0] < h).all()
    assert (roi[:, 1] >= 0).all() and (roi[:, 1] < w).all()
    # objects both inside and outside the ROI, so ROI filtering matters
    gfp = cord_roi.truth["gfp_cells"]["in_roi"]
    assert gfp.any() and not gfp.all()
    mn = cord_roi.truth["motor_neurons"]["in_roi"]
    assert mn.sum() >= len(mn) // 2
    p = cord_roi.stack.pixel_size_um[1]
    t = cord_roi.truth["gfp_cells"]
    inside = measure.points_in_poly(np.c_[t["y_um"] / p, t["x_um"] / p], roi)
    np.testing.assert_array_equal(inside, t["in_roi"].to_numpy())


def test_granules_bright_in_every_channel(cord):
    p = cord.stack.pixel_size_um[1]
    g = cord.truth["granules"]
    mip = cord.stack.data.max(axis=1).astype(float)
    iy = np.rint(g["y_um"] / p).astype(int)
    ix = np.rint(g["x_um"] / p).astype(int)
    for c in range(mip.shape[0]):
        med = np.median(mip[c])
        assert np.median(mip[c][iy, ix]) > med + 3 * np.std(mip[c][mip[c] < np.percentile(mip[c], 50)])


# ------------------------------------------------------------------- channels
def test_channel_subset_and_order():
    ph = make_cord_section(seed=2, shape=(192, 192), n_z=1, n_gfp_cells=6, n_motor_neurons=1,
                           n_small_chat=2, channel_names=("GFAP", "EGFP"))
    assert ph.stack.channel_names == ("GFAP", "EGFP")
    assert ph.stack.data.shape[0] == 2
    assert ph.stack.channel_index("gfp") == 1
    # GFP signal is in channel 1: brighter inside GFP cells than outside
    gfp = ph.stack.channel("gfp")[0].astype(float)
    inside = ph.labels["gfp_cells"] > 0
    assert gfp[inside].mean() > gfp[~inside].mean() * 1.5


def test_unknown_channel_name_raises():
    with pytest.raises(ValueError, match="Tubulin"):
        make_cord_section(shape=(64, 64), channel_names=("DAPI", "Tubulin"))


def test_signal_to_noise_is_as_documented():
    ph = make_cord_section(seed=6, shape=(256, 256), n_z=1, n_gfp_cells=10, n_motor_neurons=1,
                           n_small_chat=2, snr=6.0, n_granules=0, channel_names=("EGFP",))
    img = ph.stack.data[0, 0].astype(float)
    cells = ph.labels["gfp_cells"] > 0
    from scipy import ndimage as ndi
    far = ~ndi.binary_dilation(cells, iterations=20)
    # noise std of the background, measured on pixel differences (robust to the smooth bg)
    diff = (img[:, 1:] - img[:, :-1])[far[:, 1:] & far[:, :-1]]
    sd = 1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2)
    core = ndi.binary_erosion(cells, iterations=2)
    ring = ndi.binary_dilation(cells, iterations=8) & ~ndi.binary_dilation(cells, iterations=4)
    contrast = img[core].mean() - np.median(img[ring])
    assert 3.0 < contrast / sd < 12.0


# ------------------------------------------------------------- units & dtypes
def test_pixel_size_invariance():
    field_um = 160.0
    areas = {}
    for p in (0.3, 0.7):
        n = round(field_um / p)
        ph = make_cord_section(seed=9, shape=(n, n), pixel_size_um=p, n_z=1, n_gfp_cells=12,
                               n_motor_neurons=2, n_small_chat=3, channel_names=("EGFP",))
        areas[p] = ph.truth["gfp_cells"]["area_um2"].mean()
        assert (ph.truth["motor_neurons"]["area_um2"] >= 350).all()
    assert areas[0.3] == pytest.approx(areas[0.7], rel=0.15)
    m = {p: make_muscle_section(seed=9, shape=(round(250 / p),) * 2, pixel_size_um=p)
         .truth["fibers"] for p in (0.4, 1.0)}
    f = {p: t.loc[~t["touches_border"], "min_feret_um"].mean() for p, t in m.items()}
    assert f[0.4] == pytest.approx(f[1.0], rel=0.1)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dtypes(dtype):
    ph = make_cord_section(seed=0, shape=(160, 160), n_z=1, n_gfp_cells=2, n_motor_neurons=1,
                           n_small_chat=1, dtype=dtype)
    assert ph.stack.data.dtype == np.dtype(dtype)
    mu = make_muscle_section(seed=0, shape=(128, 128), dtype=dtype)
    assert mu.stack.data.dtype == np.dtype(dtype)
    assert ph.labels["gfp_cells"].dtype.kind == "i"


def test_cord_stack_metadata(cord):
    s = cord.stack
    assert s.data.shape == (5, SMALL_CORD["n_z"], *SMALL_CORD["shape"])
    assert s.channel_names == ("DAPI", "EGFP", "GFAP", "ChAT", "Synaptophysin")
    assert s.pixel_size_um == (1.5, 0.5, 0.5)
    assert cord.params["n_gfp_cells"] == SMALL_CORD["n_gfp_cells"]


# -------------------------------------------------------------------- muscle
@pytest.mark.parametrize("target", [30.0, 45.0])
def test_muscle_min_feret_centred_on_target(target):
    ph = make_muscle_section(seed=2, shape=(500, 500), pixel_size_um=1.0,
                             mean_min_feret_um=target)
    t = ph.truth["fibers"]
    inner = t.loc[~t["touches_border"], "min_feret_um"]
    assert len(inner) >= 40
    assert inner.mean() == pytest.approx(target, rel=0.1)
    # a realistic spread, with small atrophic fibers
    assert 0.15 < inner.std() / inner.mean() < 0.6
    atro = t.loc[t["atrophic"] & ~t["touches_border"], "min_feret_um"]
    assert len(atro) > 0 and atro.mean() < 0.7 * inner.mean()


def test_muscle_atrophic_fraction():
    t = make_muscle_section(seed=3, shape=(600, 600), pixel_size_um=1.0,
                            atrophic_fraction=0.3).truth["fibers"]
    assert 0.18 <= t["atrophic"].mean() <= 0.36
    t0 = make_muscle_section(seed=3, shape=(300, 300), pixel_size_um=1.0,
                             atrophic_fraction=0.0).truth["fibers"]
    assert not t0["atrophic"].any()


def test_muscle_laminin_channels(muscle):
    s = muscle.stack
    assert s.channel_names == ("Laminin", "DAPI")
    assert not s.rgb
    lam = s.channel("border")[0].astype(float)
    fib = muscle.labels["fibers"] > 0
    assert lam[~fib].mean() > 1.5 * lam[fib].mean()  # bright borders, dark fibers
    no_nuc = make_muscle_section(seed=5, shape=(128, 128), with_nuclei=False)
    assert no_nuc.stack.channel_names == ("Laminin",)


def test_muscle_he_rgb():
    ph = make_muscle_section(seed=4, shape=(256, 256), stain="he")
    s = ph.stack
    assert s.rgb and s.channel_names == ("R", "G", "B") and s.data.dtype == np.uint8
    rgb = s.data[:, 0].astype(float)
    fib = ph.labels["fibers"] > 0
    r, g, b = (rgb[i][fib].mean() for i in range(3))
    assert r > b > g  # eosin pink
    assert rgb[:, ~fib].mean() > rgb[:, fib].mean()  # pale interstitium


def test_invalid_arguments():
    with pytest.raises(ValueError):
        make_muscle_section(stain="trichrome")
    with pytest.raises(ValueError):
        make_cord_section(pixel_size_um=0)
    with pytest.raises(ValueError):
        make_cord_section(gfap_fraction=1.5)
