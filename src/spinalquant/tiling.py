"""Tiled analysis of images bigger than memory (whole-section mosaics).

:func:`analyze_tiled` reads a :class:`~spinalquant.stack.Stack` window by
window (numpy or lazy dask data), runs the very same
:func:`~spinalquant.pipeline.analyze` on every window and merges the results
into one :class:`~spinalquant.pipeline.Results`, as if the whole image had
been analysed at once:

* the image is cut into **cores** that partition it; each core is analysed
  inside a **window** grown by an overlap margin on every side (clipped at the
  image edge). The margin is at least the largest object diameter, so an object
  whose centroid lies in a core is whole in its window;
* an object is kept only by the tile whose core holds its centroid, hence
  counted exactly once; coordinates are shifted to global µm and labels are
  renumbered ``1..n`` per kind, tile after tile;
* label images and projected planes are stitched into global arrays, held in
  memory when small and otherwise in memory-mapped files on disk;
* summary figures are recomputed from the merged tables. Fiber edge
  exclusion refers to the whole image's edge, not to tile edges;
* pixel colocalization (Pearson, Costes-thresholded Manders) is computed on
  a whole-image plane sampled every ``k``-th pixel in y and x, with ``k = 1``
  (exact) unless the image has more than ``coloc_max_pixels`` pixels. The
  GFAP area fraction counts GFAP+ pixels core by core against the whole
  image's threshold (exact).

The image-wide statistics of GFP+ cells and astrocytes (detection
thresholds, background medians), the motor neurons' threshold levels, the
GFAP area threshold, the GFP→GFAP
bleed-through coefficient and the puncta detector's calibration (noise
floor of the response, single-spot width and the unresolved-pair test's
levels, measured on the image's isolated spots) are computed once, in a
pass over the windows before the analysis, and given to every tile: no
tile uses statistics of its own window for these. The background blocks of
GFP+ cells, astrocytes and the GFAP area fraction, the puncta noise grid and
two-spot fits and the motor neurons' background bins are anchored on the
whole image through ``origin_px``. With an overlap that covers the filters'
reach, GFP+ cells, astrocytes and puncta come out object for object (puncta to rounding,
~1e-13 µm) as in a whole-image analysis. The motor neurons' 60 µm background
opening reaches beyond the overlap, so soma areas may differ slightly
(~0.2 %, see ``tests/test_tiling.py``).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .config import Config
from .errors import ImageContentError
from .pipeline import (
    CORD_FIGURES,
    MUSCLE_FIGURES,
    TABLE_COLUMNS,
    Results,
    analyze,
    cord_counts,
    detect_section,
    empty_table,
    has_marker,
    marker_plane,
    resolve_pixel_size,
)
from .stack import Stack

Progress = Callable[[str], None]

#: Pixels of the sample the motor-neuron levels are measured on (all up to this).
_MN_SAMPLE = 4_000_000

#: Object kinds that have a label image with the same ids as their table.
LABELLED_KINDS = ("gfp_cells", "astrocytes", "motor_neurons", "fibers")


@dataclass(frozen=True)
class Tile:
    """One tile: its core (owned pixels) and its analysis window, in pixels.

    Bounds are half-open ``(y0, y1, x0, x1)``; the window contains the core.
    """

    index: int
    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]

    @property
    def window_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.window
        return slice(y0, y1), slice(x0, x1)

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """The core as slices of the window array."""
        (cy0, cy1, cx0, cx1), (wy0, _, wx0, _) = self.core, self.window
        return slice(cy0 - wy0, cy1 - wy0), slice(cx0 - wx0, cx1 - wx0)


def tile_grid(shape_yx: tuple[int, int], *, tile_px: int, margin_px: int, align_px: int = 1) -> list[Tile]:
    """Cut an image into cores of about ``tile_px`` pixels plus overlap windows.

    Cores have near-equal sizes (at most ``tile_px``) and partition the image.
    A window starts ``margin_px`` before its core, moved further back to a
    multiple of ``align_px``: block-pooled filters anchored at the window's
    origin (background openings) then see the same blocks as on the whole
    image.

    Parameters
    ----------
    shape_yx : (int, int)
        Image size (Y, X) in pixels.
    tile_px : int
        Largest core side in pixels (> 0).
    margin_px : int
        Overlap added on every side of a core (>= 0), clipped at the image edge.
    align_px : int
        Window origins are multiples of this (>= 1).

    Returns
    -------
    list of Tile
        Row-major order.

    Examples
    --------
    >>> [t.core for t in tile_grid((10, 7), tile_px=5, margin_px=2)]
    [(0, 5, 0, 4), (0, 5, 4, 7), (5, 10, 0, 4), (5, 10, 4, 7)]
    >>> tile_grid((10, 7), tile_px=5, margin_px=2)[0].window
    (0, 7, 0, 6)
    >>> tile_grid((10, 7), tile_px=5, margin_px=2, align_px=4)[3].window
    (0, 10, 0, 7)
    """
    if tile_px < 1 or margin_px < 0 or align_px < 1:
        raise ValueError(
            f"tile_px and align_px must be >= 1 and margin_px >= 0; got {tile_px}, {align_px}, {margin_px}"
        )
    ny, nx = int(shape_yx[0]), int(shape_yx[1])

    def cuts(n: int) -> np.ndarray:
        k = max(1, math.ceil(n / tile_px))
        return np.linspace(0, n, k + 1).round().astype(int)

    ys, xs = cuts(ny), cuts(nx)
    tiles = []
    for i in range(len(ys) - 1):
        for j in range(len(xs) - 1):
            core = (int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1]))
            y0 = (core[0] - margin_px) // align_px * align_px
            x0 = (core[2] - margin_px) // align_px * align_px
            window = (max(0, y0), min(ny, core[1] + margin_px), max(0, x0), min(nx, core[3] + margin_px))
            tiles.append(Tile(len(tiles), core, window))
    return tiles


def default_overlap_um(config: Config | None = None, *, section: str = "cord") -> float:
    """Overlap margin (µm) wide enough for the largest object of a section.

    Cord: the largest of 3 x the motor-neuron soma diameter, the radius of
    its background opening (60 µm with defaults) and, for GFP+ cells and
    astrocytes, the reach of the background removal (1.6 x
    ``background_size_um``) plus the smoothing and one cell diameter with
    its outline ring (84 µm with defaults): every pixel of a core object, and
    every pixel its outline looks at, then has the same background as in the
    whole image. Muscle: the diameter of a disk with the largest accepted
    fiber area (160 µm with defaults), more than 2.5 x the min-Feret of the
    largest mouse TA fibers.

    Examples
    --------
    >>> round(default_overlap_um(section="cord"), 1)
    83.8
    """
    cfg = config or Config()
    if section == "cord":
        from .segment import gfp_cells as gc
        from .segment.motor_neurons import background_radius_um

        mn, g, a = cfg.motor_neurons, cfg.gfp_cells, cfg.astrocytes
        gfp = (gc.background_reach_um(g.background_size_um) + 4 * g.smooth_sigma_um + g.cell_diameter_um
               + g.granule_ring_um + g.max_grow_um)
        astro = (gc.background_reach_um(a.background_size_um) + 2 * a.process_width_um
                 + 4 * a.soma_diameter_um / 8 + a.soma_diameter_um + a.max_grow_um)
        return float(max(3.0 * mn.soma_diameter_um, background_radius_um(mn), gfp, astro))
    if section == "muscle":
        return float(2.0 * math.sqrt(cfg.fibers.max_area_um2 / math.pi))
    raise ValueError(f"section must be 'cord' or 'muscle'; got {section!r}")


def estimated_memory_bytes(stack: Stack) -> int:
    """Rough peak memory (bytes) of a whole-image :func:`analyze` of ``stack``.

    The pixel data (Z planes of every channel) plus ~160 bytes per (Y, X)
    pixel of working arrays (measured on cord phantoms: ~130).

    Examples
    --------
    >>> st = Stack(np.zeros((2, 3, 100, 100), np.uint16), ("GFP", "GFAP"), (1, 1, 1))
    >>> estimated_memory_bytes(st)
    1720000
    """
    c, z, y, x = stack.shape
    return int(c * z * y * x * stack.data.dtype.itemsize + 160 * y * x)


def needs_tiling(stack: Stack, *, memory_budget_bytes: int) -> bool:
    """True when ``stack`` is lazy (dask) or too big to analyse in one piece.

    Examples
    --------
    >>> st = Stack(np.zeros((1, 1, 64, 64), np.uint16), ("GFP",), (None, 1, 1))
    >>> needs_tiling(st, memory_budget_bytes=2**30)
    False
    """
    lazy = not isinstance(stack.data, np.ndarray)
    return lazy or estimated_memory_bytes(stack) > memory_budget_bytes


def decimated(res: Results, *, max_side_px: int = 4096) -> Results:
    """A light copy of ``res`` for QC overlays and label previews of huge images.

    Planes, label images and the ROI mask are sampled every ``s``-th pixel
    (the smallest ``s`` keeping both sides <= ``max_side_px``) and
    ``pixel_size_um`` is multiplied by ``s``; tables and summary are shared
    (coordinates stay in µm, so overlays still line up).

    Examples
    --------
    >>> r = Results("cord", {}, {}, {"gfp_cells": np.zeros((100, 60), np.int32)}, {}, 0.5)
    >>> d = decimated(r, max_side_px=50)
    >>> d.labels["gfp_cells"].shape, d.pixel_size_um
    ((50, 30), 1.0)
    """
    arrays = [*res.labels.values(), *res.planes.values()]
    side = max((max(a.shape[:2]) for a in arrays), default=0)
    s = max(1, math.ceil(side / max_side_px))
    if s == 1:
        return res

    def thin(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[::s, ::s])

    roi = None if res.roi_mask is None else thin(res.roi_mask)
    prov = {**res.provenance, "decimated_by": s}
    return dataclasses.replace(
        res, labels={k: thin(v) for k, v in res.labels.items()},
        planes={k: thin(v) for k, v in res.planes.items()},
        pixel_size_um=res.pixel_size_um * s, roi_mask=roi, provenance=prov)


# ------------------------------------------------------------- array stores
class _Store:
    """Global (Y, X[, ...]) arrays written window by window, in RAM or on disk."""

    def __init__(self, on_disk: bool, tmp_dir: str | None):
        self.on_disk = on_disk
        self.dir = Path(tempfile.mkdtemp(prefix="spinalquant-tiles-", dir=tmp_dir)) if on_disk else None
        self.arrays: dict[str, Any] = {}  # name -> ndarray, or (path, dtype, shape)

    def create(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if not self.on_disk:
            self.arrays[name] = np.zeros(shape, dtype=dtype)
            return
        path = self.dir / f"{len(self.arrays)}.dat"
        mm = np.memmap(path, dtype=dtype, mode="w+", shape=shape)  # zero-filled, sparse
        del mm
        self.arrays[name] = (path, np.dtype(dtype), shape)

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def write(self, name: str, sl: tuple[slice, slice], values: np.ndarray,
              where: np.ndarray | None = None) -> None:
        """``arr[sl] = values`` (only at ``where`` and where ``arr`` is still 0)."""
        entry = self.arrays[name]
        # a short-lived map: its pages leave the process when it is dropped
        arr = entry if isinstance(entry, np.ndarray) else np.memmap(
            entry[0], dtype=entry[1], mode="r+", shape=entry[2])
        if where is None:
            arr[sl] = values
        else:
            view = arr[sl]
            ok = where & (view == 0)
            view[ok] = values[ok]
        if not isinstance(entry, np.ndarray):
            arr.flush()
            del arr

    def finish(self) -> dict[str, np.ndarray]:
        """The arrays; disk ones as copy-on-write maps of files already unlinked."""
        out = {}
        for name, entry in self.arrays.items():
            if isinstance(entry, np.ndarray):
                out[name] = entry
            else:
                out[name] = np.memmap(entry[0], dtype=entry[1], mode="c", shape=entry[2])
        if self.dir is not None:
            # POSIX keeps mapped files alive until unmapped; elsewhere the
            # folder stays in the temporary directory
            shutil.rmtree(self.dir, ignore_errors=True)
        return out


# ----------------------------------------------------------- tile reading
def _compute(a: Any) -> np.ndarray:
    return np.asarray(a.compute() if hasattr(a, "compute") else a)


def _best_planes(data: Any, tiles: list[Tile]) -> list[int]:
    """Per channel, the z index with the highest variance of the Laplacian."""
    c_n, z_n = data.shape[:2]
    s = np.zeros((c_n, z_n))
    s2 = np.zeros((c_n, z_n))
    n = 0
    for t in tiles:
        ys, xs = t.window_slices
        win = _compute(data[:, :, ys, xs]).astype(np.float32)
        cy, cx = t.core_in_window
        for c in range(c_n):
            for z in range(z_n):
                lap = ndi.laplace(win[c, z])[cy, cx].astype(np.float64)
                s[c, z] += lap.sum()
                s2[c, z] += (lap * lap).sum()
        n += (t.core[1] - t.core[0]) * (t.core[3] - t.core[2])
    var = s2 / n - (s / n) ** 2
    return [int(np.argmax(var[c])) for c in range(c_n)]


def _tile_stack(stack: Stack, tile: Tile, cfg: Config, best: list[int] | None,
                channels: list[int] | None = None) -> Stack:
    """The window of ``stack`` as an in-memory Stack, projected per tile.

    ``channels`` (indices into ``stack``) reads only those, one at a time.
    """
    ys, xs = tile.window_slices
    data = stack.data
    keep_z = data.shape[1] == 1 or (cfg.image.mode == "3d" and stack.is_3d)

    def read(c: int) -> np.ndarray:  # (Z or 1, Y, X)
        if keep_z:
            return _compute(data[c, :, ys, xs])
        if cfg.image.projection == "max":
            return _compute(data[c, :, ys, xs].max(axis=0))[None]
        if cfg.image.projection == "mean":
            return _compute(data[c, :, ys, xs].mean(axis=0, dtype=np.float32))[None]
        return _compute(data[c, best[c], ys, xs])[None]  # "best": the plane chosen on the whole image

    chans = list(range(data.shape[0])) if channels is None else list(channels)
    win = np.stack([read(c) for c in chans])
    names = tuple(stack.channel_names[c] for c in chans)
    return dataclasses.replace(stack, data=win, channel_names=names)


# ----------------------------------------------------------------- merging
def _in_core(df: pd.DataFrame, tile: Tile, px: float) -> np.ndarray:
    """Rows whose (global) centroid falls in the tile's core (half-open, in pixels)."""
    y0, y1, x0, x1 = tile.core
    cy = df["y_um"].to_numpy(dtype=float) / px
    cx = df["x_um"].to_numpy(dtype=float) / px
    return (cy >= y0 - 0.5) & (cy < y1 - 0.5) & (cx >= x0 - 0.5) & (cx < x1 - 0.5)


