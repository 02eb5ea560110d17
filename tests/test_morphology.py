"""Feret diameters, fiber tables and summaries: known answers and the NCL-SM masks."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk, polygon

from spinalquant.measure.morphology import (
    FIBER_COLUMNS,
    fiber_histogram,
    fiber_summary,
    max_feret_diameter,
    measure_fibers,
    min_feret_diameter,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NCLSM = DATA / "muscle_nclsm"


# ----------------------------------------------------------------- Feret: known answers


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 7), (4, 10), (13, 5), (20, 20)])
@pytest.mark.parametrize("spacing", [1.0, 0.37])
def test_rectangle_feret_exact(h, w, spacing):
    m = np.zeros((h + 4, w + 6), bool)
    m[2 : 2 + h, 3 : 3 + w] = True
    assert min_feret_diameter(m, spacing=spacing) == pytest.approx(min(h, w) * spacing, abs=1e-9)
    assert max_feret_diameter(m, spacing=spacing) == pytest.approx(np.hypot(h, w) * spacing)


def test_anisotropic_spacing_rectangle():
    m = np.zeros((12, 12), bool)
    m[1:11, 3:7] = True  # 10 rows x 4 cols
    # rows 0.2 µm, cols 1.0 µm: 2.0 µm tall, 4.0 µm wide
    assert min_feret_diameter(m, spacing=(0.2, 1.0)) == pytest.approx(2.0)
    assert max_feret_diameter(m, spacing=(0.2, 1.0)) == pytest.approx(np.hypot(2.0, 4.0))


@pytest.mark.parametrize("radius", [4.5, 10.0, 25.3])
def test_disc_feret_bounds(radius):
    m = np.zeros((64, 64), bool)
    m[disk((32, 32), radius, shape=m.shape)] = True
    # pixel centres lie within `radius`; the squares add between 1 and sqrt(2)
    mn, mx = min_feret_diameter(m), max_feret_diameter(m)
    assert 2 * radius - 2 <= mn <= 2 * radius + np.sqrt(2)
    assert mn <= mx <= 2 * radius + np.sqrt(2)
    assert mx - mn < 0.1 * radius + 1.5  # a disc is nearly round


@pytest.mark.parametrize("angle_deg", [0, 10, 30, 45, 63])
def test_rotated_square(angle_deg):
    side = 40.0
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]) * side / 2 @ rot.T + 50
    m = np.zeros((100, 100), bool)
    m[polygon(corners[:, 0], corners[:, 1], m.shape)] = True
    assert min_feret_diameter(m) == pytest.approx(side, abs=1.5)
    assert max_feret_diameter(m) == pytest.approx(side * np.sqrt(2), abs=1.5)


def _brute_force_widths(mask, n_angles=7200):
    """Caliper widths of all pixel corners over a fine sweep of directions."""
    rr, cc = np.nonzero(mask)
    corners = np.concatenate(
        [np.c_[rr + dy, cc + dx] for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)]
    ).astype(float)
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    proj = corners @ np.c_[np.cos(theta), np.sin(theta)].T
    widths = proj.max(axis=0) - proj.min(axis=0)
    return widths.min(), widths.max()


def test_feret_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(7)
    for _ in range(5):
        m = np.zeros((48, 48), bool)
        for _ in range(4):
            c = rng.uniform(14, 34, 2)
            m[disk(tuple(c), rng.uniform(3, 9), shape=m.shape)] = True
        bf_min, bf_max = _brute_force_widths(m)
        # the width has a cusp at its minimum: a sweep of step dtheta over-estimates it
        # by at most ~D * dtheta; it under-estimates the maximum by ~D * dtheta^2
        step = np.pi / 7200
        diameter = max_feret_diameter(m)
        assert min_feret_diameter(m) <= bf_min + 1e-9
        assert min_feret_diameter(m) == pytest.approx(bf_min, abs=diameter * step)
        assert diameter >= bf_max - 1e-9
        assert diameter == pytest.approx(bf_max, abs=diameter * step**2 + 1e-9)


def test_feret_from_coords_equals_mask():
    m = np.zeros((30, 30), bool)
    m[polygon([3, 25, 20, 5], [4, 8, 27, 22], m.shape)] = True
    coords = np.argwhere(m)
    assert min_feret_diameter(coords, spacing=0.5) == pytest.approx(
        min_feret_diameter(m, spacing=0.5)
    )
    assert max_feret_diameter(coords) == pytest.approx(max_feret_diameter(m))


def test_feret_rejects_bad_input():
    with pytest.raises(ValueError, match="spacing"):
        min_feret_diameter(np.ones((3, 3), bool), spacing=0.0)
    with pytest.raises(ValueError, match="mask_or_coords"):
        min_feret_diameter(np.ones((3, 3), float))
    assert min_feret_diameter(np.zeros((3, 3), bool)) == 0.0


# ----------------------------------------------------------------- measure_fibers


def _two_fibers():
    lab = np.zeros((60, 80), np.int32)
    lab[10:30, 10:50] = 3  # inside
    lab[40:60, 60:70] = 8  # touches the bottom edge
    return lab


def test_measure_fibers_known_values():
    lab = _two_fibers()
    before = lab.copy()
    df = measure_fibers(lab, pixel_size_um=0.5, exclude_border=False)
    np.testing.assert_array_equal(lab, before)
    assert list(df.columns) == list(FIBER_COLUMNS)
    r = df.set_index("label")
    assert r.loc[3, "area_um2"] == pytest.approx(20 * 40 * 0.25)
    assert r.loc[3, "min_feret_um"] == pytest.approx(10.0)
    assert r.loc[3, "max_feret_um"] == pytest.approx(np.hypot(10, 20))
    assert r.loc[3, "y_um"] == pytest.approx(19.5 * 0.5)
    assert r.loc[3, "x_um"] == pytest.approx(29.5 * 0.5)
    assert r.loc[3, "solidity"] == pytest.approx(1.0)
    assert r.loc[3, "eccentricity"] == pytest.approx(np.sqrt(1 - (400 - 1) / (1600 - 1)))
    assert not r.loc[3, "touches_border"]
    assert r.loc[8, "touches_border"]
    kept = measure_fibers(lab, pixel_size_um=0.5)
    assert kept["label"].tolist() == [3]


def test_measure_fibers_empty_has_header():
    df = measure_fibers(np.zeros((10, 10), np.uint16), pixel_size_um=1.0)
    assert df.empty and list(df.columns) == list(FIBER_COLUMNS)
    df = measure_fibers(
        np.zeros((10, 10), np.uint16), pixel_size_um=1.0, nuclei=np.zeros((10, 10), bool)
    )
    assert "central_nuclei" in df.columns and "has_central_nucleus" in df.columns


def test_measure_fibers_validation():
    with pytest.raises(ValueError, match="2-D"):
        measure_fibers(np.zeros((2, 3, 4), int), pixel_size_um=1.0)
    with pytest.raises(ValueError, match="integer"):
        measure_fibers(np.zeros((3, 4), float), pixel_size_um=1.0)
    with pytest.raises(ValueError, match="pixel_size_um"):
        measure_fibers(np.zeros((3, 4), int), pixel_size_um=0)


def _fiber_with_nuclei(px):
    """One 40 µm square fiber, one central and one peripheral nucleus (labels and image)."""
    n = round(60 / px)
    lab = np.zeros((n, n), np.int32)
    a, b = round(10 / px), round(50 / px)
    lab[a:b, a:b] = 1
    nuc = np.zeros((n, n), np.int32)
    r = 2.0 / px
    nuc[disk((n / 2, n / 2), r, shape=nuc.shape)] = 1  # centre: 20 µm deep
    nuc[disk((a + 1.0 / px, n / 2), r, shape=nuc.shape)] = 2  # 1 µm under the outline
    nuc[disk((a - 4 / px, n / 2), r, shape=nuc.shape)] = 3  # interstitial, outside
    return lab, nuc


@pytest.mark.parametrize("px", [0.3, 0.65, 1.0])
def test_central_nuclei_from_labels_and_image(px):
    lab, nuc = _fiber_with_nuclei(px)
    df = measure_fibers(lab, pixel_size_um=px, nuclei=nuc)
    assert df["central_nuclei"].tolist() == [1]
    assert df["has_central_nucleus"].tolist() == [True]
    rng = np.random.default_rng(0)
    dapi = (100 + 800 * (nuc > 0) + rng.normal(0, 20, nuc.shape)).astype(np.uint16)
    df2 = measure_fibers(lab, pixel_size_um=px, nuclei=dapi, nuclei_kind="intensity")
    assert df2["central_nuclei"].tolist() == [1]
    # a stricter rule (≥ 25 µm from the outline) leaves no central nucleus
    df3 = measure_fibers(lab, pixel_size_um=px, nuclei=nuc, central_min_um=25.0)
    assert df3["central_nuclei"].tolist() == [0]


def test_nuclei_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        measure_fibers(np.ones((8, 8), np.int32), pixel_size_um=1, nuclei=np.zeros((4, 4), int))


# ----------------------------------------------------------------- summary / histogram


def test_fiber_summary_values():
    df = pd.DataFrame(
        {
            "area_um2": [300.0, 900.0, 1500.0, 2100.0],
            "min_feret_um": [15.0, 30.0, 40.0, 45.0],
            "has_central_nucleus": [True, False, False, False],
        }
    )
    s = fiber_summary(df, atrophy_threshold_um2=1000)
    assert s["n_fibers"] == 4
    assert s["fiber_csa_mean_um2"] == pytest.approx(1200.0)
    assert s["fiber_csa_median_um2"] == pytest.approx(1200.0)
    assert s["fiber_min_feret_mean_um"] == pytest.approx(32.5)
    assert s["pct_atrophic"] == pytest.approx(50.0)
    assert s["pct_central_nuclei"] == pytest.approx(25.0)
    empty = fiber_summary(df.iloc[:0])
    assert empty["n_fibers"] == 0 and np.isnan(empty["fiber_csa_mean_um2"])
    assert np.isnan(fiber_summary(df.drop(columns="has_central_nucleus"))["pct_central_nuclei"])


def test_fiber_histogram():
    df = pd.DataFrame({"area_um2": [0.0, 100.0, 250.0, 499.0, 800.0, 6000.0]})
    h = fiber_histogram(df, bins_um2=250.0)
    assert list(h.columns) == ["bin_start_um2", "bin_end_um2", "count", "fraction"]
    assert h["count"].sum() == 6 and h["bin_start_um2"].iloc[0] == 0.0
    assert h["count"].tolist()[:4] == [2, 2, 0, 1]
    assert h["fraction"].sum() == pytest.approx(1.0)
    capped = fiber_histogram(df, bins_um2=250.0, max_um2=1000.0)
    assert capped["bin_end_um2"].iloc[-1] == np.inf
    assert capped["count"].tolist() == [2, 2, 0, 1, 1]
    explicit = fiber_histogram(df, bins_um2=[0, 500, 1000])
    assert explicit["count"].tolist() == [4, 1]
    assert explicit["fraction"].tolist() == pytest.approx([4 / 6, 1 / 6])
    assert fiber_histogram(df.iloc[:0])["count"].sum() == 0
    with pytest.raises(ValueError):
        fiber_histogram(df, bins_um2=[10, 5])


# ----------------------------------------------------------------- NCL-SM manual masks


def _stream_rows(path: Path, wanted: dict[str, slice] | None = None, block: int = 512):
    """Decode a single-strip, deflate, no-predictor uint16 TIFF row block by row block.

    Yields ``(row0, rows (n, W))``: the whole mask never sits in memory. Skips (pytest)
    when the file is not laid out that way.
    """
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        if (
            len(page.dataoffsets) != 1
            or page.compression not in (8, 32946)
            or page.predictor != 1
            or page.dtype != np.uint16
        ):
            pytest.skip(
                f"{path.name}: not a single deflate strip; streaming reader not applicable"
            )
        height, width = page.shape
        dtype = np.dtype(tf.byteorder + "u2")
        fh = tf.filehandle
        fh.seek(page.dataoffsets[0])
        raw = fh.read(page.databytecounts[0])
    dec = zlib.decompressobj()
    row_bytes = width * 2
    pending = b""
    row0 = 0
    for start in range(0, len(raw), 1 << 18):
        pending += dec.decompress(raw[start : start + (1 << 18)])
        n = len(pending) // row_bytes
        if n:
            rows = np.frombuffer(pending[: n * row_bytes], dtype).reshape(n, width)
            pending = pending[n * row_bytes :]
            yield row0, rows
            row0 += n
    if row0 != height:
        raise AssertionError(f"decoded {row0} rows, expected {height}")


def _nclsm_reference(name):
    csv = NCLSM / "S11_S60_myofibre_calculations.csv"
    if not csv.exists():
        pytest.skip(f"NCL-SM data not found at {NCLSM}")
    ref = pd.read_csv(csv)
    return ref[ref["FileName"] == name].set_index("Fibre_ID")


@pytest.mark.parametrize(
    ("name", "r0", "c0"),
    [("S60", 4000, 1000), ("S11", 0, 0)],  # S60: tissue centre; S11: top-left corner
)
def test_nclsm_crop_matches_reference(name, r0, c0):
    """Per-fiber CSA (px) and edge flags from a 2000 x 2000 crop of a manual mask.

    A fiber is *wholly inside* the crop when its pixel count there equals its count in
    the whole mask (counted while streaming, so the mask never sits in memory). Its
    area must equal the reference exactly. Crop sides that lie on the image edge are
    *outer*, the others *inner*: for a wholly-inside fiber that does not touch an inner
    side, ``touches_border`` on the crop must equal the reference ``Fiber_on_Border``
    (S60 has no edge fibers; S11's top-left crop has several).
    """
    path = NCLSM / f"{name}_gt_mask.tiff"
    if not path.exists():
        pytest.skip(f"NCL-SM mask not found: {path}")
    ref = _nclsm_reference(name)
    size = 2000
    totals = np.zeros(65536, np.int64)
    parts = []
    height = width = 0
    for row0, rows in _stream_rows(path):
        height, width = row0 + rows.shape[0], rows.shape[1]
        totals += np.bincount(rows.ravel(), minlength=65536)
        lo, hi = max(r0 - row0, 0), min(r0 + size - row0, rows.shape[0])
        if lo < hi:
            parts.append(rows[lo:hi, c0 : c0 + size].copy())
    assert (height, width) == {"S60": (9720, 10132), "S11": (12272, 15129)}[name]
    crop = np.concatenate(parts)
    assert crop.shape == (size, size)

    df = measure_fibers(crop, pixel_size_um=1.0, exclude_border=False).set_index("label")
    counts = np.bincount(crop.ravel(), minlength=65536)
    inside = [lab for lab in df.index if counts[lab] == totals[lab] and lab in ref.index]
    assert len(inside) >= 10, f"{name}: too few whole fibers in the crop ({len(inside)})"
    np.testing.assert_array_equal(
        df.loc[inside, "area_um2"].to_numpy(), ref.loc[inside, "Fiber_Area"].to_numpy()
    )
    sides = {
        "top": (crop[0], r0 == 0),
        "bottom": (crop[-1], r0 + size == height),
        "left": (crop[:, 0], c0 == 0),
        "right": (crop[:, -1], c0 + size == width),
    }
    on_inner = np.unique(np.concatenate([v for v, outer in sides.values() if not outer]))
    flag_ok = [lab for lab in inside if lab not in on_inner]
    assert len(flag_ok) >= 10
    np.testing.assert_array_equal(
        df.loc[flag_ok, "touches_border"].to_numpy(),
        ref.loc[flag_ok, "Fiber_on_Border"].to_numpy(dtype=bool),
    )
    if name == "S11":
        assert df.loc[flag_ok, "touches_border"].sum() >= 2  # the flag is really exercised
    # every fiber of the reference table exists in the mask with the tabulated area
    np.testing.assert_array_equal(totals[ref.index.to_numpy()], ref["Fiber_Area"].to_numpy())


@pytest.mark.slow
def test_nclsm_full_image_border_flags():
    """All S11 fibers measured on the whole 12272 x 15129 mask (~370 MB, ~30-60 s)."""
    path = NCLSM / "S11_gt_mask.tiff"
    if not path.exists():
        pytest.skip(f"NCL-SM mask not found: {path}")
    tifffile = pytest.importorskip("tifffile")
    ref = _nclsm_reference("S11")
    mask = tifffile.imread(path)
    df = measure_fibers(mask, pixel_size_um=1.0, exclude_border=False).set_index("label")
    del mask
    df = df.reindex(ref.index)
    assert not df["area_um2"].isna().any()
    np.testing.assert_array_equal(df["area_um2"].to_numpy(), ref["Fiber_Area"].to_numpy())
    np.testing.assert_array_equal(
        df["touches_border"].to_numpy(dtype=bool), ref["Fiber_on_Border"].to_numpy(dtype=bool)
    )
    expected_kept = set(ref.index[~ref["Fiber_on_Border"].astype(bool)])
    assert expected_kept <= set(df.index[~df["touches_border"].astype(bool)])
