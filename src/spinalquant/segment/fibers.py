"""Muscle-fiber cross sections from a border stain (laminin, dystrophin, WGA, collagen) or H&E.

Method (every scale is a physical size converted with the pixel size)
----------------------------------------------------------------------
1. **Border image.** Fluorescence: the stain itself. H&E: colour deconvolution
   (:func:`skimage.color.rgb2hed`); fiber cytoplasm is eosin-rich, while endomysium
   gaps (white), perimysium and nuclei (hematoxylin) are not, so the border image is
   "lack of eosin" plus hematoxylin, both scaled by robust fiber-interior levels.
2. **Ridge enhancement.** A Sato tubeness filter (bright ridges) at
   ``ridge_sigma_um`` (and twice that) picks out thin bright borders whatever the
   interior brightness (vignetting, autofluorescence).
3. **Robust threshold.** The ridge response of fiber interiors is noise; the border
   mask is ``ridge > median + ridge_threshold_mad * 1.4826 * MAD``, at least the Otsu
   threshold of the ridge image, so it adapts to noise and contrast.
4. **Gap-tolerant seeds.** The distance (µm) to the nearest border pixel, smoothed,
   has one maximum per fiber even when the border has gaps. Seeds are maxima at
   least ``seed_spacing_um`` apart and ``min_seed_depth_um`` deep (thin interstitial
   slivers give none), merged when they are not separated by a dip deeper than
   ``seed_h_um`` (h-maxima).
5. **Watershed** of the ridge image from the seeds fills each fiber up to the crest of
   its border, so gaps in the border are closed by the watershed line.
6. **Fiber outline.** In each basin, pixels are binned by distance to the crest; the
   median of each ring, scaled from the basin core level (0) to its crest level (1),
   is a noise-free border profile, and the fiber edge is where it falls below
   ``outline_fraction`` (whatever the local brightness). Pixels still bright in the
   smoothed image are dropped, the fiber is opened by ~``ridge_sigma_um``, holes are
   filled and only the piece holding the seed is kept.
7. **Rejection of non-fibers.** Objects smaller than ``min_area_um2`` or larger than
   ``max_area_um2``; with solidity below ``min_solidity`` (interstitial space between
   fibers is concave and star-shaped); or whose interior is bright
   (``max_interior_brightness``: border contrast (rim - core) / rim far below that of
   typical fibers -- blood vessels and nerve/perimysium patches are enclosed by
   border stain but are full of it).
   Fibers touching the image edge are removed with ``exclude_border=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import color, filters, graph, measure, morphology, segmentation
from skimage.feature import peak_local_max

from ..errors import ImageContentError

__all__ = ["FiberParams", "border_image", "segment_fibers"]

_STAINS = ("laminin", "dystrophin", "wga", "collagen", "he")
_MAD = 1.4826


@dataclass(frozen=True)
class FiberParams:
    """Parameters of :func:`segment_fibers` (lengths in µm, areas in µm²).

    Parameters
    ----------
    min_area_um2, max_area_um2 : float
        Accepted fiber cross-sectional areas. Mouse TA fibers are ~300–5000 µm²;
        human fibers up to ~12000 µm².
    ridge_sigma_um : float
        Scale of the ridge filter: about half the apparent border width.
    ridge_threshold_mad : float
        Border threshold, in robust standard deviations of the ridge image above its
        median.
    smooth_um : float
        Gaussian smoothing of the image before anything else (noise).
    seed_spacing_um : float
        Minimum distance between two fiber seeds: about the smallest fiber radius.
    min_seed_depth_um : float
        A seed must lie at least this far from any border pixel.
    seed_h_um : float
        Two distance maxima belong to one fiber unless the distance map dips by more
        than this between them.
    min_solidity : float
        Smallest area / convex-hull-area ratio of a fiber.
    max_interior_brightness : float
        Reject objects whose own border contrast, ``(rim - core) / rim``, is below
        ``1 - max_interior_brightness`` times that of the typical fiber (0–1]:
        vessels and perimysium patches enclosed by stain are full of it.
    outline_fraction : float
        Where the fiber edge sits on the border profile, from the fiber's core level (0)
        to the border crest (1). The profile is the median of one-pixel rings at growing
        distance from the crest, so it is free of noise. Thin borders blurred by the
        optics have the true fiber edge close to the crest, hence 0.7 rather than the
        half maximum (which shrinks fibers by ~1 µm per side).
    merge_below : float
        If > 0, merge neighbouring basins whose common boundary has a mean scaled border
        level (core 0, crest 1) below this (over-segmented fibers). Off by default:
        borders with long gaps then merge real fibers.
    exclude_border : bool
        Remove fibers that touch the image edge (their CSA is truncated).
    """

    min_area_um2: float = 100.0
    max_area_um2: float = 20000.0
    ridge_sigma_um: float = 1.0
    ridge_threshold_mad: float = 3.0
    smooth_um: float = 0.5
    seed_spacing_um: float = 6.0
    min_seed_depth_um: float = 2.5
    seed_h_um: float = 1.5
    min_solidity: float = 0.8
    max_interior_brightness: float = 0.5
    outline_fraction: float = 0.7
    merge_below: float = 0.0
    exclude_border: bool = True

    def __post_init__(self) -> None:
        for name in (
            "min_area_um2",
            "max_area_um2",
            "ridge_sigma_um",
            "ridge_threshold_mad",
            "seed_spacing_um",
            "min_seed_depth_um",
        ):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"FiberParams.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("smooth_um", "seed_h_um"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"FiberParams.{name} must be ≥ 0, got {getattr(self, name)!r}")
        if self.max_area_um2 <= self.min_area_um2:
            raise ValueError("FiberParams.max_area_um2 must exceed min_area_um2")
        if not 0 <= self.min_solidity <= 1:
            raise ValueError(
                f"FiberParams.min_solidity must be in [0, 1], got {self.min_solidity}"
            )
        if not 0 < self.max_interior_brightness <= 1:
            raise ValueError(
                "FiberParams.max_interior_brightness must be in (0, 1], "
                f"got {self.max_interior_brightness}"
            )


# --------------------------------------------------------------------------- helpers


def _robust_sigma(values: np.ndarray) -> float:
    med = np.median(values)
    return float(_MAD * np.median(np.abs(values - med)))


def _subsample(a: np.ndarray, n: int = 1_000_000) -> np.ndarray:
    flat = a.ravel()
    step = max(flat.size // n, 1)
    return flat[::step]


def _he_border(rgb: np.ndarray, pixel_size_um: float, smooth_um: float) -> np.ndarray:
    """Border image (high between fibers) of an RGB H&E section."""
    hed = color.rgb2hed(rgb)
    hema = hed[..., 0].astype(np.float32)
    eosin = hed[..., 1].astype(np.float32)
    sigma = max(smooth_um / pixel_size_um, 0.5)
    hema = ndi.gaussian_filter(hema, sigma)
    eosin = ndi.gaussian_filter(eosin, sigma)
    # robust levels: fiber cytoplasm dominates the section, so the upper-middle
    # eosin quantile is the fiber level and the lower tail the white gaps.
    e_sub = _subsample(eosin)
    e_fiber = float(np.percentile(e_sub, 75))
    e_low = float(np.percentile(e_sub, 1))
    if not e_fiber > e_low:
        raise ImageContentError("H&E image has no eosin contrast: cannot find muscle fibers")
    lack_eosin = (e_fiber - eosin) / (e_fiber - e_low)
    h_sub = _subsample(hema)
    h_fiber = float(np.median(h_sub))
    h_high = float(np.percentile(h_sub, 99.5))
    nuclei = (hema - h_fiber) / max(h_high - h_fiber, 1e-6)
    return np.clip(lack_eosin, 0, None) + np.clip(nuclei, 0, None)


def border_image(image, *, pixel_size_um: float, stain: str = "laminin", smooth_um: float = 0.5):
    """Float32 (Y, X) image that is bright on fiber borders and dark inside fibers.

    Parameters
    ----------
    image : ndarray
        (Y, X) border-stain image (any real dtype) or, for ``stain="he"``, (Y, X, 3)
        uint8 RGB brightfield.
    pixel_size_um : float
        Pixel size in µm.
    stain : {"laminin", "dystrophin", "wga", "collagen", "he"}
        Kind of image.
    smooth_um : float
        Gaussian smoothing sigma in µm.

    Returns
    -------
    ndarray (Y, X) float32

    Examples
    --------
    >>> img = np.zeros((32, 32), np.uint16); img[16] = 1000
    >>> b = border_image(img, pixel_size_um=0.5)
    >>> bool(b[16, 16] > b[8, 16])
    True
    """
    stain = _check_stain(stain)
    if stain == "he":
        return _he_border(_check_rgb(image), pixel_size_um, smooth_um).astype(np.float32)
    img = _check_gray(image).astype(np.float32)
    sigma = smooth_um / pixel_size_um
    return ndi.gaussian_filter(img, sigma) if sigma > 0.3 else img


def _check_stain(stain: str) -> str:
    key = str(stain).lower()
    if key not in _STAINS:
        raise ValueError(f"stain must be one of {_STAINS}, got {stain!r}")
    return key


def _check_gray(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(
            f"a border-stain image must be 2-D (Y, X); got shape {img.shape}. "
            "Select the border channel and project Z first."
        )
    if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise ValueError(f"image dtype {img.dtype} is not numeric")
    if np.issubdtype(img.dtype, np.floating) and not np.all(np.isfinite(img)):
        raise ImageContentError("border-stain image contains NaN or infinite values")
    return img


def _check_rgb(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f'stain="he" needs an RGB (Y, X, 3) image, got shape {img.shape}')
    return img


def _ridges(border: np.ndarray, sigma_px: float) -> np.ndarray:
    sigmas = (sigma_px, 2.0 * sigma_px)
    return filters.sato(border, sigmas=sigmas, black_ridges=False, mode="reflect").astype(
        np.float32
    )


def _border_mask(ridge: np.ndarray, k_mad: float) -> np.ndarray:
    sub = _subsample(ridge)
    med = float(np.median(sub))
    noise = _robust_sigma(sub)
    thr = med + k_mad * noise
    if float(sub.max()) > float(sub.min()):
        thr = max(thr, float(filters.threshold_otsu(sub)))
    return ridge > thr


def _seeds(border_mask: np.ndarray, pixel_size_um: float, p: FiberParams) -> np.ndarray:
    dist = ndi.distance_transform_edt(~border_mask, sampling=pixel_size_um).astype(np.float32)
    dist = ndi.gaussian_filter(dist, max(1.0 / pixel_size_um, 0.5))
    spacing_px = max(round(p.seed_spacing_um / pixel_size_um), 1)
    peaks = peak_local_max(
        dist,
        min_distance=spacing_px,
        threshold_abs=p.min_seed_depth_um,
        exclude_border=False,
    )
    markers = np.zeros(dist.shape, dtype=np.int32)
    if len(peaks) == 0:
        return markers
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    if p.seed_h_um > 0:
        # seeds on one h-dome (no dip deeper than seed_h_um between them) merge
        domes = measure.label(morphology.h_maxima(dist, p.seed_h_um) > 0)
        grown = segmentation.watershed(-dist, domes, mask=dist > p.min_seed_depth_um / 2)
        owner = grown[tuple(peaks.T)]
        # keep one seed per dome (the deepest); seeds outside any dome stay
        order = np.argsort(-dist[tuple(peaks.T)])
        seen: set[int] = set()
        keep = np.ones(len(peaks), dtype=bool)
        for i in order:
            o = int(owner[i])
            if o == 0:
                continue
            if o in seen:
                keep[i] = False
            seen.add(o)
        markers[tuple(peaks[~keep].T)] = 0
    return markers


def _outline(
    labels: np.ndarray,
    raw: np.ndarray,
    smooth: np.ndarray,
    pixel_size_um: float,
    fraction: float,
    max_halfwidth_um: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fiber = basin minus its border band, located from the basin's radial profile.

    Each basin's pixels are binned by their distance to the basin edge (the border
    crest found by the watershed). The median of each one-pixel ring, scaled between
    the basin's core level (0) and rim level (1), is a noise-free border profile; the
    fiber edge is where it falls below ``fraction``. Pixels still brighter than the
    midpoint of ``fraction`` and the rim in the lightly smoothed image (perimysium,
    capillaries inside a basin) are removed too. Returns fibers, core and rim levels.
    """
    n = int(labels.max())
    index = np.arange(1, n + 1)
    edge = segmentation.find_boundaries(labels, mode="inner")
    # distance (µm) to the crest, which lies half a pixel beyond the edge pixels
    dist = ndi.distance_transform_edt(~edge & (labels > 0), sampling=pixel_size_um)
    dist = (dist + 0.5 * pixel_size_um).astype(np.float32)
    max_depth = np.asarray(ndi.maximum(dist, labels, index=index))
    lab_safe = np.maximum(labels - 1, 0)
    core = np.where(dist >= 0.5 * max_depth[lab_safe], labels, 0)
    core_level = np.nan_to_num(np.asarray(ndi.median(raw, core, index=index)), nan=0.0)
    rim_level = np.asarray(ndi.median(raw, np.where(edge, labels, 0), index=index))
    rim_level = np.nan_to_num(rim_level, nan=np.inf)
    span = np.maximum(rim_level - core_level, 1e-12)

    step = pixel_size_um
    n_rings = max(int(np.ceil(max_halfwidth_um / step)), 2)
    ring = np.floor((dist - 0.5 * pixel_size_um) / step).astype(np.int64)
    in_band = (labels > 0) & (ring < n_rings)
    ring_lab = np.where(in_band, lab_safe * n_rings + ring + 1, 0)
    ring_index = np.arange(1, n * n_rings + 1)
    norm = (raw - core_level[lab_safe]) / span[lab_safe]
    prof = np.asarray(ndi.median(norm, ring_lab, index=ring_index), dtype=float)
    n_px = np.bincount(ring_lab.ravel(), minlength=n * n_rings + 1)[1:]
    d_sum = np.bincount(ring_lab.ravel(), weights=dist.ravel(), minlength=n * n_rings + 1)[1:]
    pos = np.full(n * n_rings, np.nan)
    np.divide(d_sum, n_px, out=pos, where=n_px > 0)
    prof = prof.reshape(n, n_rings)
    pos = pos.reshape(n, n_rings)
    # first ring whose profile is below `fraction` (NaN rings = empty: treat as inside)
    below = ~(prof >= fraction)
    first = np.argmax(below, axis=1)
    none_below = ~below.any(axis=1)
    k = np.clip(first, 1, n_rings - 1)
    rows = np.arange(n)
    p0, p1 = prof[rows, k - 1], prof[rows, k]
    x0, x1 = pos[rows, k - 1], pos[rows, k]
    t = np.clip((p0 - fraction) / np.where(p0 - p1 > 0, p0 - p1, np.inf), 0, 1)
    cut = np.where(np.isfinite(x0) & np.isfinite(x1), x0 + t * (x1 - x0), x0)
    cut = np.where(first == 0, 0.0, cut)
    cut = np.where(none_below, max_halfwidth_um, cut)
    cut = np.nan_to_num(cut, nan=0.0)
    cut_lut = np.concatenate([[np.inf], cut]).astype(np.float32)
    bright_lut = np.concatenate([[-np.inf], core_level + 0.5 * (1 + fraction) * span])
    fibers = (dist > cut_lut[labels]) & (smooth < bright_lut[labels].astype(np.float32))
    return np.where(fibers, labels, 0), core_level, rim_level


