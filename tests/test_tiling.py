"""Tiled analysis: a phantom analysed whole and tile by tile gives the same objects."""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from spinalquant.pipeline import analyze
from spinalquant.stack import Stack
from spinalquant.synthetic import make_cord_section, make_muscle_section
from spinalquant.tiling import (
    analyze_tiled,
    default_overlap_um,
    needs_tiling,
    tile_grid,
)

CORD_TILE_UM = 256.0  # 1024 px at 0.5 µm -> 2 x 2 tiles
MUSCLE_TILE_UM = 333.0  # 1024 px at 0.65 µm -> 2 x 2 tiles


def _lazy(stack: Stack) -> Stack:
    return dataclasses.replace(stack, data=da.from_array(stack.data, chunks=(1, 1, 256, 256)))


@pytest.fixture(scope="module")
def cord():
    ph = make_cord_section(seed=3, shape=(1024, 1024), n_gfp_cells=80, n_motor_neurons=18)
    whole = analyze(ph.stack)
    # dask-backed (C, Z, Y, X) input: each window is read and max-projected lazily
    tiled = analyze_tiled(_lazy(ph.stack), tile_um=CORD_TILE_UM)
    return ph, whole, tiled


@pytest.fixture(scope="module")
def muscle():
    ph = make_muscle_section(seed=3, shape=(1024, 1024))
    return ph, analyze(ph.stack), analyze_tiled(ph.stack, tile_um=MUSCLE_TILE_UM)