def _global_edge_labels(lab: np.ndarray, tile: Tile, shape_yx: tuple[int, int]) -> np.ndarray:
    """Labels of a window's label image that touch the whole image's edge."""
    y0, y1, x0, x1 = tile.window
    rims = []
    if y0 == 0:
        rims.append(lab[0])
    if y1 == shape_yx[0]:
        rims.append(lab[-1])
    if x0 == 0:
        rims.append(lab[:, 0])
    if x1 == shape_yx[1]:
        rims.append(lab[:, -1])
    if not rims:
        return np.zeros(0, dtype=lab.dtype)
    u = np.unique(np.concatenate(rims))
    return u[u != 0]


def _drop_edge_fibers(cfg: Config) -> bool:
    """Whether a whole-image analysis would drop fibers cut by the image edge."""
    return bool(cfg.muscle.exclude_border or cfg.fibers.exclude_border)


def _colocalization(gfp: np.ndarray, gfap: np.ndarray, mask: np.ndarray | None, cfg: Config,
                    px: float) -> dict[str, Any]:
    """The pipeline's GFP/GFAP figures, on (possibly subsampled) whole planes."""
    from .measure import colocalization as coloc

    use_costes = cfg.colocalization.manders_threshold == "costes"
    c = coloc.colocalization(
        gfp, gfap, mask=mask, costes=cfg.colocalization.costes or use_costes,
        pvalue=cfg.colocalization.pvalue, n_iter=cfg.colocalization.n_iter, pixel_size_um=px,
    )
    c = {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in c.items()}
    out: dict[str, Any] = {"pearson_gfp_gfap": c.get("pearson")}
    m1, m2 = ("tm1", "tm2") if use_costes else ("manders_m1", "manders_m2")
    out["manders_m1_gfp_gfap"] = c.get(m1)
    out["manders_m2_gfp_gfap"] = c.get(m2)
    for k in ("costes_threshold_a", "costes_threshold_b", "pvalue"):
        if c.get(k) is not None:
            out[f"coloc_{k}_gfp_gfap"] = c[k]
    return out