def _clean(fibers: np.ndarray, markers_lab: np.ndarray, radius_px: float) -> np.ndarray:
    """Open (smooth), fill holes and keep, per label, the piece that holds the seed."""
    out = np.zeros_like(fibers)
    footprint = morphology.disk(max(round(radius_px), 1))
    for region in measure.regionprops(fibers):
        sl = region.slice
        sub = ndi.binary_opening(np.pad(region.image, 1), structure=footprint)[1:-1, 1:-1]
        pieces, n = ndi.label(sub)
        if n > 1:
            seed_piece = pieces[markers_lab[sl] == region.label]
            seed_piece = seed_piece[seed_piece > 0]
            if seed_piece.size:
                keep = np.bincount(seed_piece).argmax()
            else:
                keep = np.bincount(pieces.ravel())[1:].argmax() + 1
            sub = pieces == keep
        sub = ndi.binary_fill_holes(sub)
        view = out[sl]
        view[sub & (view == 0)] = region.label
    return out


def segment_fibers(
    image,
    *,
    pixel_size_um: float,
    stain: str = "laminin",
    params: FiberParams = FiberParams(),
    exclude_border: bool | None = None,
) -> np.ndarray:
    """Label muscle-fiber cross sections.

    Parameters
    ----------
    image : ndarray
        (Y, X) border-stain image of any real dtype (laminin / dystrophin / WGA /
        collagen), or (Y, X, 3) uint8 RGB for ``stain="he"``. Not modified.
    pixel_size_um : float
        Pixel size in µm (square pixels).
    stain : {"laminin", "dystrophin", "wga", "collagen", "he"}
        Kind of image; all fluorescent border stains are treated alike.
    params : FiberParams
        Physical parameters (see :class:`FiberParams` and the module docstring).
    exclude_border : bool, optional
        Overrides ``params.exclude_border``.

    Returns
    -------
    ndarray (Y, X) int32
        Fiber labels 1..N (0 = border, interstitium, rejected objects).

    Examples
    --------
    >>> yy, xx = np.mgrid[:200, :200]
    >>> img = ((yy % 50 < 3) | (xx % 50 < 3)).astype(np.uint16) * 1000 + 100
    >>> lab = segment_fibers(img, pixel_size_um=0.5, params=FiberParams(min_area_um2=50))
    >>> int(lab.max())
    9
    """
    stain = _check_stain(stain)
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    p = params
    drop_edge = p.exclude_border if exclude_border is None else bool(exclude_border)
    border = border_image(image, pixel_size_um=pixel_size_um, stain=stain, smooth_um=p.smooth_um)
    if float(border.max()) == float(border.min()):
        return np.zeros(border.shape, dtype=np.int32)

    ridge = _ridges(border, max(p.ridge_sigma_um / pixel_size_um, 0.7))
    bmask = _border_mask(ridge, p.ridge_threshold_mad)
    markers = _seeds(bmask, pixel_size_um, p)
    if markers.max() == 0:
        return np.zeros(border.shape, dtype=np.int32)
    basins = segmentation.watershed(ridge, markers)
    basins = _merge_unbordered(basins, border, p.merge_below)
    markers = np.where(markers > 0, basins, 0)
    raw = border_image(image, pixel_size_um=pixel_size_um, stain=stain, smooth_um=0.0)
    fibers, core_level, rim_level = _outline(
        basins, raw, border, pixel_size_um, p.outline_fraction, max(4.0, 4 * p.ridge_sigma_um)
    )
    fibers = _clean(fibers, markers, max(p.ridge_sigma_um / pixel_size_um, 1.0))
    return _reject(fibers, border, core_level, rim_level, pixel_size_um, p, drop_edge)


