"""GFP+ donor cells: segmentation, granule rejection and the GFAP call.

Segmentation (:func:`segment_gfp_cells`), all scales in µm:

1. **Background removal** — the image is lightly smoothed (``smooth_sigma_um``)
   and a background estimated as a grey opening with a square of
   ``background_size_um`` (a few cell diameters: no cell fits inside, so the
   opening follows only the slowly varying tissue background), then box
   filtered to remove its blockiness. The residual is ``smoothed - background``.
2. **Detection threshold** — the background noise σ is the MAD of the residual
   (1.4826 · median |r − median r|, robust because cells are a minority of
   pixels). The threshold is ``max(method, median + noise_k · σ)`` where
   *method* is Li's minimum cross-entropy (default: it keeps dim cells that
   Otsu cuts when cell brightness varies), Otsu or Triangle of the residual,
   or nothing for ``threshold_method="noise"``: the noise floor keeps an image
   without cells from being split into "cells" and noise. This mask only
   *finds* cells; a global level on a blurred image outlines bright cells too
   wide and dim ones too tight.
3. **Touching cells** — in each connected component, markers are maxima of
   the (slightly smoothed) Euclidean distance transform at least
   ``min_separation_um`` apart (default 0.35 · ``cell_diameter_um``); a
   watershed on the inverted distance splits the component.
   ``split="intensity"`` uses maxima of the smoothed intensity instead,
   ``split="none"`` keeps connected components.
4. **Outline** — each cell is cut at its own half maximum
   (``edge_fraction``): ``background + edge_fraction · (top − background)``,
   where *top* is the 70th percentile of the cell's residual and
   *background* the median of a ring 1 µm to 1 + ``granule_ring_um`` µm
   around its component (other objects excluded). The outline may shrink
   inside the detection mask or grow up to ``max_grow_um`` beyond it into
   unclaimed pixels (a dim cell); touching cells keep their watershed
   border. An opening with a disk of ``trim_um`` removes thin processes, holes
   are filled and the largest piece kept. The half-maximum of a blurred edge
   sits on the true edge, so the area no longer depends on blur or brightness.
5. **Size filter** — objects smaller than ``min_area_um2`` (30 µm², the
   result contract) or larger than ``max_area_um2`` are dropped.
6. **Autofluorescent granules** (lipofuscin) shine in every channel. With a
   ``reference`` stack of the *other* channels, an object is rejected when in
   *every* reference channel its mean exceeds the median of a ring around it
   by ``granule_k`` × that channel's background σ (the median of the rings'
   robust σ). A true GFP+ cell is bright in GFP but not at once in DAPI, GFAP,
   ChAT and the synaptic marker.

All per-object statistics (ring medians, robust σ) are computed on small
crops around each object and grouped sorts, so the cost grows with the number
of cells, not with the image. Steps 3-4 and the size filter are shared with
:mod:`~spinalquant.segment.astrocytes` (package-internal module
``spinalquant.segment._cells``).

The GFAP call (:func:`gfap_positivity`) is described on that function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import filters

from .. import _validate as check
from ..errors import ConfigError
from ._cells import check_origin, filter_and_relabel, grow_box, split_and_outline

__all__ = [
    "GfapPositivityParams",
    "GfpCellParams",
    "background_reach_um",
    "detection_threshold",
    "estimate_bleed_through",
    "gfap_positivity",
    "own_planes",
    "segment_gfp_cells",
    "segment_gfp_cells_3d",
    "threshold_sample_stride",
]

_MAD = 1.4826
_PLANE_HINT = "project a z-stack first, or use segment_gfp_cells_3d"


@dataclass(frozen=True)
class GfpCellParams:
    """Parameters of GFP+ cell segmentation (all lengths in µm).

    Parameters
    ----------
    cell_diameter_um : float
        Typical diameter of a GFP+ cell body; sets the default split distance
        and the smoothing scale.
    min_area_um2 : float
        Smallest cell body kept (result contract: 30 µm²).
    max_area_um2 : float
        Largest object kept (0 disables the limit).
    smooth_sigma_um : float
        Gaussian smoothing before thresholding (0 = none).
    background_size_um : float
        Side of the square window of the background opening; a few cell
        diameters (0 disables background removal).
    threshold_method : str
        "li" (default), "otsu", "triangle" or "noise" (noise floor only).
    noise_k : float
        Noise floor of the threshold, in background σ (MAD) above the median.
    split : str
        How touching cells are separated: "distance", "intensity" or "none".
    min_separation_um : float
        Smallest distance between two split cell centres (0 = 0.35 ×
        ``cell_diameter_um``).
    granule_k : float
        An object is an autofluorescent granule when it is brighter than its
        surroundings by this many σ in every reference channel.
    granule_ring_um : float
        Width of the ring around an object used as its local background (for
        the outline and the granule test).
    edge_fraction : float
        Each cell is outlined at this fraction of its own brightness above its
        local background (0.5 = half maximum; 0 keeps the detection mask).
    max_grow_um : float
        How far an outline may grow beyond the detection mask.
    trim_um : float
        Radius of the opening that trims thin processes off each outline
        (0 = none).
    fixed_threshold : float or None
        Detection threshold on the background residual, given instead of
        computed from the image (None, the default, computes it as in step 2).
        Tiled analysis sets the whole image's value here so that every tile
        cuts at the same level (:func:`detection_threshold`).
    fixed_median : float or None
        Background median of the residual, used with ``fixed_threshold`` as
        the outline's fallback background (None: from the image).
    origin_px : (int, int)
        Pixel (y, x) of a larger image that is this image's first pixel, when
        it is a window of it (tiled analysis): the background's min-pooled
        blocks are then the larger image's (:func:`background_residual`).
        ``(0, 0)`` for a whole image.
    """

    cell_diameter_um: float = 12.0
    min_area_um2: float = 30.0
    max_area_um2: float = 0.0
    smooth_sigma_um: float = 0.7
    background_size_um: float = 40.0
    threshold_method: str = "li"
    noise_k: float = 4.0
    split: str = "distance"
    min_separation_um: float = 0.0
    granule_k: float = 3.0
    granule_ring_um: float = 3.0
    edge_fraction: float = 0.5
    max_grow_um: float = 2.0
    trim_um: float = 2.0
    fixed_threshold: float | None = None
    fixed_median: float | None = None
    origin_px: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for key in ("fixed_threshold", "fixed_median"):
            v = getattr(self, key)
            if v is not None and not np.isfinite(v):
                raise ConfigError(f"[gfp_cells] {key} must be a finite number or unset; got {v}")
        object.__setattr__(self, "origin_px", check_origin(self.origin_px, "[gfp_cells] origin_px", ConfigError))
        if not 0 <= self.edge_fraction < 1:
            raise ConfigError(f"[gfp_cells] edge_fraction must be in [0, 1); got {self.edge_fraction}")
        if self.threshold_method not in ("otsu", "triangle", "li", "noise"):
            raise ConfigError(
                "[gfp_cells] threshold_method must be 'otsu', 'triangle', 'li' or 'noise'; "
                f"got {self.threshold_method!r}"
            )
        if self.split not in ("distance", "intensity", "none"):
            raise ConfigError(
                f"[gfp_cells] split must be 'distance', 'intensity' or 'none'; got {self.split!r}"
            )
        for key in ("cell_diameter_um",):
            if not getattr(self, key) > 0:
                raise ConfigError(f"[gfp_cells] {key} must be positive; got {getattr(self, key)}")
        for key in ("min_area_um2", "max_area_um2", "smooth_sigma_um", "background_size_um",
                    "min_separation_um", "granule_ring_um", "max_grow_um", "trim_um"):
            if getattr(self, key) < 0:
                raise ConfigError(f"[gfp_cells] {key} must be ≥ 0; got {getattr(self, key)}")


@dataclass(frozen=True)
class GfapPositivityParams:
    """Rule that calls a GFP+ cell GFAP-positive (see :func:`gfap_positivity`).

    Parameters
    ----------
    ring_gap_um : float
        Gap between the cell outline and its background ring.
    ring_width_um : float
        Width of the background ring (pixels of other cells are excluded).
    k_noise : float
        The bleed-corrected GFAP mean inside the cell must exceed the ring
        median by this many local noise σ (per-pixel MAD of the ring).
    min_ratio : float
        ... and inside / background must exceed this ratio.
    bleed_coefficient : float or None
        GFP→GFAP bleed-through (GFAP counts per GFP count). None estimates it
        from the image's GFAP-negative cells (:func:`estimate_bleed_through`,
        which uses ``k_noise`` too); 0 disables the correction.
    cell_planes : bool
        Given z-stacks, read each cell in its own optical sections (True) or
        in the max projection of the whole stack (False).
    plane_fraction : float
        A cell's own planes are those where its GFP excess over its ring
        reaches this share of its peak (:func:`own_planes`).
    """

    ring_gap_um: float = 1.0
    ring_width_um: float = 3.0
    k_noise: float = 1.0
    min_ratio: float = 1.05
    bleed_coefficient: float | None = None
    cell_planes: bool = True
    plane_fraction: float = 0.7

    def __post_init__(self) -> None:
        if not self.ring_width_um > 0:
            raise ConfigError(f"[gfap_positivity] ring_width_um must be positive; got {self.ring_width_um}")
        if self.ring_gap_um < 0:
            raise ConfigError(f"[gfap_positivity] ring_gap_um must be ≥ 0; got {self.ring_gap_um}")
        if not self.k_noise >= 0:
            raise ConfigError(f"[gfap_positivity] k_noise must be ≥ 0; got {self.k_noise}")
        if not 0 < self.plane_fraction <= 1:
            raise ConfigError(f"[gfap_positivity] plane_fraction must be in (0, 1]; got {self.plane_fraction}")
        if self.bleed_coefficient is not None and self.bleed_coefficient < 0:
            raise ConfigError(
                f"[gfap_positivity] bleed_coefficient must be ≥ 0 or unset; got {self.bleed_coefficient}"
            )


# ----------------------------------------------------------------- helpers
def robust_sigma(values: np.ndarray) -> float:
    """Gaussian-equivalent σ from the median absolute deviation.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(5, 2, 100_000)
    >>> round(robust_sigma(x), 1)
    2.0
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return float("nan")
    return float(_MAD * np.median(np.abs(v - np.median(v))))


