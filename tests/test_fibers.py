"""Muscle-fiber segmentation: phantoms (IF and H&E) and a real murine TA section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import measure

from spinalquant.measure.matching import match_labels
from spinalquant.measure.morphology import fiber_summary, measure_fibers
from spinalquant.segment.fibers import FiberParams, border_image, segment_fibers

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MYOSAT = DATA / "muscle_myosat" / "SAMPLE_MUSCLE_IMAGE_01.tif"

synthetic = pytest.importorskip("spinalquant.synthetic")


def _phantom_image(ph, stain):
    if stain == "he":
        return np.moveaxis(np.asarray(ph.stack.data[:, 0]), 0, -1)  # (Y, X, 3) uint8
    return np.asarray(ph.stack.data[ph.stack.channel_names.index("Laminin"), 0])


def _score(ph, labels, px, min_area_um2=None):
    """F1 at IoU 0.5 against non-edge truth fibers, median CSA / min-Feret rel. errors.

    Truth fibers smaller than ``min_area_um2`` (the segmentation's own lower limit,
    which rejects them by design) are not scored: they are neither misses nor, when a
    prediction matches one of them at IoU >= 0.5, false positives.
    """
    if min_area_um2 is None:
        min_area_um2 = FiberParams().min_area_um2
    truth = ph.truth["fibers"]
    tl = ph.labels["fibers"]
    edge = truth.loc[truth["touches_border"], "label"].to_numpy()
    small = truth.loc[truth["area_um2"] < min_area_um2, "label"].to_numpy()
    tl_in = np.where(np.isin(tl, edge) | np.isin(tl, small), 0, tl)
    if small.size:
        labels = np.where(np.isin(labels, _matched_preds(labels, tl, small)), 0, labels)
    f1 = match_labels(labels, tl_in, iou=0.5)["f1"]
    pred = measure_fibers(labels, pixel_size_um=px).set_index("label")
    tt = truth.set_index("label")
    err_a, err_f = [], []
    for r in measure.regionprops(labels):
        vals, counts = np.unique(tl_in[r.slice][r.image], return_counts=True)
        t = int(vals[np.argmax(counts)])
        if t == 0 or r.label not in pred.index:
            continue
        union = np.count_nonzero((tl_in == t) | (labels == r.label))
        if counts.max() / union < 0.5:
            continue
        err_a.append(pred.loc[r.label, "area_um2"] / tt.loc[t, "area_um2"] - 1)
        err_f.append(pred.loc[r.label, "min_feret_um"] / tt.loc[t, "min_feret_um"] - 1)
    return f1, float(np.median(err_a)), float(np.median(err_f))


def _matched_preds(labels, truth_labels, ids):
    """Predicted labels overlapping one of the truth fibers ``ids`` at IoU >= 0.5."""
    out = []
    for t in ids:
        m = truth_labels == t
        vals, counts = np.unique(labels[m], return_counts=True)
        for v, c in zip(vals, counts, strict=True):
            if v and c / np.count_nonzero(m | (labels == v)) >= 0.5:
                out.append(v)
    return np.asarray(out, dtype=labels.dtype)


FAST_CASES = [
    (0, 0.65, "laminin", 640),
    (3, 1.0, "laminin", 512),
    (2, 0.5, "he", 768),
]


@pytest.mark.parametrize(("seed", "px", "stain", "n"), FAST_CASES)
def test_phantom_accuracy(seed, px, stain, n):
    ph = synthetic.make_muscle_section(seed=seed, shape=(n, n), pixel_size_um=px, stain=stain)
    img = _phantom_image(ph, stain)
    before = img.copy()
    labels = segment_fibers(img, pixel_size_um=px, stain=stain)
    np.testing.assert_array_equal(img, before)
    assert labels.dtype == np.int32 and labels.shape == img.shape[:2]
    f1, err_a, err_f = _score(ph, labels, px)
    assert f1 >= 0.95, f"F1 {f1:.3f}"
    assert abs(err_a) <= 0.05, f"median CSA error {err_a:+.3f}"
    assert abs(err_f) <= 0.05, f"median min-Feret error {err_f:+.3f}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed", "px", "stain", "n", "snr"),
    [
        (1, 0.3, "laminin", 1024, 8.0),
        (5, 0.8, "laminin", 768, 15.0),
        (4, 0.65, "laminin", 768, 4.0),
        (1, 0.3, "he", 1024, 8.0),
        (3, 1.0, "he", 512, 8.0),
        (4, 0.65, "he", 768, 4.0),
    ],
)
def test_phantom_accuracy_sweep(seed, px, stain, n, snr):
    ph = synthetic.make_muscle_section(
        seed=seed, shape=(n, n), pixel_size_um=px, stain=stain, snr=snr
    )
    labels = segment_fibers(_phantom_image(ph, stain), pixel_size_um=px, stain=stain)
    f1, err_a, err_f = _score(ph, labels, px)
    assert f1 >= 0.94, f"F1 {f1:.3f}"
    assert abs(err_a) <= 0.05, f"median CSA error {err_a:+.3f}"
    assert abs(err_f) <= 0.05, f"median min-Feret error {err_f:+.3f}"


def test_exclude_border_option_and_dtype():
    ph = synthetic.make_muscle_section(seed=0, shape=(384, 384), pixel_size_um=0.8)
    img = _phantom_image(ph, "laminin")
    inner = segment_fibers(img, pixel_size_um=0.8)
    every = segment_fibers(img, pixel_size_um=0.8, exclude_border=False)
    edge = np.concatenate([inner[0], inner[-1], inner[:, 0], inner[:, -1]])
    assert not edge.any()
    assert every.max() > inner.max() > 0
    edge_all = np.concatenate([every[0], every[-1], every[:, 0], every[:, -1]])
    assert edge_all.any()
    # float input, rescaled, gives the same fibers (no dtype-dependent constants)
    as_float = segment_fibers(img.astype(np.float32) / 65535.0, pixel_size_um=0.8)
    assert match_labels(as_float, inner)["f1"] >= 0.98


def test_blank_and_invalid_inputs():
    assert segment_fibers(np.zeros((64, 64), np.uint16), pixel_size_um=0.5).max() == 0
    with pytest.raises(ValueError, match="stain"):
        segment_fibers(np.zeros((8, 8)), pixel_size_um=0.5, stain="toluidine")
    with pytest.raises(ValueError, match="2-D"):
        segment_fibers(np.zeros((2, 8, 8)), pixel_size_um=0.5)
    with pytest.raises(ValueError, match="RGB"):
        segment_fibers(np.zeros((8, 8), np.uint8), pixel_size_um=0.5, stain="he")
    with pytest.raises(ValueError, match="pixel_size_um"):
        segment_fibers(np.zeros((8, 8)), pixel_size_um=-1)
    with pytest.raises(ValueError, match="max_area_um2"):
        FiberParams(min_area_um2=500, max_area_um2=100)
    with pytest.raises(ValueError, match="min_solidity"):
        FiberParams(min_solidity=1.5)


def test_grid_known_answer():
    """A clean grid of 25 µm square cells: 9 inner cells, each ~ (25 - border)² µm²."""
    px = 0.5
    yy, xx = np.mgrid[:300, :300]
    wall = (yy % 50 < 3) | (xx % 50 < 3)  # 1.5 µm walls every 25 µm
    img = np.where(wall, 1000, 100).astype(np.uint16)
    lab = segment_fibers(img, pixel_size_um=px, params=FiberParams(min_area_um2=50))
    df = measure_fibers(lab, pixel_size_um=px)
    # walls at rows/cols 0, 50, ..., 250: 6 x 6 cells, the last row and column cut
    assert len(df) == 25
    np.testing.assert_allclose(df["area_um2"], 23.5**2, rtol=0.06)
    np.testing.assert_allclose(df["min_feret_um"], 23.5, rtol=0.03)


def test_border_image_he_is_high_between_fibers():
    ph = synthetic.make_muscle_section(seed=1, shape=(256, 256), pixel_size_um=0.8, stain="he")
    b = border_image(_phantom_image(ph, "he"), pixel_size_um=0.8, stain="he")
    inside = ph.labels["fibers"] > 0
    assert np.median(b[~inside]) > np.median(b[inside]) + 0.3


def test_myosat_real_section():
    """Murine TA, Collagen V IF, 0.924 µm/px. MyoSAT gives 92 fibers, mean min Feret 36.71 µm."""
    if not MYOSAT.exists():
        pytest.skip(f"MyoSAT sample image not found: {MYOSAT}")
    tifffile = pytest.importorskip("tifffile")
    img = tifffile.imread(MYOSAT)
    assert img.shape == (392, 500)
    labels = segment_fibers(img, pixel_size_um=0.924, stain="collagen")
    df = measure_fibers(labels, pixel_size_um=0.924)
    s = fiber_summary(df)
    assert abs(s["n_fibers"] - 92) <= 9.2, s
    assert abs(s["fiber_min_feret_mean_um"] - 36.71) <= 3.671, s