def _subsample_index(lo: int, hi: int, k: int) -> np.ndarray:
    """Global indices in [lo, hi) that are multiples of ``k``."""
    return np.arange(-(-lo // k) * k, hi, k)


# ------------------------------------------------------------------ public
def _sample_positions(tile: Tile, width: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of a tile's core whose flat index ``y * width + x`` is a multiple of ``stride``.

    Returns their window coordinates (row, column) and their positions
    ``flat // stride`` in the whole image's sample ``plane.ravel()[::stride]``.
    """
    cy0, cy1, cx0, cx1 = tile.core
    wy0, wx0 = tile.window[0], tile.window[2]
    rows = np.arange(cy0, cy1, dtype=np.int64)
    if stride == 1:
        yy, xx = np.meshgrid(rows, np.arange(cx0, cx1, dtype=np.int64), indexing="ij")
    else:
        first = cx0 + (-(rows * width + cx0)) % stride
        xx = first[:, None] + stride * np.arange(-(-(cx1 - cx0) // stride), dtype=np.int64)[None, :]
        yy = np.broadcast_to(rows[:, None], xx.shape)
        ok = xx < cx1
        yy, xx = yy[ok], xx[ok]
    yy, xx = yy.ravel(), xx.ravel()
    return yy - wy0, xx - wx0, (yy * width + xx) // stride


def _global_statistics(stack: Stack, cfg: Config, tiles: list[Tile], px: float, best: list[int] | None,
                       max_pixels: int, say: Callable[[str], None],
                       roi_mask: np.ndarray | None = None) -> tuple[Config, float | None]:
    """Fix the image-wide statistics of the cord analysis once, for every tile.

    Computed per window they would follow each window's content, and an
    object's outline or GFAP call would depend on the tiling:

    * the detection thresholds (and background medians) of GFP+ cells
      (:func:`~spinalquant.segment.gfp_cells.detection_threshold`) and
      astrocytes (:func:`~spinalquant.segment.astrocytes.soma_threshold`)
      are **the whole image's**: each window's background residual (soma
      response) is exact in its core, because the overlap covers the
      background's reach and its blocks are the whole image's
      (``origin_px``), and the cores contribute exactly the pixels of the whole image's regular subsample
      ``ravel()[::stride]``, in the same order;
    * so is the threshold of the GFAP area fraction
      (:func:`~spinalquant.segment.astrocytes.area_threshold`): its sample
      is the whole image's (in the ROI, if any) and its pixel noise is
      gathered from the same rows as on the whole image; it is returned
      beside the config;
    * the motor neurons' threshold levels
      (:func:`~spinalquant.segment.motor_neurons.threshold_levels`) are
      those of the whole image's foreground (sampled every ``k``-th pixel
      beyond 4 Mpx), up to the pixels whose background opening reaches
      beyond their window;
    * the GFP→GFAP bleed-through coefficient is estimated on a plane sampled
      every ``k``-th pixel (at most ``max_pixels``), plenty for a per-cell
      intensity ratio;
    * the puncta detector's noise floor and unresolved-pair calibration are
      the whole image's (:func:`~spinalquant.segment.puncta.isolated_spots`
      per window, :func:`~spinalquant.segment.puncta.image_wide_calibration`):
      every core contributes its noise windows and the positions of its
      isolated detections; the calibration spots (at most 60) are chosen in
      the whole image's raster order and only their patches are read again.

    One pass reads the GFP, GFAP, synapse and ChAT channels window by window. Values already
    set in ``cfg`` are kept. 3-D GFP segmentation keeps per-window thresholds.
    """
    from .segment import astrocytes as astro
    from .segment import gfp_cells as gc
    from .segment import motor_neurons as mns
    from .segment import puncta

    has = {m: has_marker(stack, cfg, m) for m in ("gfp", "gfap", "synapse", "chat")}
    g, a, pos, pp, mn = cfg.gfp_cells, cfg.astrocytes, cfg.gfap_positivity, cfg.puncta, cfg.motor_neurons
    want_g = has["gfp"] and g.fixed_threshold is None and cfg.image.mode != "3d"
    want_a = has["gfap"] and a.fixed_threshold is None
    want_b = has["gfp"] and has["gfap"] and pos.bleed_coefficient is None
    want_f = has["gfap"]
    want_p = has["synapse"] and (
        pp.fixed_noise_floor is None or (pp.split_snr is not None and pp.split_calibration() is None))
    want_m = has["chat"] and mn.fixed_levels is None
    if not (want_g or want_a or want_b or want_f or want_p or want_m):
        return cfg, None
    say("image-wide thresholds, GFP→GFAP bleed-through and puncta calibration")
    h, w = (int(n) for n in stack.shape[2:])
    n = h * w
    markers = [m for m in ("gfp", "gfap", "synapse", "chat")
               if has[m] and (m != "synapse" or want_p) and (m != "chat" or want_m)]
    idx = [stack.channel_index(cfg.marker(m), cfg.aliases) for m in markers]
    # only these channels are read, window by window; they are addressed by index
    sub_cfg = dataclasses.replace(cfg, channels={m: i for i, m in enumerate(markers)})
    k = max(1, math.ceil(math.sqrt(n / max_pixels)))
    small = {m: None for m in ("gfp", "gfap")} if want_b else {}
    spots: list[dict[str, Any]] = []
    sg, sa = gc.threshold_sample_stride(n), astro.soma_sample_stride(n)
    samp_g = np.empty(-(-n // sg), np.float32) if want_g else None
    samp_a = np.empty(-(-n // sa), np.float32) if want_a else None
    sm = max(1, math.ceil(n / _MN_SAMPLE))  # motor-neuron levels: all pixels up to 4 Mpx
    samp_m = np.empty(-(-n // sm), np.float32) if want_m else None
    if want_f:
        rows_before = None
        n_reg = n
        if roi_mask is not None:
            per_row = np.count_nonzero(roi_mask, axis=1).astype(np.int64)
            rows_before = np.concatenate([[0], np.cumsum(per_row)])
            n_reg = int(rows_before[-1])
        sf = astro.area_sample_stride(n_reg)
        samp_f = np.empty(-(-n_reg // sf), np.float32)
        row_step = max(1, h // 512)  # the rows pixel_noise uses
        diffs: list[np.ndarray] = []
        want_f = n_reg > 0 and w > 1
    for tile in tiles:
        ts = _tile_stack(stack, tile, sub_cfg, best, channels=idx)
        planes = {m: marker_plane(ts, sub_cfg, m) for m in markers}
        origin = (tile.window[0], tile.window[2])
        if want_g:
            resid = gc.background_residual(planes["gfp"], spacing=(px, px), smooth_sigma_um=g.smooth_sigma_um,
                                           background_size_um=g.background_size_um, origin_px=origin)
            r, c, j = _sample_positions(tile, w, sg)
            samp_g[j] = resid[r, c]
        if want_a:
            resp = astro.soma_response(planes["gfap"], pixel_size_um=px,
                                       params=dataclasses.replace(a, origin_px=origin))
            r, c, j = _sample_positions(tile, w, sa)
            samp_a[j] = resp[r, c]
        if want_f:
            resid = astro.gfap_residual(planes["gfap"], pixel_size_um=px, origin_px=origin)
            _area_sample(resid, tile, w, sf, roi_mask, rows_before, samp_f)
            (cy0, cy1, cx0, cx1), (wy0, wx0) = tile.core, (tile.window[0], tile.window[2])
            rows = np.arange(-(-cy0 // row_step) * row_step, cy1, row_step) - wy0
            x_end = min(cx1, w - 1)  # the difference at x needs x + 1
            if rows.size and x_end > cx0:
                a_ = resid[rows]
                diffs.append((a_[:, cx0 - wx0 + 1:x_end - wx0 + 1] - a_[:, cx0 - wx0:x_end - wx0]).ravel())
        if want_m:
            fg = mns.foreground(planes["chat"], pixel_size_um=px,
                                params=dataclasses.replace(mn, origin_px=origin))
            r, c, j = _sample_positions(tile, w, sm)
            samp_m[j] = fg[r, c]
        if want_p:
            spots.append(puncta.isolated_spots(planes["synapse"], pixel_size_um=px, params=pp, core=tile.core,
                                               origin=(tile.window[0], tile.window[2]), image_shape=(h, w)))
        if want_b:
            (cy0, cy1, cx0, cx1) = tile.core
            iy, ix = _subsample_index(cy0, cy1, k), _subsample_index(cx0, cx1, k)
            grid = np.ix_(iy - tile.window[0], ix - tile.window[2])
            for m in small:
                if small[m] is None:
                    small[m] = np.zeros((-(-h // k), -(-w // k)), planes[m].dtype)
                small[m][np.ix_(iy // k, ix // k)] = planes[m][grid]
    if want_g:
        thr, med, _ = gc.detection_threshold(samp_g, method=g.threshold_method, noise_k=g.noise_k)
        g = dataclasses.replace(g, fixed_threshold=thr, fixed_median=med if g.fixed_median is None else g.fixed_median)
    if want_a:
        thr, med = astro.soma_threshold(samp_a, noise_k=a.noise_k)
        a = dataclasses.replace(a, fixed_threshold=thr, fixed_median=med if a.fixed_median is None else a.fixed_median)
    if want_b:
        labels = gc.segment_gfp_cells(small["gfp"], pixel_size_um=px * k, params=cfg.gfp_cells)
        if labels.max() > 0:
            coef = float(gc.estimate_bleed_through(
                small["gfp"], small["gfap"], labels=labels, pixel_size_um=px * k, k_noise=pos.k_noise,
                ring_gap_um=pos.ring_gap_um, ring_width_um=pos.ring_width_um))
            pos = dataclasses.replace(pos, bleed_coefficient=coef)
    if want_p:
        syn_cfg = dataclasses.replace(cfg, channels={"synapse": 0})
        syn_idx = [idx[markers.index("synapse")]]

        def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            box = (y0, y1, x0, x1)
            ts = _tile_stack(stack, Tile(0, box, box), syn_cfg, best, channels=syn_idx)
            return marker_plane(ts, syn_cfg, "synapse")

        found = puncta.image_wide_calibration(spots, pixel_size_um=px, params=pp, read=read)
        if pp.fixed_noise_floor is not None:
            found.pop("fixed_noise_floor", None)
        if pp.split_calibration() is not None:
            for key in ("fixed_spot_sigma_px", "fixed_misfit", "fixed_split_excess"):
                found.pop(key, None)
        pp = dataclasses.replace(pp, **found)
    if want_m:
        mn = dataclasses.replace(mn, fixed_levels=mns.threshold_levels(samp_m, threshold_snr=mn.threshold_snr))
    area_thr = None
    if want_f:
        sigma = gc.robust_sigma(np.concatenate(diffs)) / np.sqrt(2.0)  # as pixel_noise
        area_thr = astro.area_threshold(samp_f, noise_sigma=sigma)
    return dataclasses.replace(cfg, gfp_cells=g, astrocytes=a, gfap_positivity=pos, puncta=pp,
                               motor_neurons=mn), area_thr


def _area_sample(resid: np.ndarray, tile: Tile, width: int, stride: int, roi: np.ndarray | None,
                 rows_before: np.ndarray | None, out: np.ndarray) -> None:
    """Put a window's residual at its core's positions of the whole image's area sample.

    The sample is ``resid[region][::stride]``: region pixels in row-major
    order, every ``stride``-th one; ``rows_before[y]`` counts region pixels
    in the rows above ``y``.
    """
    (cy0, cy1, cx0, cx1), (wy0, wx0) = tile.core, (tile.window[0], tile.window[2])
    if roi is None:
        r, c, j = _sample_positions(tile, width, stride)
        out[j] = resid[r, c]
        return
    core = np.asarray(roi[cy0:cy1, cx0:cx1], dtype=bool)
    left = np.count_nonzero(roi[cy0:cy1, :cx0], axis=1).astype(np.int64)
    rank = (rows_before[cy0:cy1] + left)[:, None] + np.cumsum(core, axis=1) - 1
    take = core & (rank % stride == 0)
    yy, xx = np.nonzero(take)
    out[rank[take] // stride] = resid[yy + cy0 - wy0, xx + cx0 - wx0]


def analyze_tiled(
    stack: Stack,
    config: Config | None = None,
    *,
    tile_um: float = 1000.0,
    overlap_um: float | None = None,
    roi_mask: np.ndarray | None = None,
    section: str | None = None,
    progress: Progress | None = None,
    in_memory_max_bytes: int = 256 * 2**20,
    tmp_dir: str | None = None,
    coloc_max_pixels: int = 16_000_000,
) -> Results:
    """Analyse a (large) image tile by tile; the same results as :func:`analyze`.

    Parameters
    ----------
    stack : Stack
        Data (C, Z, Y, X), numpy or dask; only one window is read at a time
        and z-projected on the fly.
    config : Config, optional
        Parameters; defaults to ``Config()``.
    tile_um : float
        Largest core side (µm). Peak memory grows with
        ``(tile_um + 2 * overlap_um)**2``: ~130 bytes per pixel of a window
        for a cord section, plus the window's raw data.
    overlap_um : float, optional
        Margin around each core (µm); default :func:`default_overlap_um`.
        Must exceed the largest object diameter.
    roi_mask : ndarray of bool, shape (Y, X), optional
        Ventral-horn ROI, as in :func:`analyze` (may be a memory map).
    section : {"cord", "muscle"}, optional
        Force the kind of analysis instead of deciding from channel names.
    progress : callable, optional
        Called with a short message before each tile.
    in_memory_max_bytes : int
        Stitched label images and planes larger than this in total are kept
        in memory-mapped files (created in ``tmp_dir``, removed from the
        folder at once; the disk space is freed when the arrays are dropped).
    tmp_dir : str, optional
        Folder for those files (default: the system temporary folder).
    coloc_max_pixels : int
        Pixel colocalization uses every ``k``-th pixel in y and x, with the
        smallest ``k`` that keeps at most this many pixels (``k = 1`` is exact).

    Returns
    -------
    Results
        Tables with global coordinates and labels ``1..n`` matching
        ``labels``; ``provenance["tiling"]`` records the tiles.

    Raises
    ------
    ValueError
        Bad ``tile_um``/``overlap_um``, or an ROI mask of the wrong shape.

    Examples
    --------
    >>> from spinalquant.synthetic import make_muscle_section
    >>> ph = make_muscle_section(seed=1, shape=(400, 400))
    >>> res = analyze_tiled(ph.stack, tile_um=150.0, overlap_um=80.0)
    >>> res.provenance["tiling"]["n_tiles"]
    4
    """
    cfg = config or Config()
    say = progress or (lambda _msg: None)
    kind = section or detect_section(stack, cfg)
    px = resolve_pixel_size(stack, cfg)
    overlap = default_overlap_um(cfg, section=kind) if overlap_um is None else float(overlap_um)
    if not (tile_um > 0 and overlap >= 0):
        raise ValueError(f"tile_um must be > 0 and overlap_um >= 0; got {tile_um}, {overlap}")
    shape_yx = tuple(int(s) for s in stack.shape[2:])
    if roi_mask is not None and tuple(roi_mask.shape) != shape_yx:
        raise ValueError(
            f"{stack.name}: ROI mask shape {tuple(roi_mask.shape)} does not match the image {shape_yx}"
        )
    tiles = tile_grid(shape_yx, tile_px=max(1, round(tile_um / px)),
                      margin_px=math.ceil(overlap / px))

    tile_cfg = cfg
    if kind == "muscle":
        # edge exclusion is done here against the whole image's edge
        tile_cfg = dataclasses.replace(cfg, muscle=dataclasses.replace(cfg.muscle, exclude_border=False))
        tile_cfg = dataclasses.replace(tile_cfg, fibers=dataclasses.replace(cfg.fibers, exclude_border=False))
    best = _best_planes(stack.data, tiles) if (
        cfg.image.projection == "best" and stack.shape[1] > 1 and cfg.image.mode != "3d") else None
    area_thr = None
    if kind == "cord":
        tile_cfg, area_thr = _global_statistics(stack, tile_cfg, tiles, px, best, coloc_max_pixels, say,
                                                roi_mask)

    n_kinds = len(LABELLED_KINDS) + len(stack.channel_names) + 3
    est = shape_yx[0] * shape_yx[1] * 4 * n_kinds
    store = _Store(est > in_memory_max_bytes, tmp_dir)
    k = max(1, math.ceil(math.sqrt(shape_yx[0] * shape_yx[1] / coloc_max_pixels)))
    sub_shape = (-(-shape_yx[0] // k), -(-shape_yx[1] // k))
    sub: dict[str, np.ndarray] = {}

    parts: dict[str, list[pd.DataFrame]] = {}
    next_label: dict[str, int] = {}
    gfap_area = [0.0, 0.0]  # positive area, measured area
    skipped: list[int] = []
    for tile in tiles:
        say(f"tile {tile.index + 1}/{len(tiles)}")
        ts = _tile_stack(stack, tile, cfg, best)
        if any(not np.any(ts.data[c]) for c in range(ts.data.shape[0])):
            skipped.append(tile.index)  # a blank (zero-padded) part of a mosaic
            continue
        ws = tile.window_slices
        troi = None if roi_mask is None else np.asarray(roi_mask[ws], dtype=bool)
        try:
            res = analyze(ts, _at_origin(tile_cfg, tile), roi_mask=troi, section=kind)
        except ImageContentError:
            skipped.append(tile.index)
            continue
        _merge_tile(res, tile, px, shape_yx, kind, cfg, store, parts, next_label)
        core = tile.core_in_window
        (cy0, cy1, cx0, cx1) = tile.core
        for name, plane in res.planes.items():
            key = f"plane:{name}"
            if key not in store:
                store.create(key, shape_yx + plane.shape[2:], plane.dtype)
            store.write(key, (slice(cy0, cy1), slice(cx0, cx1)), plane[core])
        if kind == "cord" and "gfp" in res.planes and "gfap" in res.planes:
            iy = _subsample_index(cy0, cy1, k)
            ix = _subsample_index(cx0, cx1, k)
            grid = np.ix_(iy - tile.window[0], ix - tile.window[2])
            sub_sl = np.ix_(iy // k, ix // k)
            for m in ("gfp", "gfap"):
                if m not in sub:
                    sub[m] = np.zeros(sub_shape, dtype=res.planes[m].dtype)
                sub[m][sub_sl] = res.planes[m][grid]
        if kind == "cord" and "gfap" in res.planes:
            from .segment.astrocytes import gfap_area_fraction

            cmask = np.zeros(ts.shape[2:], dtype=bool)
            cmask[core] = True
            if troi is not None:
                cmask &= troi
            n_px = int(cmask.sum())
            if n_px:
                f = gfap_area_fraction(res.planes["gfap"], pixel_size_um=px, mask=cmask, threshold=area_thr,
                                       origin_px=(tile.window[0], tile.window[2]))
                gfap_area[0] += round(float(f) * n_px)  # a pixel count
                gfap_area[1] += n_px

    arrays = store.finish()
    labels = {k_: v for k_, v in arrays.items() if not k_.startswith("plane:")}
    planes = {k_.split(":", 1)[1]: v for k_, v in arrays.items() if k_.startswith("plane:")}
    tables = {name: pd.concat(dfs, ignore_index=True) if dfs else empty_table(name)
              for name, dfs in parts.items()}
    provenance = {"tiling": {
        "tile_um": float(tile_um), "overlap_um": overlap, "n_tiles": len(tiles),
        "skipped_tiles": skipped, "coloc_subsample": k,
        "labels_on_disk": store.on_disk,
    }}
    if kind == "cord":  # the image-wide values every tile used
        provenance["tiling"]["image_wide"] = {
            "gfp_threshold": tile_cfg.gfp_cells.fixed_threshold,
            "gfp_median": tile_cfg.gfp_cells.fixed_median,
            "astrocyte_threshold": tile_cfg.astrocytes.fixed_threshold,
            "astrocyte_median": tile_cfg.astrocytes.fixed_median,
            "bleed_coefficient": tile_cfg.gfap_positivity.bleed_coefficient,
            "gfap_area_threshold": area_thr,
            "motor_neuron_levels": tile_cfg.motor_neurons.fixed_levels,
        }
        pp = tile_cfg.puncta
        for key in ("fixed_noise_floor", "fixed_spot_sigma_px", "fixed_misfit", "fixed_split_excess",
                    "fixed_scale_px"):
            provenance["tiling"]["image_wide"][f"puncta_{key[6:]}"] = getattr(pp, key)

    if kind == "muscle":
        from .measure.morphology import fiber_histogram, fiber_summary

        fib = tables.get("fibers", empty_table("fibers"))
        summary = dict.fromkeys(MUSCLE_FIGURES)
        summary.update(fiber_summary(fib, atrophy_threshold_um2=cfg.muscle.atrophy_threshold_um2))
        bins = np.arange(0.0, cfg.muscle.histogram_max_um2 + cfg.muscle.histogram_bin_um2,
                         cfg.muscle.histogram_bin_um2)
        tables = {"fibers": fib, "fiber_histogram": fiber_histogram(fib, bins_um2=bins)}
        return Results("muscle", summary, tables, labels, planes, px, None, provenance)

    summary: dict[str, Any] = dict.fromkeys(CORD_FIGURES)
    if roi_mask is not None:
        summary["roi_area_um2"] = float(np.count_nonzero(roi_mask)) * px * px
    area_mm2 = (summary["roi_area_um2"] or shape_yx[0] * shape_yx[1] * px * px) / 1e6
    summary.update(cord_counts(tables, area_mm2=area_mm2, gfap_called="gfap" in planes))
    if "gfp" in sub and "gfap" in sub:
        mask = None
        if roi_mask is not None and cfg.colocalization.within_roi:
            mask = np.asarray(roi_mask[::k, ::k], dtype=bool)
        summary.update(_colocalization(sub["gfp"], sub["gfap"], mask, cfg, px * k))
    if gfap_area[1]:
        summary["gfap_area_fraction"] = gfap_area[0] / gfap_area[1]
    return Results("cord", summary, tables, labels, planes, px, roi_mask, provenance)


def _at_origin(cfg: Config, tile: Tile) -> Config:
    """``cfg`` told where the window lies (``origin_px`` of every block- or grid-anchored step).

    The puncta fits and noise grid and the background blocks of GFP+ cells,
    astrocytes and motor neurons are then the whole image's.
    """
    origin = (tile.window[0], tile.window[2])
    return dataclasses.replace(cfg, puncta=dataclasses.replace(cfg.puncta, origin_px=origin),
                               motor_neurons=dataclasses.replace(cfg.motor_neurons, origin_px=origin),
                               gfp_cells=dataclasses.replace(cfg.gfp_cells, origin_px=origin),
                               astrocytes=dataclasses.replace(cfg.astrocytes, origin_px=origin))


def _merge_tile(res: Results, tile: Tile, px: float, shape_yx: tuple[int, int], kind: str,
                cfg: Config, store: _Store, parts: dict[str, list[pd.DataFrame]],
                next_label: dict[str, int]) -> None:
    """Keep a tile's core objects: global µm, new labels, stitched label images."""
    dy, dx = tile.window[0] * px, tile.window[2] * px
    ws = tile.window_slices
    for name, df in res.tables.items():
        if name not in TABLE_COLUMNS:
            continue  # derived tables (fiber histogram) are rebuilt from the merge
        parts.setdefault(name, [])
        df = df.copy()
        df["y_um"] = df["y_um"] + dy
        df["x_um"] = df["x_um"] + dx
        for col, off in (("y_px", tile.window[0]), ("x_px", tile.window[2])):
            if col in df.columns:  # pixel coordinates (puncta) are global too
                df[col] = df[col] + off
        keep = _in_core(df, tile, px)
        lab = res.labels.get(name)
        if name == "fibers":
            edge = _global_edge_labels(lab, tile, shape_yx)
            touches = df["label"].isin(edge).to_numpy()
            if "touches_border" in df.columns:
                df["touches_border"] = touches
            if _drop_edge_fibers(cfg):
                keep &= ~touches
        df = df[keep].reset_index(drop=True)
        start = next_label.get(name, 0)
        new = np.arange(start + 1, start + len(df) + 1, dtype=np.int64)
        next_label[name] = start + len(df)
        if lab is not None and name in LABELLED_KINDS:
            if name not in store:
                store.create(name, shape_yx, np.int32)
            lut = np.zeros(int(lab.max(initial=0)) + 1, dtype=np.int32)
            lut[df["label"].to_numpy(dtype=np.int64)] = new
            relab = lut[lab]
            store.write(name, ws, relab, where=relab > 0)
        df["label"] = new
        parts[name].append(df)