def pixel_noise(img) -> float:
    """Pixel-to-pixel noise σ from horizontal neighbour differences (MAD / √2).

    Smooth background and objects larger than a pixel cancel in the
    differences, so this is the detector noise, not the tissue's variation.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ramp = np.add.outer(np.arange(300.0), np.arange(300.0))
    >>> round(pixel_noise(ramp + rng.normal(0, 3, ramp.shape)), 1)
    3.0
    """
    a = np.asarray(img, dtype=np.float32)
    if a.shape[-1] < 2:
        return float("nan")
    step = max(1, a.shape[-2] // 512) if a.ndim >= 2 else 1
    d = np.diff(a[..., ::step, :], axis=-1)
    return float(robust_sigma(d) / np.sqrt(2.0))


def _upsample_linear(a: np.ndarray, factors, shape, origin) -> np.ndarray:
    """Linear interpolation of a block-pooled grid back to ``shape`` (block centres aligned).

    Blocks are anchored at multiples of ``factors`` in the coordinates of a
    larger image whose pixel ``origin`` is this array's first pixel (see
    :func:`_background`); positions and weights are computed in those
    coordinates, so a window gets the very weights of the larger image.
    Each axis is one product with an (n, m) interpolation matrix.
    """
    for axis, (k, n, o) in enumerate(zip(factors, shape, origin, strict=True)):
        if k == 1:
            continue
        m = a.shape[axis]
        first = int(o) // int(k)  # the larger image's block that is a[0]
        pos = (np.arange(n) + int(o) + 0.5) / k - 0.5
        i0 = np.clip(np.floor(pos).astype(np.intp) - first, 0, m - 1)
        i1 = np.minimum(i0 + 1, m - 1)
        w = np.clip(pos - (i0 + first), 0.0, 1.0)
        interp = np.zeros((n, m), a.dtype)
        np.add.at(interp, (np.arange(n), i0), 1 - w)
        np.add.at(interp, (np.arange(n), i1), w)
        if axis == a.ndim - 1:
            a = a @ interp.T
        else:
            a = np.moveaxis(interp @ np.moveaxis(a, axis, -2), -2, axis)
    return np.ascontiguousarray(a)


def _window_px(background_size_um: float, spacing) -> np.ndarray:
    """Side (pixels per axis, odd) of the background opening's window of ``background_size_um``."""
    return np.maximum(1, np.round(background_size_um / np.asarray(spacing, dtype=float)).astype(int) | 1)


def _block_px(window_px) -> np.ndarray:
    """Side (pixels per axis) of the min-pooled blocks of the background opening: window // 10."""
    return np.maximum(1, np.asarray(window_px) // 10)


def _background(f: np.ndarray, size: np.ndarray, origin) -> np.ndarray:
    """Grey opening with a box of ``size`` px followed by a box filter of the same size.

    The background varies on the scale of the window, so the opening runs on
    a grid min-pooled by about a tenth of the window (:func:`_block_px`; the
    minimum of minima is the same erosion) and is interpolated back: the
    full-resolution result at a fraction of the cost. The blocks start at
    multiples of the block size counted from ``origin`` pixels before ``f``
    (one entry per axis): a window of a larger image, given its offset, pools
    the larger image's blocks; blocks cut by the edges are completed with
    edge values.
    """
    fac = _block_px(size)
    if np.all(fac == 1):
        bg = ndi.grey_opening(f, size=tuple(size), mode="reflect")
        return ndi.uniform_filter(bg, size=tuple(size), mode="reflect")
    lead = [int(o) % int(k) for o, k in zip(origin, fac, strict=True)]
    pad = [(s, int(-(n + s) % k)) for n, k, s in zip(f.shape, fac, lead, strict=True)]
    g = np.pad(f, pad, mode="edge")
    blocks = []
    for n, k in zip(g.shape, fac, strict=True):
        blocks += [n // int(k), int(k)]
    coarse = g.reshape(blocks).min(axis=tuple(range(1, 2 * f.ndim, 2)))
    csize = np.maximum(1, np.round(size / fac).astype(int) | 1)
    csize = np.minimum(csize, np.asarray(coarse.shape) * 2 - 1)
    bg = ndi.grey_opening(coarse, size=tuple(csize), mode="reflect")
    bg = ndi.uniform_filter(bg, size=tuple(csize), mode="reflect")
    return _upsample_linear(bg, fac, f.shape, origin)


def background_reach_um(background_size_um: float) -> float:
    """How far (µm) the background of :func:`background_residual` looks from a pixel.

    An opening and a box filter of about 1.1 x the window on a grid of
    tenth-window blocks, plus one block of interpolation: at most 1.6 x the
    window. A tile needs this much margin for its background to equal the
    whole image's.

    Examples
    --------
    >>> background_reach_um(40.0)
    64.0
    """
    return 1.6 * float(background_size_um)


def background_block_px(background_size_um: float, pixel_size_um: float) -> int:
    """Block size (pixels) of the min-pooled grid the background opening runs on.

    :func:`background_residual` pools blocks anchored at the image origin
    (or at the larger image's, given ``origin_px``); windows of a larger
    image whose origins are multiples of this size see the same blocks,
    hence the same background, as the whole image even without
    ``origin_px``. (An image less than half the window wide uses a smaller
    window, hence smaller blocks, along that axis.)

    Examples
    --------
    >>> background_block_px(40.0, 0.5)
    8
    """
    if background_size_um <= 0:
        return 1
    return int(_block_px(_window_px(background_size_um, (check.pixel_size(pixel_size_um),)))[0])


def background_residual(
    img: np.ndarray, *, spacing, smooth_sigma_um: float, background_size_um: float,
    origin_px: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Smoothed image minus its large-scale background, float32.

    Parameters
    ----------
    img : ndarray, shape (Y, X) or (Z, Y, X)
    spacing : sequence of float
        Pixel size per axis in µm.
    smooth_sigma_um : float
        Gaussian σ applied first (0 = none).
    background_size_um : float
        Window side of the grey opening that estimates the background (0 = no
        background removal, the residual is the smoothed image minus its median).
    origin_px : (int, int)
        Pixel (y, x) of a larger image that is ``img``'s first pixel, when
        ``img`` is a window of it: the opening's min-pooled blocks
        (:func:`background_block_px`) are then the larger image's, so that
        farther than :func:`background_reach_um` (plus the smoothing) from
        the window's edges the residual equals the larger image's.
        ``(0, 0)`` for a whole image.

    Returns
    -------
    ndarray of float32, same shape

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> img = (xx * 2.0 + 100 * (np.hypot(yy - 32, xx - 32) < 5)).astype(np.uint16)
    >>> r = background_residual(img, spacing=(1, 1), smooth_sigma_um=0, background_size_um=20)
    >>> bool(r[32, 32] > 90 and abs(r[5, 5]) < 5)
    True
    """
    origin = check_origin(origin_px, "origin_px", ValueError)
    f = np.asarray(img, dtype=np.float32)
    spacing = np.asarray(spacing, dtype=float)
    if smooth_sigma_um > 0:
        f = ndi.gaussian_filter(f, sigma=smooth_sigma_um / spacing, mode="reflect")
    if background_size_um <= 0:
        return f - np.float32(np.median(f))
    size = np.minimum(_window_px(background_size_um, spacing), np.asarray(f.shape) * 2 - 1)
    return f - _background(f, size, (0,) * (f.ndim - 2) + origin)


def threshold_sample_stride(n_pixels: int) -> int:
    """Step of the regular subsample that the detection statistics use.

    Images of more than a million pixels are sampled every ``n // 500 000``-th
    pixel of the flattened residual (a sample is plenty for a median, a MAD
    and a histogram threshold); smaller ones are used whole.

    Examples
    --------
    >>> threshold_sample_stride(512 * 512), threshold_sample_stride(2048 * 2048)
    (1, 8)
    """
    n = int(n_pixels)
    return n // 500_000 if n > 1_000_000 else 1


def detection_threshold(sample, *, method: str = "li", noise_k: float = 4.0) -> tuple[float, float, float]:
    """Detection threshold of step 2 from residual values: (threshold, median, σ).

    ``max(method(sample), median + noise_k · σ)``, σ the MAD-based noise.
    :func:`segment_gfp_cells` applies it to ``resid.ravel()[::stride]``
    (:func:`threshold_sample_stride`); tiled analysis gathers exactly those
    pixels from its tiles to obtain the whole image's threshold.

    Parameters
    ----------
    sample : ndarray
        Residual values (any shape; flattened, order irrelevant).
    method : str
        "li", "otsu", "triangle" or "noise".
    noise_k : float

    Returns
    -------
    (float, float, float)

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(0, 1, 10_000)
    >>> round(detection_threshold(x, method="noise", noise_k=4)[0], 1)
    4.0
    """
    sample = np.asarray(sample).ravel()
    med = float(np.median(sample))
    sigma = robust_sigma(sample)
    floor = med + noise_k * sigma
    if method == "noise" or np.ptp(sample) == 0:
        return floor, med, sigma
    fn = {"otsu": filters.threshold_otsu, "triangle": filters.threshold_triangle, "li": filters.threshold_li}[
        method
    ]
    return max(float(fn(sample)), floor), med, sigma


def _threshold(resid: np.ndarray, params: GfpCellParams) -> tuple[float, float]:
    """(threshold, background median) of a residual image, or the fixed ones of ``params``."""
    thr, med = params.fixed_threshold, params.fixed_median
    if thr is None or med is None:
        sample = resid.ravel()[:: threshold_sample_stride(resid.size)]
        t, m, _ = detection_threshold(sample, method=params.threshold_method, noise_k=params.noise_k)
        thr = t if thr is None else thr
        med = m if med is None else med
    return float(thr), float(med)


def _rings(labels: np.ndarray, ids: np.ndarray, *, gap_px: float, width_px: float):
    """Background-ring pixels of each object: (flat indices, owner index into ``ids``).

    The ring of object *k* is every unlabelled pixel farther than ``gap_px``
    and at most ``gap_px + width_px`` from *k*, and farther than ``gap_px``
    from every other object. Neighbours may share ring pixels. Owners come
    out sorted.
    """
    reach = gap_px + width_px
    margin = np.full(labels.ndim, int(np.ceil(reach + gap_px)) + 1)
    objs = ndi.find_objects(labels)
    flat_parts, own_parts = [], []
    for i, k in enumerate(ids):
        sl = objs[int(k) - 1]
        if sl is None:
            continue
        box = grow_box(sl, margin, labels.shape)
        sub = labels[box]
        d_own = ndi.distance_transform_edt(sub != k)
        ring = (sub == 0) & (d_own > gap_px) & (d_own <= reach)
        others = (sub != 0) & (sub != k)
        if gap_px > 0 and others.any():
            ring &= ndi.distance_transform_edt(~others) > gap_px
        coords = np.nonzero(ring)
        flat = np.ravel_multi_index(
            tuple(c + s.start for c, s in zip(coords, box, strict=True)), labels.shape
        )
        flat_parts.append(flat)
        own_parts.append(np.full(flat.size, i, np.intp))
    if not flat_parts:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    return np.concatenate(flat_parts), np.concatenate(own_parts)


def _group_median(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per owner 0..n-1 (NaN for an empty group).

    One sort of ``owner + scaled value`` orders the values inside each group.
    """
    out = np.full(n, np.nan)
    if values.size == 0:
        return out
    v = np.asarray(values, dtype=np.float64)
    lo = float(v.min())
    span = float(v.max()) - lo
    scale = 0.5 / span if span > 0 else 0.0
    counts = np.bincount(owner, minlength=n)
    group = np.repeat(np.arange(n), counts)
    v = (np.sort(owner + (v - lo) * scale) - group) / scale + lo if scale else np.full(v.size, lo)
    starts = np.cumsum(counts) - counts
    ok = counts > 0
    out[ok] = 0.5 * (v[(starts + (counts - 1) // 2)[ok]] + v[(starts + counts // 2)[ok]])
    return out


def _label_ids(labels: np.ndarray) -> np.ndarray:
    """Sorted labels > 0 present in ``labels``."""
    if labels.size == 0:
        return np.zeros(0, np.intp)
    return np.flatnonzero(np.bincount(labels.ravel())[1:]) + 1


def _members(labels: np.ndarray, ids: np.ndarray):
    """Pixels of every object: (flat indices, owner index into ``ids``)."""
    flat = np.flatnonzero(labels)
    lut = np.full(int(ids.max()) + 1 if ids.size else 1, -1, np.intp)
    lut[ids] = np.arange(ids.size)
    own = lut[labels.ravel()[flat]]
    ok = own >= 0
    return flat[ok], own[ok]


def _sample_median(img: np.ndarray) -> float:
    """Median of a regular subsample (≤ ~500 k pixels) of an image."""
    v = np.asarray(img).ravel()
    return float(np.median(v[:: max(1, v.size // 500_000)]))


def _group_stats(img: np.ndarray, members, rings, n: int, *, inside_median: bool = False) -> tuple:
    """Per object: (mean or median inside, ring median, ring robust σ, ring pixel count)."""
    flat = np.asarray(img).ravel()
    return _stats_of(flat[members[0]], flat[rings[0]], members[1], rings[1], n,
                     inside_median=inside_median)


def _stats_of(v_in: np.ndarray, v_ring: np.ndarray, own_in: np.ndarray, own_ring: np.ndarray,
              n: int, *, inside_median: bool = False) -> tuple:
    """:func:`_group_stats` from the values of the object and ring pixels."""
    if inside_median:
        inside = _group_median(v_in, own_in, n)
    else:
        counts = np.bincount(own_in, minlength=n)
        inside = np.bincount(own_in, weights=v_in, minlength=n) / np.maximum(counts, 1)
    vals = np.asarray(v_ring, dtype=np.float64)
    med = _group_median(vals, own_ring, n)
    mad = _group_median(np.abs(vals - med[own_ring]), own_ring, n) if vals.size else np.full(n, np.nan)
    return inside, med, _MAD * mad, np.bincount(own_ring, minlength=n)


@dataclass(frozen=True)
class _Sampled:
    """One channel read at the objects: their pixels, their rings, and the plane they lie in.

    ``inside`` and ``ring`` are float32 values in the order of the
    ``members`` / ``rings`` index arrays; ``plane`` is the (Y, X) image the
    image-wide fallbacks (median, pixel noise) are taken from.
    """

    inside: np.ndarray
    ring: np.ndarray
    plane: np.ndarray

    def minus(self, other: _Sampled, coef: float) -> _Sampled:
        """``self - coef · other``, value by value (the bleed-through correction)."""
        c = np.float32(coef)
        return _Sampled(self.inside - c * other.inside, self.ring - c * other.ring,
                        self.plane - c * other.plane)


def _sample(img, members, rings, planes: np.ndarray | None = None) -> _Sampled:
    """Read a (Y, X) plane at the objects, or a (Z, Y, X) stack through each object's planes.

    For a stack, every pixel of object *k* (and of its ring) takes the
    maximum over the planes ``planes[k]`` only: the max projection of the
    object's own optical sections.
    """
    a = np.asarray(img)
    if a.ndim == 2:
        flat = a.ravel()
        return _Sampled(flat[members[0]].astype(np.float32), flat[rings[0]].astype(np.float32),
                        a.astype(np.float32))
    flat = a.reshape(a.shape[0], -1)
    vals = []
    for idx, own in (members, rings):
        v = flat[:, idx].astype(np.float32)  # (Z, pixels)
        vals.append(np.where(planes[own].T, v, -np.inf).max(axis=0) if idx.size else v[0])
    return _Sampled(vals[0], vals[1], a.max(axis=0).astype(np.float32))


def own_planes(gfp, *, labels, pixel_size_um: float, fraction: float = 0.7,
               ring_gap_um: float = 1.0, ring_width_um: float = 3.0) -> np.ndarray:
    """The optical sections each GFP+ cell lies in.

    For every cell and plane the GFP excess is the mean inside the cell's
    outline minus the median of its background ring (as in
    :func:`gfap_positivity`). A cell's planes are those whose excess is at
    least ``fraction`` of its largest excess; a cell with no positive excess
    keeps every plane.

    Parameters
    ----------
    gfp : ndarray, shape (Z, Y, X)
    labels : ndarray of int, shape (Y, X)
        GFP+ cells, outlined on a projection of ``gfp``.
    pixel_size_um : float
    fraction : float
        Share of the peak excess a plane must reach, in (0, 1].
    ring_gap_um, ring_width_um : float
        Geometry of the background ring.

    Returns
    -------
    ndarray of bool, shape (n_cells, Z)
        Row *i* belongs to the *i*-th label in increasing order.

    Examples
    --------
    >>> lab = np.zeros((30, 30), np.int32); lab[10:20, 10:20] = 1
    >>> g = np.zeros((4, 30, 30)); g[1:3, 10:20, 10:20] = 100
    >>> own_planes(g, labels=lab, pixel_size_um=1.0).astype(int).tolist()
    [[0, 1, 1, 0]]
    """
    a = np.asarray(gfp)
    labels = np.asarray(labels)
    if a.ndim != 3 or a.shape[1:] != labels.shape:
        raise ValueError(f"gfp must be (Z, Y, X) over labels {labels.shape}; got {a.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    px = check.pixel_size(pixel_size_um)
    ids = _label_ids(labels)
    members, rings = _members(labels, ids), _rings(
        labels, ids, gap_px=ring_gap_um / px, width_px=ring_width_um / px)
    return _own_planes(a, members, rings, ids.size, fraction)


def _own_planes(a: np.ndarray, members, rings, n: int, fraction: float) -> np.ndarray:
    """:func:`own_planes` from precomputed object pixels and rings."""
    excess = np.empty((n, a.shape[0]))
    for z, p in enumerate(a):
        inside, bg, _, n_ring = _group_stats(p, members, rings, n)
        excess[:, z] = inside - np.where(n_ring > 0, bg, _sample_median(p))
    peak = excess.max(axis=1, initial=-np.inf)
    return np.where((peak > 0)[:, None], excess >= fraction * peak[:, None], True)


def _local_contrast(s: _Sampled, members, rings, n: int, *, inside_median: bool = False) -> tuple:
    """Per object: (inside, background, noise σ) and the image's pixel noise.

    As :func:`_group_stats`; an empty ring's background is the image's median,
    and the noise is the ring's robust σ (the image's pixel noise when the ring
    has fewer than 5 pixels), never below the image's pixel noise.
    """
    inside, bg, sigma, n_ring = _stats_of(s.inside, s.ring, members[1], rings[1], n,
                                          inside_median=inside_median)
    if np.any(n_ring == 0):
        bg = np.where(n_ring > 0, bg, _sample_median(s.plane))
    glob = max(pixel_noise(s.plane), 1e-12)
    return inside, bg, np.maximum(np.where(n_ring >= 5, sigma, glob), glob), glob


def _granules(labels: np.ndarray, reference: np.ndarray, *, px: float, params: GfpCellParams) -> np.ndarray:
    """Labels of objects bright against their surroundings in every reference channel.

    "Bright" means the mean inside exceeds the median of the object's
    background ring by ``granule_k`` × that channel's background σ (the
    median over objects of the ring's robust σ).
    """
    ids = _label_ids(labels)
    if ids.size == 0:
        return ids
    rings = _rings(labels, ids, gap_px=1.0 / px, width_px=params.granule_ring_um / px)
    members = _members(labels, ids)
    bright_all = np.ones(ids.size, bool)
    for ch in reference:
        inside, around, spread, n_ring = _group_stats(ch, members, rings, ids.size)
        if np.any(n_ring == 0):
            around = np.where(n_ring > 0, around, _sample_median(ch))
        spread = spread[n_ring >= 5]
        sigma = float(np.median(spread)) if spread.size else pixel_noise(ch)
        bright_all &= (inside - around) > params.granule_k * max(sigma, 1e-12)
        if not bright_all.any():
            break
    return ids[bright_all]


# ----------------------------------------------------------- segmentation
def _split_and_outline(resid: np.ndarray, mask: np.ndarray, *, spacing, params: GfpCellParams,
                       min_px: float, fallback: float) -> np.ndarray:
    """Steps 3-4 (:func:`~spinalquant.segment._cells.split_and_outline`) with the options of ``params``."""
    return split_and_outline(
        resid, mask, spacing=spacing,
        min_separation_um=params.min_separation_um or 0.35 * params.cell_diameter_um,
        split=params.split, edge_fraction=params.edge_fraction, ring_um=(1.0, params.granule_ring_um),
        max_grow_um=params.max_grow_um, trim_um=params.trim_um, min_px=min_px, fallback=fallback,
    )


def _check_reference(reference, shape: tuple[int, ...]) -> np.ndarray | None:
    if reference is None:
        return None
    reference = np.asarray(reference)
    if reference.ndim == len(shape):
        reference = reference[None]
    if reference.ndim != len(shape) + 1 or reference.shape[1:] != shape:
        axes = "(N, Y, X)" if len(shape) == 2 else "(N, Z, Y, X)"
        raise ValueError(f"reference must be {axes} matching {shape}; got shape {reference.shape}")
    return reference


def segment_gfp_cells(
    gfp,
    *,
    pixel_size_um: float,
    params: GfpCellParams = GfpCellParams(),
    reference=None,
) -> np.ndarray:
    """Label GFP+ cell bodies in one plane.

    See the module docstring for the method (background removal, MAD noise
    floor + Li threshold, distance-transform watershed, per-cell outline at
    half its own brightness, size filter, granule rejection).

    Parameters
    ----------
    gfp : ndarray, shape (Y, X)
        GFP channel (a max projection of a z-stack, done by the caller).
    pixel_size_um : float
        Lateral pixel size.
    params : GfpCellParams
    reference : ndarray, shape (N, Y, X), optional
        The other channels of the same plane (DAPI, GFAP, ChAT, ...), used to
        reject autofluorescent granules that are bright in all of them.

    Returns
    -------
    ndarray of int32, shape (Y, X)
        0 = background, 1..n = cells.

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :100]
    >>> img = 10 + 200 * ((yy - 30) ** 2 + (xx - 30) ** 2 < 36) + 200 * ((yy - 70) ** 2 + (xx - 60) ** 2 < 49)
    >>> lab = segment_gfp_cells(img.astype(np.uint16), pixel_size_um=1.0)
    >>> int(lab.max()), abs(int((lab == 1).sum()) - 113) <= 6  # the first disc has 113 pixels
    (2, True)
    """
    img = check.plane(gfp, "gfp", hint=_PLANE_HINT)
    px = check.pixel_size(pixel_size_um)
    reference = _check_reference(reference, img.shape)
    resid = background_residual(
        img, spacing=(px, px), smooth_sigma_um=params.smooth_sigma_um,
        background_size_um=params.background_size_um, origin_px=params.origin_px,
    )
    thr, med = _threshold(resid, params)
    px2 = px * px
    lab = _split_and_outline(resid, resid > thr, spacing=(px, px), params=params,
                             min_px=params.min_area_um2 / px2, fallback=med)
    lab = filter_and_relabel(lab, min_px=params.min_area_um2 / px2, max_px=params.max_area_um2 / px2)
    if reference is not None and reference.shape[0] > 0 and lab.max() > 0:
        drop = _granules(lab, reference, px=px, params=params)
        if drop.size:
            lab = filter_and_relabel(lab, min_px=0, max_px=0, drop=drop)
    return lab


def segment_gfp_cells_3d(
    gfp_zyx,
    *,
    spacing_zyx,
    params: GfpCellParams = GfpCellParams(),
    reference=None,
) -> np.ndarray:
    """Label GFP+ cells in 3-D so that a cell spanning several planes counts once.

    Same method as :func:`segment_gfp_cells` with every scale converted per
    axis with ``spacing_zyx``; the size filter applies to each cell's
    footprint (its max projection), so it keeps the 2-D meaning of
    ``min_area_um2``.

    Parameters
    ----------
    gfp_zyx : ndarray, shape (Z, Y, X)
    spacing_zyx : tuple of 3 float
        Voxel size (z, y, x) in µm.
    params : GfpCellParams
    reference : ndarray, shape (N, Z, Y, X), optional
        Other channels for granule rejection (tested on max projections).

    Returns
    -------
    ndarray of int32, shape (Z, Y, X)

    Examples
    --------
    >>> zz, yy, xx = np.mgrid[:8, :60, :60]
    >>> ball = ((zz - 4) * 2) ** 2 + (yy - 30) ** 2 + (xx - 30) ** 2 < 49
    >>> lab = segment_gfp_cells_3d((10 + 200 * ball).astype(np.uint8), spacing_zyx=(2.0, 1.0, 1.0))
    >>> int(lab.max())
    1
    """
    img = np.asarray(gfp_zyx)
    if img.ndim != 3:
        raise ValueError(f"gfp_zyx must be (Z, Y, X); got shape {img.shape}")
    spacing = tuple(float(s) for s in spacing_zyx)
    if len(spacing) != 3 or not all(s > 0 for s in spacing):
        raise ValueError(f"spacing_zyx must be three positive µm values; got {spacing_zyx!r}")
    ref = _check_reference(reference, img.shape)
    if ref is not None and ref.ndim != 4:
        raise ValueError(f"reference must be (N, Z, Y, X) matching {img.shape}; got {ref.shape}")
    resid = background_residual(
        img, spacing=spacing, smooth_sigma_um=params.smooth_sigma_um,
        background_size_um=params.background_size_um, origin_px=params.origin_px,
    )
    thr, med = _threshold(resid, params)
    lab = _split_and_outline(resid, resid > thr, spacing=spacing, params=params, min_px=4, fallback=med)
    # size filter on footprints (projected areas)
    ids = _label_ids(lab)
    if ids.size == 0:
        return lab.astype(np.int32)
    px2 = spacing[1] * spacing[2]
    objs = ndi.find_objects(lab)
    drop = []
    for i in ids:
        sl = objs[i - 1]
        foot = np.count_nonzero((lab[sl] == i).any(axis=0)) * px2
        if foot < params.min_area_um2 or (params.max_area_um2 > 0 and foot > params.max_area_um2):
            drop.append(i)
    if ref is not None:
        proj = lab.max(axis=0)
        if proj.max() > 0:
            drop.extend(_granules(proj, ref.max(axis=1), px=spacing[1], params=params).tolist())
    return filter_and_relabel(lab, min_px=0, max_px=0, drop=drop)


# ---------------------------------------------------------------- GFAP call
def _channels(gfap, gfp, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``gfap`` and ``gfp`` as arrays: both (Y, X) planes, or both (Z, Y, X) stacks, over ``labels``."""
    f = np.asarray(gfap)
    if f.ndim == 3 and gfp is None:
        raise ValueError("a GFAP z-stack needs the GFP z-stack (gfp=...) to find each cell's planes")
    if f.ndim == 3:
        g = np.asarray(gfp)
        if g.shape != f.shape:
            raise ValueError(f"gfp {g.shape} and gfap {f.shape} differ in shape")
        if f.shape[1:] != labels.shape:
            raise ValueError(f"gfp_labels {labels.shape} do not match the (Z, Y, X) stacks {f.shape}")
        for name, a in (("gfap", f), ("gfp", g)):
            if a.dtype.kind not in "biuf":
                raise ValueError(f"{name} must be a real numeric stack; got dtype {a.dtype}")
        return f, g
    f = check.plane(f, "gfap", hint=_PLANE_HINT)
    if labels.shape != f.shape:
        raise ValueError(f"gfp_labels {labels.shape} and gfap {f.shape} differ in shape")
    if gfp is None:
        return f, None
    g = check.plane(gfp, "gfp", hint=_PLANE_HINT)
    if g.shape != f.shape:
        raise ValueError(f"gfp {g.shape} and gfap {f.shape} differ in shape")
    return f, g


def estimate_bleed_through(
    gfp,
    gfap,
    *,
    labels,
    pixel_size_um: float,
    k_noise: float = 1.0,
    ring_gap_um: float = 1.0,
    ring_width_um: float = 3.0,
    max_coefficient: float = 0.5,
    plane_fraction: float = 0.7,
) -> float:
    """GFP→GFAP bleed-through coefficient from the GFP+ cells that lack GFAP.

    For every GFP+ cell the excess over its local background ring is measured
    in both channels (``ΔGFP``, ``ΔGFAP``: median inside − ring median; the
    medians ignore a host astrocyte process crossing the cell or its ring).
    A GFAP-negative cell shows only bleed-through, ``ΔGFAP = coef · ΔGFP``;
    a GFAP-positive cell lies above that line, so the negatives are the
    cells with the lowest ratios ``ΔGFAP / ΔGFP``:

    1. Cells are used when their GFP excess is clearly measurable (> 5
       standard errors given the GFP pixel noise) and their GFAP excess is
       not below −1 GFAP noise σ (a ring brighter than the cell caught
       other GFAP).
    2. The negatives are the cells within ``k_noise`` GFAP noise σ of the
       lowest ratio: ``(ratio - lowest) · ΔGFP / σ < k_noise``, with σ the
       per-pixel noise of the cell's ring (as in :func:`gfap_positivity`,
       so these are the cells that would be called negative at the lowest
       ratio).
    3. The coefficient is their median ratio, clipped to
       ``[0, max_coefficient]``.

    This needs no assumption about the fraction of GFAP-negative cells: one
    is enough. When every GFP+ cell is GFAP+, the weakest of them are taken
    for negatives; measure the coefficient on a GFP-only control section
    then and set it explicitly.

    Parameters
    ----------
    gfp, gfap : ndarray, shape (Y, X) or (Z, Y, X)
        Planes, or z-stacks: each cell is then read in its own planes
        (:func:`own_planes`), as :func:`gfap_positivity` does.
    labels : ndarray of int, shape (Y, X)
        GFP+ cells.
    pixel_size_um : float
    k_noise : float
        Width of the negatives' group, in GFAP noise σ (the GFAP call's
        threshold, :class:`GfapPositivityParams`).
    ring_gap_um, ring_width_um : float
        Geometry of the background ring.
    max_coefficient : float
        Upper bound of a plausible bleed-through.
    plane_fraction : float
        For z-stacks: the share of its peak GFP excess a plane must reach to
        be one of the cell's planes.

    Returns
    -------
    float
        Coefficient ≥ 0 (0 when fewer than 3 cells can be measured).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> lab = np.zeros((60, 200), np.int32)
    >>> for k in range(10): lab[20:30, 5 + 20 * k:15 + 20 * k] = k + 1
    >>> g = 100 + rng.normal(0, 3, lab.shape) + 500 * (lab > 0) * (1 + (lab % 3))
    >>> f = 80 + rng.normal(0, 3, lab.shape) + 0.1 * g + 300 * (lab > 1)
    >>> round(estimate_bleed_through(g, f, labels=lab, pixel_size_um=1.0), 2)
    0.1
    """
    labels = np.asarray(labels)
    f, g = _channels(gfap, gfp, labels)
    px = check.pixel_size(pixel_size_um)
    ids = _label_ids(labels)
    if ids.size < 3:
        return 0.0
    rings = _rings(labels, ids, gap_px=ring_gap_um / px, width_px=ring_width_um / px)
    members = _members(labels, ids)
    planes = _own_planes(g, members, rings, ids.size, plane_fraction) if g.ndim == 3 else None
    return _bleed(_sample(g, members, rings, planes), _sample(f, members, rings, planes),
                  members, rings, k_noise=k_noise, max_coefficient=max_coefficient)


def _bleed(g: _Sampled, f: _Sampled, members, rings, *, k_noise: float,
           max_coefficient: float) -> float:
    """The estimate of :func:`estimate_bleed_through` from the channels read at the cells."""
    n = int(members[1].max()) + 1 if members[1].size else 0
    g_in, g_bg, _, g_noise = _local_contrast(g, members, rings, n, inside_median=True)
    f_in, f_bg, sigma, _ = _local_contrast(f, members, rings, n, inside_median=True)
    dg, df = g_in - g_bg, f_in - f_bg
    n_in = np.bincount(members[1], minlength=n)
    ok = (dg > 5 * g_noise / np.sqrt(np.maximum(n_in, 1))) & (df > -sigma)
    if np.count_nonzero(ok) < 3:
        return 0.0
    ratio = df[ok] / dg[ok]
    scale = dg[ok] / sigma[ok]  # GFAP noise σ per unit of ratio
    negative = (ratio - ratio.min()) * scale < k_noise
    return float(np.clip(np.median(ratio[negative]), 0.0, max_coefficient))


def gfap_positivity(
    gfp_labels,
    gfap,
    *,
    gfp=None,
    pixel_size_um: float,
    params: GfapPositivityParams = GfapPositivityParams(),
) -> pd.DataFrame:
    """Call each GFP+ cell GFAP-positive or not.

    Rule (defaults in :class:`GfapPositivityParams`):

    0. Planes: with (Z, Y, X) stacks each cell is read in its own optical
       sections, the planes where its GFP excess over its ring reaches
       ``plane_fraction`` of its peak (:func:`own_planes`): every pixel of
       the cell and of its ring is the maximum over those planes. A host
       astrocyte process above or below the cell then neither brightens it
       nor its ring, as it does in a max projection of the whole stack.
       With (Y, X) planes, or ``cell_planes=False``, the (projected)
       images are used as given.
    1. Bleed-through correction: ``GFAP' = GFAP - coef · GFP``, with ``coef``
       from ``params.bleed_coefficient`` or, when unset and ``gfp`` is given,
       :func:`estimate_bleed_through` from the cells themselves.
    2. ``gfap_inside`` = mean of GFAP' over the cell body;
       ``gfap_background`` = median of GFAP' over a ring ``ring_gap_um`` to
       ``ring_gap_um + ring_width_um`` outside the cell, excluding every
       labelled cell (the whole image's median when the ring is empty);
       ``gfap_noise`` = per-pixel σ (MAD) in that ring, floored at the
       image's pixel-to-pixel noise (:func:`pixel_noise`), so a flat or
       saturated ring cannot make the noise vanish.
    3. ``gfap_zscore = (inside - background) / noise`` and
       ``gfap_ratio = inside / background`` (inf when background ≤ 0 < inside).
    4. ``gfap_positive`` when ``gfap_zscore > k_noise`` **and**
       ``gfap_ratio > min_ratio``.

    Parameters
    ----------
    gfp_labels : ndarray of int, shape (Y, X)
        GFP+ cells (from :func:`segment_gfp_cells`).
    gfap : ndarray, shape (Y, X) or (Z, Y, X)
        GFAP channel of the same plane, or its z-stack.
    gfp : ndarray, shape (Y, X) or (Z, Y, X), optional
        GFP channel, needed for the bleed-through correction and with stacks.
    pixel_size_um : float
    params : GfapPositivityParams

    Returns
    -------
    DataFrame
        One row per label: ``label``, ``gfap_inside``, ``gfap_background``,
        ``gfap_noise``, ``gfap_zscore``, ``gfap_ratio``, ``gfap_positive``,
        ``bleed_coefficient`` (the same value on every row).

    Examples
    --------
    >>> lab = np.zeros((40, 40), np.int32); lab[5:12, 5:12] = 1; lab[25:32, 25:32] = 2
    >>> gfap = np.full((40, 40), 100.0); gfap[5:12, 5:12] = 300
    >>> gfap += np.random.default_rng(0).normal(0, 5, gfap.shape)
    >>> gfap_positivity(lab, gfap, pixel_size_um=1.0)["gfap_positive"].tolist()
    [True, False]
    """
    labels = np.asarray(gfp_labels)
    f, g = _channels(gfap, gfp, labels)
    if f.ndim == 3 and not params.cell_planes:
        f, g = f.max(axis=0), g.max(axis=0)
    px = check.pixel_size(pixel_size_um)
    cols = ["label", "gfap_inside", "gfap_background", "gfap_noise", "gfap_zscore", "gfap_ratio",
            "gfap_positive", "bleed_coefficient"]
    ids = _label_ids(labels)
    coef = params.bleed_coefficient
    if coef is not None and coef > 0 and g is None:
        raise ValueError("a bleed-through coefficient needs the gfp image (gfp=...)")
    if ids.size == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "label" else ("bool" if c == "gfap_positive" else "float64"))
             for c in cols}
        )
    rings = _rings(labels, ids, gap_px=params.ring_gap_um / px, width_px=params.ring_width_um / px)
    members = _members(labels, ids)
    planes = _own_planes(g, members, rings, ids.size, params.plane_fraction) if f.ndim == 3 else None
    sf = _sample(f, members, rings, planes)
    sg = _sample(g, members, rings, planes) if g is not None else None
    if coef is None:
        coef = 0.0
        if sg is not None and ids.size >= 3:
            coef = _bleed(sg, sf, members, rings, k_noise=params.k_noise, max_coefficient=0.5)
    if coef > 0:
        sf = sf.minus(sg, coef)
    inside, bg, noise, _ = _local_contrast(sf, members, rings, ids.size)
    z = (inside - bg) / noise
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bg > 0, inside / bg, np.where(inside > 0, np.inf, np.nan))
    positive = (z > params.k_noise) & (ratio > params.min_ratio)
    return pd.DataFrame(
        {
            "label": ids.astype("int64"),
            "gfap_inside": inside.astype(float),
            "gfap_background": bg.astype(float),
            "gfap_noise": noise.astype(float),
            "gfap_zscore": z.astype(float),
            "gfap_ratio": ratio.astype(float),
            "gfap_positive": positive.astype(bool),
            "bleed_coefficient": float(coef),
        },
        columns=cols,
    )