def _merge_unbordered(basins: np.ndarray, border: np.ndarray, merge_below: float) -> np.ndarray:
    """Merge neighbouring basins whose shared boundary carries no border stain.

    Noise or texture can give one fiber two seeds; the watershed line between them
    then runs through dark cytoplasm. The border image is scaled so that the median
    basin core is 0 and the median basin edge (the border crest) is 1; two basins
    merge when the mean of that scaled image along their common boundary is below
    ``merge_below``.
    """
    if merge_below <= 0 or basins.max() < 2:
        return basins
    edge = segmentation.find_boundaries(basins, mode="inner")
    crest = float(np.median(border[edge]))
    core = float(np.median(border[~edge]))
    if not crest > core:
        return basins
    scaled = (border - core) / (crest - core)
    rag = graph.rag_boundary(basins, scaled.astype(np.float64))
    merged = graph.cut_threshold(basins, rag, merge_below, in_place=True)
    return segmentation.relabel_sequential(merged + 1)[0].astype(np.int32)


def _reject(
    fibers: np.ndarray,
    border: np.ndarray,
    core_level: np.ndarray,
    rim_level: np.ndarray,
    pixel_size_um: float,
    p: FiberParams,
    drop_edge: bool,
) -> np.ndarray:
    props = measure.regionprops_table(fibers, properties=("label", "area", "solidity"))
    lab = props["label"]
    area_um2 = props["area"] * pixel_size_um**2
    keep = (area_um2 >= p.min_area_um2) & (area_um2 <= p.max_area_um2)
    keep &= props["solidity"] >= p.min_solidity
    if lab.size:
        # bright-interior rejection: an object's own border contrast, as a fraction of
        # its rim level above the image's dark floor (illumination-invariant), must
        # not fall below (1 - max_interior_brightness) times that of typical fibers
        floor = min(float(np.percentile(_subsample(border), 0.1)), 0.0)
        rim = rim_level[lab - 1]
        contrast = (rim - core_level[lab - 1]) / np.maximum(rim - floor, 1e-12)
        typical = float(np.median(contrast[keep])) if keep.any() else float(np.median(contrast))
        if typical > 0:
            keep &= contrast >= (1 - p.max_interior_brightness) * typical
    if drop_edge:
        edge = np.concatenate([fibers[0], fibers[-1], fibers[:, 0], fibers[:, -1]])
        keep &= ~np.isin(lab, edge)
    lut = np.zeros(int(fibers.max()) + 1, dtype=np.int32)
    kept = lab[keep]
    lut[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lut[fibers]
