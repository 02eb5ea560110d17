"""GFAP+ astrocytes: soma detection and GFAP area fraction (astrogliosis).

An astrocyte in GFAP immunofluorescence is a small bright soma with thin,
bright, branching processes, on a meshwork of processes of cells outside the
section. Thresholding GFAP alone gives one connected network, so somata are
found as the *locally thick* bright parts:

1. background removal (:func:`~spinalquant.segment.gfp_cells.background_residual`);
2. a grey opening with a disk of radius ``process_width_um`` removes every
   structure thinner than about twice that (processes, meshwork), keeping somata;
3. the opened image is smoothed at soma scale and thresholded at
   ``max(Otsu, median + noise_k · σ)``, σ the MAD noise of the smoothed opened image;
4. maxima of the smoothed opened image at least ``min_separation_um`` apart
   seed a watershed in each connected part of that mask. Shapes are then
   judged at each region's half maximum: regions without a neck between them
   are one cell (:func:`merge_lobes`) — a cell body larger than a typical
   soma, with a dimmer nucleus and a textured cytoplasm (a GFAP-filled donor
   cell), has several intensity maxima but one outline — and a region whose
   shape has a neck is split there (a dim cell on the shoulder of a bright
   one has no maximum of its own);
5. each soma is outlined at half its own brightness above its local
   background (as GFP+ cells, :mod:`~spinalquant.segment.gfp_cells`), then
   opened with a disk of ``trim_fraction`` × ``soma_diameter_um``: bright
   process bases and meshwork bundles, thinner than a soma, are cut off, so
   neither the centroid nor the area drifts along a process; objects smaller
   than ``min_area_um2`` are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters
from skimage.segmentation import watershed

from .. import _validate as check
from ..errors import ConfigError
from ._cells import (
    NECK_RATIO,
    TOP_PERCENTILE,
    boundary_saddles,
    check_origin,
    distance_surface,
    ellipsoid,
    filter_and_relabel,
    split_and_outline,
    split_component,
)
from .gfp_cells import background_residual, pixel_noise, robust_sigma

__all__ = [
    "GFAP_AREA_WINDOW_UM",
    "AstrocyteParams",
    "area_sample_stride",
    "area_threshold",
    "gfap_area_fraction",
    "gfap_residual",
    "merge_lobes",
    "segment_astrocytes",
    "soma_response",
    "soma_sample_stride",
    "soma_threshold",
]

#: Default background window (µm) of :func:`gfap_area_fraction`.
GFAP_AREA_WINDOW_UM = 40.0

#: Width (µm) of the ring, 1 µm outside a soma, whose median is its local background.
_RING_WIDTH_UM = 3.0


@dataclass(frozen=True)
class AstrocyteParams:
    """Parameters of astrocyte soma detection (lengths in µm).

    Parameters
    ----------
    soma_diameter_um : float
        Typical GFAP+ soma diameter.
    process_width_um : float
        Radius of the grey opening disk: structures thinner than about twice
        this (processes, the GFAP meshwork) are removed before soma detection.
    min_area_um2 : float
        Smallest soma kept.
    background_size_um : float
        Window of the background opening (0 = none).
    noise_k : float
        Noise floor of the threshold, in σ above the median.
    min_separation_um : float
        Smallest distance between two somata (0 = 0.6 · soma_diameter_um).
    edge_fraction : float
        Each soma is outlined at this fraction of its own brightness above its
        local background (half maximum).
    max_grow_um : float
        How far an outline may grow beyond the detection mask.
    trim_fraction : float
        Each outline is opened with a disk of this fraction of
        ``soma_diameter_um``: process bases and meshwork bundles narrower than
        that are cut off, so the soma's centroid and area are its own
        (0 = no trimming).
    neck_ratio : float
        Two intensity-split regions of one component are one cell unless the
        component's shape narrows between them to below this fraction of the
        lower of their two inscribed radii (:func:`merge_lobes`; 1 = never
        merge).
    fixed_threshold : float or None
        Threshold of step 3 on the smoothed opened image, given instead of
        computed from the image (None, the default: from the image). Tiled
        analysis sets the whole image's value so that every tile cuts at the
        same level (:func:`soma_threshold`).
    fixed_median : float or None
        Median of the smoothed opened image, the outline's fallback
        background (None: from the image).
    origin_px : (int, int)
        Pixel (y, x) of a larger image that is this image's first pixel, when
        it is a window of it (tiled analysis): the background's min-pooled
        blocks are then the larger image's
        (:func:`~spinalquant.segment.gfp_cells.background_residual`).
        ``(0, 0)`` for a whole image.
    """

    soma_diameter_um: float = 8.0
    process_width_um: float = 2.0
    min_area_um2: float = 15.0
    background_size_um: float = 40.0
    noise_k: float = 4.0
    min_separation_um: float = 0.0
    edge_fraction: float = 0.5
    max_grow_um: float = 1.0
    trim_fraction: float = 0.7
    neck_ratio: float = NECK_RATIO
    fixed_threshold: float | None = None
    fixed_median: float | None = None
    origin_px: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for key in ("fixed_threshold", "fixed_median"):
            v = getattr(self, key)
            if v is not None and not np.isfinite(v):
                raise ConfigError(f"[astrocytes] {key} must be a finite number or unset; got {v}")
        object.__setattr__(self, "origin_px", check_origin(self.origin_px, "[astrocytes] origin_px", ConfigError))
        for key in ("soma_diameter_um", "process_width_um"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"[astrocytes] {key} must be positive; got {getattr(self, key)}")
        if not 0 <= self.edge_fraction < 1:
            raise ConfigError(f"[astrocytes] edge_fraction must be in [0, 1); got {self.edge_fraction}")
        if not 0 < self.neck_ratio <= 1:
            raise ConfigError(f"[astrocytes] neck_ratio must be in (0, 1]; got {self.neck_ratio}")
        if not 0 <= self.trim_fraction <= 1:
            raise ConfigError(f"[astrocytes] trim_fraction must be in [0, 1]; got {self.trim_fraction}")
        for key in ("min_area_um2", "background_size_um", "min_separation_um", "max_grow_um"):
            if getattr(self, key) < 0:
                raise ConfigError(f"[astrocytes] {key} must be ≥ 0; got {getattr(self, key)}")


def segment_astrocytes(
    gfap,
    *,
    pixel_size_um: float,
    params: AstrocyteParams = AstrocyteParams(),
) -> np.ndarray:
    """Label GFAP+ astrocyte somata in one plane.

    Parameters
    ----------
    gfap : ndarray, shape (Y, X)
    pixel_size_um : float
    params : AstrocyteParams

    Returns
    -------
    ndarray of int32, shape (Y, X)
        One label per soma (thin processes are not part of it).

    Examples
    --------
    >>> img = np.full((80, 80), 10.0)
    >>> yy, xx = np.mgrid[:80, :80]
    >>> img[(yy - 40) ** 2 + (xx - 40) ** 2 < 25] = 200   # soma
    >>> img[39:41, 45:75] = 200                           # thin process
    >>> lab = segment_astrocytes(img, pixel_size_um=1.0)
    >>> int(lab.max()), bool(lab[40, 70] == 0)
    (1, True)
    """
    px = check.pixel_size(pixel_size_um)
    smooth = soma_response(gfap, pixel_size_um=px, params=params)
    thr, med = params.fixed_threshold, params.fixed_median
    if thr is None or med is None:
        t, m = soma_threshold(smooth.ravel()[:: soma_sample_stride(smooth.size)], noise_k=params.noise_k)
        thr = t if thr is None else float(thr)
        med = m if med is None else float(med)
    min_px = params.min_area_um2 / (px * px)
    lab = _split_merge_outline(smooth, smooth > thr, px=px, params=params, min_px=min_px, fallback=med)
    return filter_and_relabel(lab, min_px=min_px, max_px=0)


def _split_merge_outline(smooth: np.ndarray, mask: np.ndarray, *, px: float, params: AstrocyteParams,
                         min_px: float, fallback: float) -> np.ndarray:
    """Steps 4-5: :func:`~spinalquant.segment._cells.split_and_outline` with ``split="intensity"``.

    Between the split and the outline, each component's pieces are joined by
    :func:`merge_lobes` and pieces whose half-maximum shape has a neck are
    split there (:func:`_split_at_necks`). Labels are unique but not
    consecutive (no size filter yet).
    """
    spacing = np.array([px, px])
    min_sep = params.min_separation_um or 0.6 * params.soma_diameter_um
    frac = params.edge_fraction

    def refine(local: np.ndarray, m: int, comp: np.ndarray, crop: np.ndarray, vals: np.ndarray):
        shape = _half_max_shape(local, m, comp, crop == 0, vals, px=px, fraction=frac, fallback=fallback)
        if m > 1:
            local, m = merge_lobes(local, m, shape, pixel_size_um=px, min_separation_um=min_sep,
                                   ratio=params.neck_ratio)
        return _split_at_necks(local, m, shape, spacing=spacing, min_sep_um=min_sep)

    return split_and_outline(
        smooth, mask, spacing=spacing, min_separation_um=min_sep, split="intensity", edge_fraction=frac,
        ring_um=(1.0, _RING_WIDTH_UM), max_grow_um=params.max_grow_um,
        trim_um=0.5 * params.trim_fraction * params.soma_diameter_um, min_px=min_px, fallback=fallback,
        refine=refine,
    )


def _split_at_necks(local: np.ndarray, m: int, shape: np.ndarray, *, spacing, min_sep_um: float
                    ) -> tuple[np.ndarray, int]:
    """Split each region whose half-maximum shape has a neck (a dim cell beside a bright one).

    The intensity maxima miss a dim cell on the shoulder of a brighter one;
    its shape still shows: each region's part of ``shape`` is split by the
    distance transform (necks only,
    :func:`~spinalquant.segment._cells.split_component` ``how="distance"``)
    and the region divided among the pieces by a watershed on that distance.
    """
    out = np.zeros(local.shape, np.int32)
    n = 0
    for j in range(1, m + 1):
        region = local == j
        part = region & shape
        pieces, k = (split_component(part, part, spacing=spacing, min_sep_um=min_sep_um, how="distance")
                     if part.any() else (part.astype(np.int32), 1))
        if k > 1:
            dist = ndi.distance_transform_edt(part, sampling=spacing)
            pieces = watershed(-dist, pieces, mask=region)
            out[region] = pieces[region] + n
        else:
            out[region] = n + 1
        n += k
    return out, n


def _half_max_shape(local: np.ndarray, m: int, comp: np.ndarray, free: np.ndarray, vals: np.ndarray, *,
                    px: float, fraction: float, fallback: float) -> np.ndarray:
    """The component's shape at each region's own ``fraction`` level (the outline's cut, untrimmed).

    The detection mask of a bright pair of cells is cut far below their
    brightness and fills the neck between them; at half their own maximum
    the neck shows. Background: the median of the outline's ring (1 µm to
    1 + ``_RING_WIDTH_UM`` outside the component, ``free`` pixels only), or
    ``fallback``. ``fraction = 0`` gives the component itself.
    """
    if fraction <= 0:
        return comp
    d_out = ndi.distance_transform_edt(~comp, sampling=(px, px))
    ring = free & (d_out > 1.0) & (d_out <= 1.0 + _RING_WIDTH_UM)
    bg = float(np.median(vals[ring])) if np.count_nonzero(ring) >= 8 else fallback
    shape = np.zeros(comp.shape, bool)
    for j in range(1, m + 1):
        region = local == j
        if not region.any():
            continue
        top = float(np.percentile(vals[region], TOP_PERCENTILE))
        shape |= region & (vals > bg + fraction * (top - bg)) if top > bg else region
    return shape


def merge_lobes(lab: np.ndarray, m: int, component: np.ndarray, *, pixel_size_um: float,
                min_separation_um: float, ratio: float = NECK_RATIO) -> tuple[np.ndarray, int]:
    """Join the intensity-watershed regions of one detection component that no neck separates.

    Intensity maxima split a cell body into *lobes* when the body is larger
    than the seed spacing and its brightness is uneven (a dim nucleus,
    cytoplasmic texture). Two touching cells, in contrast, meet at a neck of
    the component's shape. On the component's distance transform (smoothed
    as the distance split of :mod:`~spinalquant.segment._cells` smooths it),
    neighbours whose highest boundary value reaches ``ratio`` times the lower
    of their two peaks are joined, the pair with the highest boundary first;
    a joined group's peak is its members' highest, so neither a thin bridge
    between two somata (a thick process) nor a small lobe at the neck
    between two cells chains them into one.

    Parameters
    ----------
    lab : ndarray of int, shape (Y, X)
        Regions ``1..m`` of one component (0 outside).
    m : int
        Number of regions.
    component : ndarray of bool, shape (Y, X)
        The component's shape tested for necks (:func:`segment_astrocytes`
        passes it cut at each region's half maximum, where the neck between
        two bright touching cells shows).
    pixel_size_um : float
    min_separation_um : float
        Seed spacing of the split; sets the smoothing of the distance transform.
    ratio : float
        Boundary / lower peak at or above which two regions are one.

    Returns
    -------
    (ndarray of int32, int)
        Regions renumbered ``1..k`` and ``k``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:30, :60]
    >>> blob = np.hypot(yy - 15, xx - 20, dtype=float) < 12           # one round body
    >>> merge_lobes(np.where(xx < 20, 1, 2) * blob, 2, blob, pixel_size_um=1.0, min_separation_um=5)[1]
    1
    >>> two = blob | (np.hypot(yy - 15, xx - 44) < 10)               # and a touching second one
    >>> merge_lobes(np.where(xx < 33, 1, 2) * two, 2, two, pixel_size_um=1.0, min_separation_um=5)[1]
    2
    """
    lab = np.asarray(lab)
    if m <= 1:
        return lab.astype(np.int32), int(m)
    px = check.pixel_size(pixel_size_um)
    surface = distance_surface(np.asarray(component, bool), spacing=(px, px), min_sep_um=min_separation_um)
    peak = np.asarray(ndi.maximum(surface, lab, np.arange(1, m + 1)), float)
    peak = np.r_[0.0, peak]
    saddle = boundary_saddles(lab, surface)
    group = np.arange(m + 1)
    while True:
        # of the pairs without a neck, the one joined along the highest boundary first: a
        # small lobe at the neck between two cells joins the cell it lies deep in, and then
        # the two cells, with their full peaks, still meet at the neck
        joinable = [(v, k) for k, v in saddle.items() if v >= ratio * min(peak[k[0]], peak[k[1]])]
        if not joinable:
            break
        i, j = max(joinable)[1]
        # join j into i: the group's peak is the higher, its boundaries the union
        group[group == j] = i
        peak[i] = max(peak[i], peak[j])
        merged: dict[tuple[int, int], float] = {}
        for (a, b), v in saddle.items():
            a, b = (i if a == j else a), (i if b == j else b)
            if a == b:
                continue
            key = (min(a, b), max(a, b))
            merged[key] = max(v, merged.get(key, -np.inf))
        saddle = merged
    _, new = np.unique(group, return_inverse=True)  # 0 stays 0
    return new.astype(np.int32)[lab], int(new.max())


def soma_response(gfap, *, pixel_size_um: float, params: AstrocyteParams = AstrocyteParams()) -> np.ndarray:
    """Steps 1-2 and the smoothing of step 3: the image the somata are thresholded on.

    Background residual, grey opening with a disk of ``process_width_um``,
    Gaussian of σ = ``soma_diameter_um / 8`` (at least half a pixel).

    Parameters
    ----------
    gfap : ndarray, shape (Y, X)
    pixel_size_um : float
    params : AstrocyteParams

    Returns
    -------
    ndarray of float32, shape (Y, X)

    Examples
    --------
    >>> img = np.full((64, 64), 10.0); img[28:36, 28:36] = 200; img[31:33, 36:60] = 200
    >>> r = soma_response(img, pixel_size_um=1.0)
    >>> bool(r[32, 32] > 100 > r[32, 55])
    True
    """
    img = check.plane(gfap, "gfap")
    px = check.pixel_size(pixel_size_um)
    resid = background_residual(
        img, spacing=(px, px), smooth_sigma_um=0.0, background_size_um=params.background_size_um,
        origin_px=params.origin_px,
    )
    opened = ndi.grey_opening(resid, footprint=ellipsoid(params.process_width_um, (px, px)))
    return ndi.gaussian_filter(opened, sigma=max(0.5, params.soma_diameter_um / 8 / px))


def soma_sample_stride(n_pixels: int) -> int:
    """Step of the regular subsample of the flattened :func:`soma_response` used by the threshold.

    Examples
    --------
    >>> soma_sample_stride(256 * 256), soma_sample_stride(2048 * 2048)
    (1, 8)
    """
    return max(1, int(n_pixels) // 500_000)


def soma_threshold(sample, *, noise_k: float = 4.0) -> tuple[float, float]:
    """Soma threshold of step 3 from :func:`soma_response` values: (threshold, median).

    ``max(Otsu, median + noise_k · σ)``, σ the MAD-based noise.
    :func:`segment_astrocytes` applies it to
    ``response.ravel()[::soma_sample_stride(response.size)]``; tiled analysis
    gathers exactly those pixels from its tiles to obtain the whole image's value.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(0, 1, 10_000)
    >>> thr, med = soma_threshold(x, noise_k=4.0)
    >>> round(thr, 1), abs(med) < 0.05
    (4.0, True)
    """
    sample = np.asarray(sample).ravel()
    med = float(np.median(sample))
    floor = med + noise_k * robust_sigma(sample)
    thr = max(float(filters.threshold_otsu(sample)), floor) if np.ptp(sample) > 0 else floor
    return float(thr), med


def gfap_area_fraction(gfap, *, pixel_size_um: float, mask=None, noise_k: float = 3.0,
                       background_size_um: float = GFAP_AREA_WINDOW_UM,
                       threshold: float | None = None, origin_px: tuple[int, int] = (0, 0)) -> float:
    """Fraction of the tissue area that is GFAP+ (an astrogliosis index).

    GFAP is smoothed lightly (0.5 µm), its large-scale background removed
    (:func:`gfap_residual`), and pixels above ``max(Otsu, median + noise_k · σ)``
    count as GFAP+ (σ: pixel-to-pixel noise of the residual,
    :func:`~spinalquant.segment.gfp_cells.pixel_noise`, which stays small
    even when GFAP+ tissue covers most of the region; see :func:`area_threshold`).

    Parameters
    ----------
    gfap : ndarray, shape (Y, X)
    pixel_size_um : float
    mask : ndarray of bool, shape (Y, X), optional
        Region to measure in (e.g. the ventral horn); the whole image by default.
    noise_k : float
    background_size_um : float
    threshold : float, optional
        Threshold on the residual, given instead of computed from this image
        (tiled analysis passes the whole image's value).
    origin_px : (int, int)
        Pixel (y, x) of a larger image that is ``gfap``'s first pixel, when it
        is a window of it (see :func:`gfap_residual`).

    Returns
    -------
    float
        GFAP+ area / measured area, in [0, 1] (NaN for an empty mask).

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(100, 5, (100, 100))
    >>> img[:, :20] += 200
    >>> round(gfap_area_fraction(img, pixel_size_um=1.0, background_size_um=0), 2)
    0.2
    """
    img = check.plane(gfap, "gfap")
    px = check.pixel_size(pixel_size_um)
    resid = gfap_residual(img, pixel_size_um=px, background_size_um=background_size_um, origin_px=origin_px)
    region = np.ones(img.shape, bool) if mask is None else np.asarray(mask, bool)
    if region.shape != img.shape:
        raise ValueError(f"mask shape {region.shape} differs from gfap {img.shape}")
    vals = resid[region]
    if vals.size == 0:
        return float("nan")
    if threshold is None:
        sample = vals[:: area_sample_stride(vals.size)]
        threshold = area_threshold(sample, noise_sigma=pixel_noise(resid), noise_k=noise_k)
    return float(np.count_nonzero(vals > threshold) / vals.size)


def gfap_residual(gfap, *, pixel_size_um: float, background_size_um: float = 40.0,
                  origin_px: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The image :func:`gfap_area_fraction` thresholds: 0.5 µm smoothing minus the background.

    ``origin_px`` is the pixel (y, x) of a larger image that is ``gfap``'s
    first pixel, when it is a window of it: the background's blocks are then
    the larger image's
    (:func:`~spinalquant.segment.gfp_cells.background_residual`).

    Examples
    --------
    >>> gfap_residual(np.ones((8, 8)), pixel_size_um=1.0).shape
    (8, 8)
    """
    return background_residual(
        check.plane(gfap, "gfap"), spacing=(pixel_size_um, pixel_size_um), smooth_sigma_um=0.5,
        background_size_um=background_size_um, origin_px=origin_px,
    )


def area_sample_stride(n_values: int) -> int:
    """Step of the regular subsample of the region's residual values that the threshold uses.

    Examples
    --------
    >>> area_sample_stride(800_000), area_sample_stride(4_500_000)
    (1, 4)
    """
    return max(1, int(n_values) // 1_000_000)


def area_threshold(sample, *, noise_sigma: float, noise_k: float = 3.0) -> float:
    """GFAP+ threshold of :func:`gfap_area_fraction`: ``max(Otsu, median + noise_k · noise_sigma)``.

    Examples
    --------
    >>> x = np.r_[np.zeros(900), np.full(100, 50.0)]
    >>> area_threshold(x, noise_sigma=1.0)  # the noise floor: 0 + 3 x 1
    3.0
    """
    sample = np.asarray(sample).ravel()
    floor = float(np.median(sample)) + noise_k * noise_sigma
    return max(float(filters.threshold_otsu(sample)), floor) if np.ptp(sample) > 0 else floor