def _match(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: distance (µm) to, and index of, the nearest row of ``b``."""
    d, i = cKDTree(b[["y_um", "x_um"]].to_numpy()).query(a[["y_um", "x_um"]].to_numpy())
    return d, i


def _crossing(labels: np.ndarray, tiles) -> int:
    """Number of objects whose pixels straddle a boundary between tile cores."""
    ids: set[int] = set()
    ys = sorted({t.core[0] for t in tiles} - {0})
    xs = sorted({t.core[2] for t in tiles} - {0})
    for y in ys:
        a, b = labels[y - 1], labels[y]
        ids |= set(np.unique(a[(a == b) & (a > 0)]).tolist())
    for x in xs:
        a, b = labels[:, x - 1], labels[:, x]
        ids |= set(np.unique(a[(a == b) & (a > 0)]).tolist())
    return len(ids)


def _labels_match_table(lab: np.ndarray, table: pd.DataFrame, px: float) -> None:
    ids = np.unique(lab)
    ids = ids[ids > 0]
    assert sorted(table["label"]) == list(range(1, len(table) + 1))
    assert set(ids.tolist()) == set(table["label"].tolist())
    from scipy import ndimage as ndi

    cy, cx = np.array(ndi.center_of_mass(lab > 0, lab, table["label"].to_numpy())).T * px
    assert np.max(np.hypot(cy - table["y_um"], cx - table["x_um"])) < 1.0


# ------------------------------------------------------------------- grid
def test_tile_grid_partitions_the_image():
    tiles = tile_grid((1000, 777), tile_px=300, margin_px=50)
    cover = np.zeros((1000, 777), int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        wy0, wy1, wx0, wx1 = t.window
        assert wy0 == max(0, y0 - 50) and wy1 == min(1000, y1 + 50)
        assert wx0 == max(0, x0 - 50) and wx1 == min(777, x1 + 50)
        assert y1 - y0 <= 300 and x1 - x0 <= 300
    assert len(tiles) == 4 * 3
    assert np.all(cover == 1)


def test_tile_grid_aligns_window_origins():
    tiles = tile_grid((1000, 777), tile_px=300, margin_px=50, align_px=24)
    cover = np.zeros((1000, 777), int)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        wy0, wy1, wx0, wx1 = t.window
        assert wy0 % 24 == 0 and wx0 % 24 == 0
        assert max(0, y0 - 50 - 23) <= wy0 <= max(0, y0 - 50)
        assert max(0, x0 - 50 - 23) <= wx0 <= max(0, x0 - 50)
        assert wy1 == min(1000, y1 + 50) and wx1 == min(777, x1 + 50)
    assert np.all(cover == 1)


def test_tile_grid_rejects_bad_sizes():
    with pytest.raises(ValueError, match="tile_px"):
        tile_grid((10, 10), tile_px=0, margin_px=1)


def test_default_overlap_covers_largest_objects():
    assert default_overlap_um(section="cord") >= 2 * 20.0  # 2 x motor-neuron soma
    assert default_overlap_um(section="muscle") >= 2.5 * 50.0  # 2.5 x large mouse TA fiber
    with pytest.raises(ValueError, match="section"):
        default_overlap_um(section="liver")


def test_needs_tiling():
    st = make_muscle_section(seed=0, shape=(128, 128)).stack
    assert not needs_tiling(st, memory_budget_bytes=2**30)
    assert needs_tiling(st, memory_budget_bytes=1000)
    assert needs_tiling(_lazy(st), memory_budget_bytes=2**40)


# ------------------------------------------------------------------- cord
def test_cord_tiles_have_objects_crossing_borders(cord):
    ph, whole, tiled = cord
    assert tiled.provenance["tiling"]["n_tiles"] >= 4
    tiles = tile_grid(ph.stack.shape[2:], tile_px=round(CORD_TILE_UM / 0.5), margin_px=120)
    crossing = sum(_crossing(whole.labels[k], tiles) for k in ("gfp_cells", "motor_neurons", "astrocytes"))
    assert crossing >= 5


def _same_label_images(a: np.ndarray, b: np.ndarray) -> None:
    """The same objects pixel for pixel, up to the numbering."""
    a, b = np.asarray(a), np.asarray(b)
    assert np.array_equal(a > 0, b > 0)
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    n_a, n_b = len(np.unique(a[a > 0])), len(np.unique(b[b > 0]))
    assert pairs.shape[1] == n_a == n_b  # a one-to-one map between the labels


@pytest.mark.parametrize("kind", ["gfp_cells", "astrocytes"])
def test_cord_identical_objects(cord, kind):
    # thresholds are the whole image's (global pre-pass), background blocks anchored on the
    # whole image (origin_px), windows wide enough for its reach: the same objects, pixel for pixel
    _, whole, tiled = cord
    a, b = whole.tables[kind], tiled.tables[kind]
    assert len(a) == len(b) > 40
    assert list(a.columns) == list(b.columns)
    d, i = _match(a, b)
    assert d.max() < 1e-6
    assert len(set(i.tolist())) == len(a)
    assert np.array_equal(b["area_um2"].to_numpy()[i], a["area_um2"].to_numpy())
    if kind == "gfp_cells":
        assert np.array_equal(b["gfap_positive"].to_numpy()[i], a["gfap_positive"].to_numpy())
    _same_label_images(whole.labels[kind], tiled.labels[kind])


def test_cord_image_wide_thresholds_equal_whole_image(cord):
    from spinalquant.config import Config
    from spinalquant.segment import astrocytes as astro
    from spinalquant.segment import gfp_cells as gc

    _, whole, tiled = cord
    cfg, px = Config(), whole.pixel_size_um
    resid = gc.background_residual(whole.planes["gfp"], spacing=(px, px),
                                   smooth_sigma_um=cfg.gfp_cells.smooth_sigma_um,
                                   background_size_um=cfg.gfp_cells.background_size_um)
    assert gc.threshold_sample_stride(resid.size) == 2  # 1024²: a subsample, gathered tile by tile
    thr, med, _ = gc.detection_threshold(resid.ravel()[::2], method="li", noise_k=cfg.gfp_cells.noise_k)
    resp = astro.soma_response(whole.planes["gfap"], pixel_size_um=px, params=cfg.astrocytes)
    athr, amed = astro.soma_threshold(resp.ravel()[:: astro.soma_sample_stride(resp.size)],
                                      noise_k=cfg.astrocytes.noise_k)
    iw = tiled.provenance["tiling"]["image_wide"]
    assert (iw["gfp_threshold"], iw["gfp_median"]) == (thr, med)
    assert (iw["astrocyte_threshold"], iw["astrocyte_median"]) == (athr, amed)
    assert 0 < iw["bleed_coefficient"] < 0.5
    from spinalquant.segment.gfp_cells import pixel_noise

    fres = astro.gfap_residual(whole.planes["gfap"], pixel_size_um=px)
    fthr = astro.area_threshold(fres.ravel(), noise_sigma=pixel_noise(fres))
    assert iw["gfap_area_threshold"] == fthr
    # puncta: the noise floor and the unresolved-pair calibration of the whole plane
    from spinalquant.segment.puncta import image_wide_calibration, isolated_spots

    syn = whole.planes["synapse"]
    cal = image_wide_calibration([isolated_spots(syn, pixel_size_um=px)], pixel_size_um=px,
                                 read=lambda y0, y1, x0, x1: syn[y0:y1, x0:x1])
    assert {f"puncta_{k[6:]}": v for k, v in cal.items()} == {
        k: v for k, v in iw.items() if k.startswith("puncta_")}
    # motor neurons: the levels of the whole image's foreground, up to the pixels near
    # a core's edge whose 60 µm background opening reaches beyond the window
    # (measured: median and floor within 0.25 %)
    from spinalquant.segment.motor_neurons import foreground, threshold_levels

    levels = threshold_levels(foreground(whole.planes["chat"], pixel_size_um=px))
    assert iw["motor_neuron_levels"] == pytest.approx(levels, rel=5e-3)


def test_cord_same_motor_neurons(cord):
    _, whole, tiled = cord
    a, b = whole.tables["motor_neurons"], tiled.tables["motor_neurons"]
    assert len(a) == len(b) > 0
    assert list(a.columns) == list(b.columns)
    d, i = _match(a, b)
    assert np.all(d < 0.05), d.max()  # measured 0.012 µm
    assert len(set(i.tolist())) == len(a)  # one-to-one
    # the levels are the whole image's and the background bins are anchored on its
    # blocks; only the 60 µm background opening reaches beyond the overlap (it
    # can see other pixels near a core's edge): areas measured within 0.17 %
    # (0.62 % with per-window levels; 0.09 % and 0.07 % on seeds 30, 31)
    rel = np.abs(b["area_um2"].to_numpy()[i] / a["area_um2"].to_numpy() - 1)
    assert rel.max() < 0.004
    assert np.array_equal(b["n_puncta"].to_numpy()[i], a["n_puncta"].to_numpy())


def test_cord_same_puncta(cord):
    _, whole, tiled = cord
    a, b = whole.tables["puncta"], tiled.tables["puncta"]
    # image-wide noise floor and pair-test calibration: the same puncta, to rounding
    assert len(a) == len(b) > 500
    d, i = _match(a, b)
    assert d.max() < 1e-9
    assert len(set(i.tolist())) == len(a)
    for col in ("amplitude", "snr"):
        assert np.allclose(b[col].to_numpy()[i], a[col].to_numpy(), rtol=1e-9, atol=0), col
    if "y_px" in b.columns:  # pixel coordinates are global, like the µm ones
        px = tiled.pixel_size_um
        assert np.allclose(b["y_px"] * px, b["y_um"]) and np.allclose(b["x_px"] * px, b["x_um"])


def test_cord_summary(cord):
    _, whole, tiled = cord
    s, t = whole.summary, tiled.summary
    for key in ("n_gfp_cells", "n_gfp_gfap_cells", "n_motor_neurons"):
        assert t[key] == s[key], key
    assert t["pct_gfp_gfap"] == pytest.approx(s["pct_gfp_gfap"], abs=1e-9)
    assert t["puncta_per_motor_neuron"] == pytest.approx(s["puncta_per_motor_neuron"], rel=0.02)
    # coloc on the whole plane (subsample k = 1): exact
    assert tiled.provenance["tiling"]["coloc_subsample"] == 1
    for key in ("pearson_gfp_gfap", "manders_m1_gfp_gfap", "manders_m2_gfp_gfap"):
        assert t[key] == pytest.approx(s[key], abs=1e-9), key
    # GFAP+ pixels counted core by core against the whole image's threshold
    assert t["gfap_area_fraction"] == s["gfap_area_fraction"]
    assert t["n_astrocytes"] == s["n_astrocytes"]
    assert t["gfp_cells_per_mm2"] == pytest.approx(s["gfp_cells_per_mm2"], rel=1e-12)


def test_cord_labels_stitched(cord):
    ph, whole, tiled = cord
    for kind in ("gfp_cells", "motor_neurons", "astrocytes"):
        lab = tiled.labels[kind]
        assert lab.shape == ph.stack.shape[2:]
        _labels_match_table(lab, tiled.tables[kind], tiled.pixel_size_um)
    assert np.array_equal(tiled.planes["gfp"], whole.planes["gfp"])


# ----------------------------------------------------------------- muscle
def test_muscle_same_fibers(muscle):
    ph, whole, tiled = muscle
    a, b = whole.tables["fibers"], tiled.tables["fibers"]
    tiles = tile_grid(ph.stack.shape[2:], tile_px=round(MUSCLE_TILE_UM / 0.65), margin_px=246)
    assert len(tiles) >= 4 and _crossing(whole.labels["fibers"], tiles) >= 10
    assert len(a) == len(b) > 50
    d, i = _match(a, b)
    assert np.all(d < 1.0) and len(set(i.tolist())) == len(a)
    for col in ("area_um2", "min_feret_um"):
        rel = np.abs(b[col].to_numpy()[i] / a[col].to_numpy() - 1)
        assert rel.max() < 0.02, col
    # edge exclusion refers to the whole image: no kept fiber touches it
    assert not b["touches_border"].any()
    lab = tiled.labels["fibers"]
    rim = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    assert not np.any(rim)
    _labels_match_table(lab, b, tiled.pixel_size_um)
    for key, value in whole.summary.items():
        assert tiled.summary[key] == pytest.approx(value, rel=0.01), key
    pd.testing.assert_frame_equal(whole.tables["fiber_histogram"], tiled.tables["fiber_histogram"])


def test_muscle_keep_edge_fibers_when_asked():
    from spinalquant.config import Config

    ph = make_muscle_section(seed=5, shape=(512, 512))
    cfg = Config.from_dict({"muscle": {"exclude_border": False}, "fibers": {"exclude_border": False}})
    a = analyze(ph.stack, cfg).tables["fibers"]
    b = analyze_tiled(ph.stack, cfg, tile_um=170.0).tables["fibers"]
    assert len(a) == len(b) and b["touches_border"].sum() == a["touches_border"].sum() > 0


def test_disk_store_and_lazy_input_give_the_same_result():
    ph = make_muscle_section(seed=7, shape=(512, 512))
    mem = analyze_tiled(ph.stack, tile_um=170.0)
    disk = analyze_tiled(_lazy(ph.stack), tile_um=170.0, in_memory_max_bytes=0)
    assert disk.provenance["tiling"]["labels_on_disk"]
    assert isinstance(disk.labels["fibers"], np.memmap)
    assert np.array_equal(np.asarray(disk.labels["fibers"]), mem.labels["fibers"])
    pd.testing.assert_frame_equal(disk.tables["fibers"], mem.tables["fibers"])
    # the input is never modified
    assert isinstance(ph.stack.data, np.ndarray)


def test_roi_mask_shape_checked():
    ph = make_muscle_section(seed=0, shape=(128, 128))
    with pytest.raises(ValueError, match="ROI mask shape"):
        analyze_tiled(ph.stack, roi_mask=np.ones((10, 10), bool))


def test_decimated_for_qc(muscle):
    from spinalquant.tiling import decimated

    _, _, tiled = muscle
    small = decimated(tiled, max_side_px=512)
    assert small.labels["fibers"].shape == (512, 512)
    assert small.planes["border"].shape == (512, 512)
    assert small.pixel_size_um == pytest.approx(2 * tiled.pixel_size_um)
    assert small.tables["fibers"] is tiled.tables["fibers"]
    assert decimated(tiled, max_side_px=4096) is tiled


# ------------------------------------------------ image-wide thresholds
def test_fixed_thresholds_override_the_image_statistics():
    from spinalquant.config import ConfigError
    from spinalquant.segment import astrocytes as astro
    from spinalquant.segment import gfp_cells as gc

    ph = make_cord_section(seed=35, shape=(384, 384), n_motor_neurons=3)
    gfp = ph.stack.channel("gfp").max(axis=0)
    gfap = ph.stack.channel("gfap").max(axis=0)
    p = gc.GfpCellParams()
    resid = gc.background_residual(gfp, spacing=(0.5, 0.5), smooth_sigma_um=p.smooth_sigma_um,
                                   background_size_um=p.background_size_um)
    thr, med, _ = gc.detection_threshold(resid, method=p.threshold_method, noise_k=p.noise_k)
    base = gc.segment_gfp_cells(gfp, pixel_size_um=0.5)
    same = gc.segment_gfp_cells(gfp, pixel_size_um=0.5,
                                params=gc.GfpCellParams(fixed_threshold=thr, fixed_median=med))
    assert np.array_equal(base, same) and base.max() > 5
    high = gc.segment_gfp_cells(gfp, pixel_size_um=0.5, params=gc.GfpCellParams(fixed_threshold=3 * thr))
    assert high.max() < base.max()

    a = astro.AstrocyteParams()
    resp = astro.soma_response(gfap, pixel_size_um=0.5, params=a)
    athr, amed = astro.soma_threshold(resp, noise_k=a.noise_k)
    base = astro.segment_astrocytes(gfap, pixel_size_um=0.5)
    same = astro.segment_astrocytes(
        gfap, pixel_size_um=0.5, params=astro.AstrocyteParams(fixed_threshold=athr, fixed_median=amed))
    assert np.array_equal(base, same) and base.max() > 5
    high = astro.segment_astrocytes(gfap, pixel_size_um=0.5,
                                    params=astro.AstrocyteParams(fixed_threshold=3 * athr))
    assert high.max() < base.max()

    with pytest.raises(ConfigError, match="fixed_threshold"):
        gc.GfpCellParams(fixed_threshold=float("nan"))
    with pytest.raises(ConfigError, match="fixed_median"):
        astro.AstrocyteParams(fixed_median=float("inf"))


def test_cord_identical_objects_unaligned_tiles_other_pixel_size_roi():
    # 3 x 3 tiles whose cores do not fall on the background blocks; 0.65 µm pixels
    ph = make_cord_section(seed=36, shape=(720, 720), pixel_size_um=0.65, n_gfp_cells=60,
                           n_motor_neurons=8, snr=5.0)
    yy, xx = np.mgrid[:720, :720]
    roi = (yy - 300) ** 2 + (xx - 420) ** 2 < 300**2  # a ventral horn cut by tile borders
    whole = analyze(ph.stack, roi_mask=roi)
    tiled = analyze_tiled(ph.stack, tile_um=160.0, roi_mask=roi)
    assert tiled.provenance["tiling"]["n_tiles"] == 9
    assert tiled.summary["gfap_area_fraction"] == whole.summary["gfap_area_fraction"]
    for kind in ("gfp_cells", "astrocytes"):
        a, b = whole.tables[kind], tiled.tables[kind]
        assert len(a) == len(b) > 20, kind
        _same_label_images(whole.labels[kind], tiled.labels[kind])
    a, b = whole.tables["gfp_cells"], tiled.tables["gfp_cells"]
    d, i = _match(a, b)
    assert d.max() < 1e-6
    assert np.array_equal(b["gfap_positive"].to_numpy()[i], a["gfap_positive"].to_numpy())


@pytest.mark.parametrize("with_roi", [False, True])
def test_area_sample_gathered_tile_by_tile_is_the_whole_images(with_roi):
    from spinalquant.tiling import _area_sample

    rng = np.random.default_rng(40)
    shape = (97, 83)
    resid = rng.normal(0, 1, shape).astype(np.float32)
    roi = rng.random(shape) < 0.6 if with_roi else None
    region = resid[roi] if with_roi else resid.ravel()
    stride = 3
    rows_before = np.concatenate([[0], np.cumsum(roi.sum(axis=1))]) if with_roi else None
    out = np.full(-(-region.size // stride), np.nan, np.float32)
    for t in tile_grid(shape, tile_px=30, margin_px=7, align_px=4):
        y0, y1, x0, x1 = t.window
        _area_sample(resid[y0:y1, x0:x1], t, shape[1], stride, roi, rows_before, out)
    assert np.array_equal(out, region[::stride])
