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
6. **Fiber outline.** Within its basin each fiber is the set of pixels darker than the
   midpoint between its interior level (median of the basin core) and its border level
   (median on the basin's outer rim) -- a per-fiber half-maximum rule that puts the
   outline on the inner edge of the border whatever the local brightness; then holes
   are filled and only the component holding the seed is kept.
7. **Rejection of non-fibers.** Objects smaller than ``min_area_um2`` or larger than
   ``max_area_um2``; with solidity below ``min_solidity`` (interstitial space between
   fibers is concave and star-shaped); or whose interior is bright
   (``max_interior_brightness``: median interior level above that fraction of the way
   from the image's fiber level to its border level -- blood vessels and
   nerve/perimysium patches are enclosed by border stain but are full of it).
   Fibers touching the image edge are removed with ``exclude_border=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import color, filters, measure, morphology, segmentation
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
        Reject objects whose median interior level lies more than this fraction of the
        way from the typical fiber interior to the typical border level (0–1).
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
    outline_fraction: float = 0.6
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
            raise ValueError(f"FiberParams.min_solidity must be in [0, 1], got {self.min_solidity}")
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
    spacing_px = max(int(round(p.seed_spacing_um / pixel_size_um)), 1)
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
    labels: np.ndarray, border: np.ndarray, pixel_size_um: float, fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-basin half-maximum outline. Returns fibers, interior and rim levels per label."""
    n = int(labels.max())
    index = np.arange(1, n + 1)
    # rim = basin pixels on its boundary (next to another basin or to the crest)
    rim = segmentation.find_boundaries(labels, mode="inner")
    rim_level = np.asarray(ndi.median(border, np.where(rim, labels, 0), index=index))
    # core = basin pixels deeper than 1 µm... measured from the basin edge
    depth = ndi.distance_transform_edt(~rim & (labels > 0), sampling=pixel_size_um)
    max_depth = np.asarray(ndi.maximum(depth, labels, index=index))
    core_lab = np.where(depth >= 0.5 * max_depth[np.maximum(labels - 1, 0)], labels, 0)
    core_level = np.asarray(ndi.median(border, core_lab, index=index))
    core_level = np.nan_to_num(core_level, nan=0.0)
    rim_level = np.nan_to_num(rim_level, nan=np.inf)
    thr = core_level + fraction * (rim_level - core_level)
    lut = np.concatenate([[-np.inf], thr]).astype(np.float32)
    fibers = np.where(border < lut[labels], labels, 0)
    return fibers, core_level, rim_level


def _clean(fibers: np.ndarray, markers_lab: np.ndarray, radius_px: float) -> np.ndarray:
    """Open (smooth), fill holes and keep, per label, the piece that holds the seed."""
    out = np.zeros_like(fibers)
    footprint = morphology.disk(max(int(round(radius_px)), 1))
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
    params: FiberParams = FiberParams(),  # noqa: B008  (frozen, immutable default)
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
    raw = border_image(image, pixel_size_um=pixel_size_um, stain=stain, smooth_um=0.0)
    fibers, core_level, _ = _outline(basins, raw, pixel_size_um, p.outline_fraction)
    fibers = _clean(fibers, markers, max(p.ridge_sigma_um / pixel_size_um, 1.0))
    return _reject(fibers, border, core_level, pixel_size_um, p, drop_edge)


def _reject(
    fibers: np.ndarray,
    border: np.ndarray,
    core_level: np.ndarray,
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
        # bright-interior rejection against the image's own fiber and border levels
        interior = core_level[lab - 1]
        fiber_level = float(np.median(interior[keep])) if keep.any() else float(np.median(interior))
        border_level = float(np.percentile(_subsample(border), 99))
        span = border_level - fiber_level
        if span > 0:
            keep &= interior <= fiber_level + p.max_interior_brightness * span
    if drop_edge:
        edge = np.concatenate([fibers[0], fibers[-1], fibers[:, 0], fibers[:, -1]])
        keep &= ~np.isin(lab, edge)
    lut = np.zeros(int(fibers.max()) + 1, dtype=np.int32)
    kept = lab[keep]
    lut[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lut[fibers]
