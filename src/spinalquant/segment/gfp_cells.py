"""GFP+ donor cells: segmentation, granule rejection and the GFAP call.

Segmentation (:func:`segment_gfp_cells`), all scales in µm:

1. **Background removal** — the image is lightly smoothed (``smooth_sigma_um``)
   and a background estimated as a grey opening with a square of
   ``background_size_um`` (a few cell diameters: no cell fits inside, so the
   opening follows only the slowly varying tissue background), then box
   filtered to remove its blockiness. The residual is ``smoothed - background``.
2. **Threshold** — the background noise σ is the MAD of the residual
   (1.4826 · median |r − median r|, robust because cells are a minority of
   pixels). The threshold is ``max(method, median + noise_k · σ)`` where
   *method* is Li's minimum cross-entropy (default: it keeps dim cells that
   Otsu cuts when cell brightness varies), Otsu or Triangle of the residual,
   or nothing for
   ``threshold_method="noise"``: the noise floor keeps an image without cells
   from being split into "cells" and noise.
3. **Touching cells** — markers are maxima of the (slightly smoothed)
   Euclidean distance transform at least ``min_separation_um`` apart (default
   0.35 · ``cell_diameter_um``); a watershed on the inverted distance splits
   the mask. ``split="intensity"`` uses maxima of the smoothed intensity
   instead, ``split="none"`` keeps connected components.
4. **Size filter** — objects smaller than ``min_area_um2`` (30 µm², the
   result contract) or larger than ``max_area_um2`` are dropped.
5. **Autofluorescent granules** (lipofuscin) shine in every channel. With a
   ``reference`` stack of the *other* channels, an object is rejected when in
   *every* reference channel its mean background-subtracted signal exceeds the
   median of a ring around it by ``granule_k`` × that channel's pixel noise σ
   (MAD). A true GFP+ cell is bright in GFP but not at once in DAPI, GFAP,
   ChAT and the synaptic marker.

The GFAP call (:func:`gfap_positivity`) is described on that function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import filters
from skimage.feature import peak_local_max
from skimage.morphology import remove_small_objects
from skimage.segmentation import expand_labels, relabel_sequential, watershed

from ..errors import ConfigError

__all__ = [
    "GfapPositivityParams",
    "GfpCellParams",
    "estimate_bleed_through",
    "gfap_positivity",
    "segment_gfp_cells",
    "segment_gfp_cells_3d",
]

_MAD = 1.4826


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
        Width of the ring around an object used as its local background in the
        granule test.
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

    def __post_init__(self) -> None:
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
                    "min_separation_um", "granule_ring_um"):
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
        from the image (:func:`estimate_bleed_through`); 0 disables the correction.
    bleed_quantile : float
        Lower quantile of the per-cell GFAP/GFP excess ratios used by the
        estimate (:func:`estimate_bleed_through`); assumes at least this
        fraction of GFP+ cells is GFAP-negative.
    """

    ring_gap_um: float = 1.0
    ring_width_um: float = 3.0
    k_noise: float = 1.0
    min_ratio: float = 1.05
    bleed_coefficient: float | None = None
    bleed_quantile: float = 0.1

    def __post_init__(self) -> None:
        if not self.ring_width_um > 0:
            raise ConfigError(f"[gfap_positivity] ring_width_um must be positive; got {self.ring_width_um}")
        if self.ring_gap_um < 0:
            raise ConfigError(f"[gfap_positivity] ring_gap_um must be ≥ 0; got {self.ring_gap_um}")
        if not 0 <= self.bleed_quantile < 0.5:
            raise ConfigError(
                f"[gfap_positivity] bleed_quantile must be in [0, 0.5); got {self.bleed_quantile}"
            )
        if self.bleed_coefficient is not None and self.bleed_coefficient < 0:
            raise ConfigError(
                f"[gfap_positivity] bleed_coefficient must be ≥ 0 or unset; got {self.bleed_coefficient}"
            )


# ----------------------------------------------------------------- helpers
def _check_px(pixel_size_um: float) -> float:
    if pixel_size_um is None or not float(pixel_size_um) > 0:
        raise ValueError(f"pixel_size_um must be a positive number of µm; got {pixel_size_um!r}")
    return float(pixel_size_um)


