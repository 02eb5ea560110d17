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


@pytest.mark.parametrize("kind", ["gfp_cells", "motor_neurons"])
def test_cord_same_objects(cord, kind):
    _, whole, tiled = cord
    a, b = whole.tables[kind], tiled.tables[kind]
    assert len(a) == len(b) > 0
    assert list(a.columns) == list(b.columns)
    d, i = _match(a, b)
    assert np.all(d < 1.0), d.max()
    assert len(set(i.tolist())) == len(a)  # one-to-one
    if kind == "motor_neurons":
        rel = np.abs(b["area_um2"].to_numpy()[i] / a["area_um2"].to_numpy() - 1)
        assert rel.max() < 0.02
        # a bouton on a soma outline that moved by a pixel may change sides
        assert np.abs(b["n_puncta"].to_numpy()[i] - a["n_puncta"].to_numpy()).max() <= 1
    if kind == "gfp_cells":
        assert np.array_equal(b["gfap_positive"].to_numpy()[i], a["gfap_positive"].to_numpy())
        # outlines depend a little on each window's automatic threshold (see tiling.py)
        rel = np.abs(b["area_um2"].to_numpy()[i] / a["area_um2"].to_numpy() - 1)
        assert np.median(rel) < 0.01
        assert np.mean(rel < 0.02) >= 0.85


def test_cord_same_puncta(cord):
    _, whole, tiled = cord
    a, b = whole.tables["puncta"], tiled.tables["puncta"]
    # detection thresholds come from each window's noise: a borderline spot may flip
    assert abs(len(a) - len(b)) <= max(1, round(0.005 * len(a)))
    d, _ = _match(a, b)
    assert np.mean(d < 1.0) >= 0.995


def test_cord_astrocytes_close(cord):
    _, whole, tiled = cord
    a, b = whole.tables["astrocytes"], tiled.tables["astrocytes"]
    # somata are cut by a per-window Otsu threshold: a faint one may flip
    assert abs(len(a) - len(b)) <= max(1, round(0.02 * len(a)))
    d, i = _match(a, b)
    assert np.mean(d < 1.0) >= 0.97
    rel = np.abs(b["area_um2"].to_numpy()[i] / a["area_um2"].to_numpy() - 1)[d < 1.0]
    assert np.median(rel) < 0.05


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
    assert t["gfap_area_fraction"] == pytest.approx(s["gfap_area_fraction"], rel=0.05)
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