def _check_plane(img, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(
            f"{name} must be a (Y, X) plane; got shape {img.shape} (project a z-stack first, "
            "or use segment_gfp_cells_3d)"
        )
    if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric image; got dtype {img.dtype}")
    return img


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


def background_residual(
    img: np.ndarray, *, spacing, smooth_sigma_um: float, background_size_um: float
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
    f = np.asarray(img, dtype=np.float32)
    spacing = np.asarray(spacing, dtype=float)
    if smooth_sigma_um > 0:
        f = ndi.gaussian_filter(f, sigma=smooth_sigma_um / spacing, mode="reflect")
    if background_size_um <= 0:
        return f - np.float32(np.median(f))
    size = np.maximum(1, np.round(background_size_um / spacing).astype(int) | 1)
    size = np.minimum(size, np.asarray(f.shape) * 2 - 1)
    bg = ndi.grey_opening(f, size=tuple(size), mode="reflect")
    bg = ndi.uniform_filter(bg, size=tuple(size), mode="reflect")
    return f - bg


def _threshold(resid: np.ndarray, method: str, noise_k: float) -> tuple[float, float, float]:
    """(threshold, background median, noise σ) of a residual image."""
    sample = resid.ravel()
    if sample.size > 2_000_000:  # a regular subsample is plenty for the statistics
        sample = sample[:: sample.size // 1_000_000]
    med = float(np.median(sample))
    sigma = robust_sigma(sample)
    floor = med + noise_k * sigma
    if method == "noise" or np.ptp(sample) == 0:
        return floor, med, sigma
    fn = {"otsu": filters.threshold_otsu, "triangle": filters.threshold_triangle, "li": filters.threshold_li}[
        method
    ]
    return max(float(fn(sample)), floor), med, sigma


def _split(mask: np.ndarray, resid: np.ndarray, *, spacing, min_sep_um: float, how: str) -> np.ndarray:
    """Label ``mask``, splitting touching objects with a marker watershed."""
    cc, n = ndi.label(mask)
    if n == 0 or how == "none":
        return cc.astype(np.int32)
    spacing = np.asarray(spacing, dtype=float)
    dist = ndi.distance_transform_edt(mask, sampling=spacing)
    if how == "distance":
        # a little smoothing removes spurious maxima of the EDT on ragged outlines
        surface = ndi.gaussian_filter(dist, sigma=np.maximum(0.5, 0.15 * min_sep_um / spacing))
    else:
        surface = ndi.gaussian_filter(resid, sigma=np.maximum(0.5, 0.25 * min_sep_um / spacing))
    radius = np.maximum(1, np.round(min_sep_um / spacing).astype(int))
    footprint = np.ones(tuple(2 * radius + 1), bool)
    peaks = peak_local_max(surface, footprint=footprint, labels=cc, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    # a component without any peak keeps one marker at its deepest point
    has = np.zeros(n + 1, bool)
    has[cc[tuple(peaks.T)]] = True
    missing = np.flatnonzero(~has[1:]) + 1
    if missing.size:
        pos = ndi.maximum_position(dist, cc, missing)
        for k, p in enumerate(pos, start=len(peaks) + 1):
            markers[p] = k
    lab = watershed(-surface, markers, mask=mask)
    return lab.astype(np.int32)


def _ring_labels(labels: np.ndarray, *, gap_px: float, width_px: float) -> np.ndarray:
    """Label image of background rings around each object, excluding all objects."""
    outer = expand_labels(labels, distance=gap_px + width_px)
    if gap_px > 0:
        inner = expand_labels(labels, distance=gap_px)
    else:
        inner = labels
    ring = np.where(inner > 0, 0, outer)
    return ring


def _granules(labels: np.ndarray, reference: np.ndarray, *, px: float, params: GfpCellParams) -> np.ndarray:
    """Labels of objects bright against their surroundings in every reference channel."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return ids
    ring = _ring_labels(labels, gap_px=1.0 / px, width_px=params.granule_ring_um / px)
    bright_all = np.ones(ids.size, bool)
    for ch in reference:
        resid = background_residual(
            ch, spacing=(px, px), smooth_sigma_um=params.smooth_sigma_um,
            background_size_um=params.background_size_um,
        )
        sigma = robust_sigma(resid.ravel()[:: max(1, resid.size // 1_000_000)])
        inside = ndi.mean(resid, labels, ids)
        around = ndi.median(resid, ring, ids)
        around = np.where(np.isfinite(around), around, np.median(resid))
        bright_all &= (inside - around) > params.granule_k * max(sigma, 1e-12)
    return ids[bright_all]


def _filter_and_relabel(lab: np.ndarray, *, min_px: float, max_px: float, drop=()) -> np.ndarray:
    if lab.max(initial=0) == 0:
        return lab.astype(np.int32)
    areas = np.bincount(lab.ravel())
    keep = areas >= min_px
    if max_px > 0:
        keep &= areas <= max_px
    keep[0] = False
    if len(drop):
        keep[np.asarray(drop, dtype=np.intp)] = False
    out = np.where(keep[lab], lab, 0)
    return relabel_sequential(out)[0].astype(np.int32)


# ----------------------------------------------------------- segmentation
def segment_gfp_cells(
    gfp,
    *,
    pixel_size_um: float,
    params: GfpCellParams = GfpCellParams(),
    reference=None,
) -> np.ndarray:
    """Label GFP+ cell bodies in one plane.

    See the module docstring for the method (background removal, MAD noise
    floor + Li threshold, distance-transform watershed, size filter,
    granule rejection).

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
    >>> int(lab.max())
    2
    """
    img = _check_plane(gfp, "gfp")
    px = _check_px(pixel_size_um)
    if reference is not None:
        reference = np.asarray(reference)
        if reference.ndim == 2:
            reference = reference[None]
        if reference.ndim != 3 or reference.shape[1:] != img.shape:
            raise ValueError(
                f"reference must be (N, Y, X) with (Y, X) = {img.shape}; got shape {reference.shape}"
            )
    resid = background_residual(
        img, spacing=(px, px), smooth_sigma_um=params.smooth_sigma_um,
        background_size_um=params.background_size_um,
    )
    thr, _, _ = _threshold(resid, params.threshold_method, params.noise_k)
    mask = resid > thr
    mask = ndi.binary_fill_holes(ndi.binary_opening(mask, iterations=1))
    min_sep = params.min_separation_um or 0.35 * params.cell_diameter_um
    lab = _split(mask, resid, spacing=(px, px), min_sep_um=min_sep, how=params.split)
    px2 = px * px
    lab = _filter_and_relabel(lab, min_px=params.min_area_um2 / px2, max_px=params.max_area_um2 / px2)
    if reference is not None and reference.shape[0] > 0 and lab.max() > 0:
        drop = _granules(lab, reference, px=px, params=params)
        if drop.size:
            lab = _filter_and_relabel(lab, min_px=0, max_px=0, drop=drop)
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
    resid = background_residual(
        img, spacing=spacing, smooth_sigma_um=params.smooth_sigma_um,
        background_size_um=params.background_size_um,
    )
    thr, _, _ = _threshold(resid, params.threshold_method, params.noise_k)
    mask = resid > thr
    mask = remove_small_objects(mask, max_size=3) if mask.any() else mask
    min_sep = params.min_separation_um or 0.35 * params.cell_diameter_um
    lab = _split(mask, resid, spacing=spacing, min_sep_um=min_sep, how=params.split)
    # size filter on footprints (projected areas)
    ids = np.unique(lab)
    ids = ids[ids > 0]
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
    if reference is not None:
        ref = np.asarray(reference)
        if ref.ndim != 4 or ref.shape[1:] != img.shape:
            raise ValueError(f"reference must be (N, Z, Y, X) matching {img.shape}; got {ref.shape}")
        proj = lab.max(axis=0)
        if proj.max() > 0:
            drop.extend(_granules(proj, ref.max(axis=1), px=spacing[1], params=params).tolist())
    return _filter_and_relabel(lab, min_px=0, max_px=0, drop=drop)


# ---------------------------------------------------------------- GFAP call
def estimate_bleed_through(
    gfp,
    gfap,
    *,
    labels,
    pixel_size_um: float,
    quantile: float = 0.1,
    ring_gap_um: float = 1.0,
    ring_width_um: float = 3.0,
    max_coefficient: float = 0.5,
) -> float:
    """GFP→GFAP bleed-through coefficient from the GFP+ cells that lack GFAP.

    For every GFP+ cell the excess over its local background ring is measured
    in both channels (``ΔGFP``, ``ΔGFAP``: inside mean − ring median). A
    GFAP-negative cell shows only bleed-through, ``ΔGFAP = coef · ΔGFP``; a
    GFAP-positive cell lies above that line. The coefficient is the
    ``quantile``-th percentile of ``ΔGFAP / ΔGFP`` over cells whose GFP
    excess is clearly measurable (> 5 standard errors of the mean given the
    GFP pixel noise), clipped to
    ``[0, max_coefficient]``.

    The estimate assumes at least a fraction ``quantile`` of the cells is
    GFAP-negative; when every cell may be GFAP-positive, measure the
    coefficient on a GFP-only control and set it explicitly.

    Parameters
    ----------
    gfp, gfap : ndarray, shape (Y, X)
    labels : ndarray of int, shape (Y, X)
        GFP+ cells.
    pixel_size_um : float
    quantile : float
        Lower percentile (as a fraction) of the per-cell ratios.
    ring_gap_um, ring_width_um : float
        Geometry of the background ring.
    max_coefficient : float
        Upper bound of a plausible bleed-through.

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
    >>> f = 80 + rng.normal(0, 3, lab.shape) + 0.1 * g + 300 * (lab > 3)
    >>> round(estimate_bleed_through(g, f, labels=lab, pixel_size_um=1.0), 2)
    0.1
    """
    labels = np.asarray(labels)
    px = _check_px(pixel_size_um)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size < 3:
        return 0.0
    ring = _ring_labels(labels, gap_px=ring_gap_um / px, width_px=ring_width_um / px)
    g = np.asarray(gfp, dtype=np.float32)
    f = np.asarray(gfap, dtype=np.float32)

    def excess(img: np.ndarray) -> np.ndarray:
        inside = ndi.mean(img, labels, ids)
        around = np.asarray(ndi.median(img, ring, ids), dtype=np.float64)
        return inside - np.where(np.isfinite(around), around, np.median(img))

    dg = excess(g)
    df = excess(f)
    n_in = np.bincount(labels.ravel(), minlength=int(ids.max()) + 1)[ids]
    ok = dg > 5 * max(pixel_noise(g), 1e-12) / np.sqrt(n_in)
    if np.count_nonzero(ok) < 3:
        return 0.0
    coef = float(np.quantile(df[ok] / dg[ok], quantile))
    return float(np.clip(coef, 0.0, max_coefficient))


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
    gfap : ndarray, shape (Y, X)
        GFAP channel of the same plane.
    gfp : ndarray, shape (Y, X), optional
        GFP channel, needed for the bleed-through correction.
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
    img = _check_plane(gfap, "gfap").astype(np.float32)
    if labels.shape != img.shape:
        raise ValueError(f"gfp_labels {labels.shape} and gfap {img.shape} differ in shape")
    px = _check_px(pixel_size_um)
    cols = ["label", "gfap_inside", "gfap_background", "gfap_noise", "gfap_zscore", "gfap_ratio",
            "gfap_positive", "bleed_coefficient"]
    ids = np.unique(labels)
    ids = ids[ids > 0]
    coef = params.bleed_coefficient
    if coef is None:
        coef = 0.0
        if gfp is not None and ids.size:
            gfp_arr = _check_plane(gfp, "gfp")
            if gfp_arr.shape != img.shape:
                raise ValueError(f"gfp {gfp_arr.shape} and gfap {img.shape} differ in shape")
            coef = estimate_bleed_through(
                gfp_arr, img, labels=labels, pixel_size_um=px, quantile=params.bleed_quantile,
                ring_gap_um=params.ring_gap_um, ring_width_um=params.ring_width_um,
            )
    if coef > 0:
        if gfp is None:
            raise ValueError("a bleed-through coefficient needs the gfp image (gfp=...)")
        img = img - np.float32(coef) * np.asarray(gfp, dtype=np.float32)
    if ids.size == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "label" else ("bool" if c == "gfap_positive" else "float64"))
             for c in cols}
        )
    ring = _ring_labels(labels, gap_px=params.ring_gap_um / px, width_px=params.ring_width_um / px)
    glob_med = float(np.median(img))
    glob_sigma = pixel_noise(img)
    inside = ndi.mean(img, labels, ids)
    bg = np.asarray(ndi.median(img, ring, ids), dtype=np.float64)
    counts = np.bincount(ring.ravel(), minlength=int(ids.max()) + 1)[ids]
    bg = np.where(counts > 0, bg, glob_med)

    def _ring_sigma(values: np.ndarray) -> float:
        return robust_sigma(values) if values.size >= 5 else np.nan

    noise = np.asarray(ndi.labeled_comprehension(img, ring, ids, _ring_sigma, np.float64, np.nan))
    noise = np.where(np.isfinite(noise), noise, glob_sigma)
    noise = np.maximum(noise, max(glob_sigma, 1e-12))
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
