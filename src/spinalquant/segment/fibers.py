"""Muscle-fiber cross sections from a border stain (laminin, dystrophin, WGA, collagen) or H&E.

Method (every scale is a physical size converted with the pixel size)
----------------------------------------------------------------------
1. **Border image.** Fluorescence: the stain itself. H&E: colour deconvolution
   (:func:`skimage.color.separate_stains` with rgb2hed's H and E vectors and a grey
   third vector, so uneven illumination does not change H or E); fiber cytoplasm is
   eosin-rich, while endomysium gaps (white), perimysium and nuclei (hematoxylin) are
   not, so the border image is "lack of eosin" plus hematoxylin, both scaled by
   robust fiber-interior levels.
2. **Ridge enhancement.** Sato tubeness (bright ridges: sigma² x the smallest
   Hessian eigenvalue, negated) at ``ridge_sigma_um`` and twice that picks out thin
   bright borders whatever the interior brightness (vignetting, autofluorescence).
3. **Robust threshold.** The ridge response of fiber interiors is noise; the border
   mask is ``ridge > median + ridge_threshold_mad * 1.4826 * MAD``, at least the Otsu
   threshold of the ridge image, so it adapts to noise and contrast. H&E: the border
   image is calibrated (fiber cytoplasm 0, white gap 1), so pixels above 0.5 are
   interstitium however wide the gap (a ridge filter marks only the edges of a wide
   pale gap): those pale at 1 µm smoothing, or connected to the ridge mask, join it.
   Isolated pieces of the H&E mask no longer than ``max_speck_um`` (central nuclei,
   ice-crystal holes) are dropped: borders form a network.
4. **Gap-tolerant seeds.** The distance (µm) to the nearest border pixel, smoothed,
   has one maximum per fiber even when the border has gaps. Seeds are maxima at
   least ``seed_spacing_um`` apart and ``min_seed_depth_um`` deep (thin interstitial
   slivers give none).
5. **Watershed** of the ridge image from the seeds fills each fiber up to the crest of
   its border, so gaps in the border are closed by the watershed line. Each seed
   starts as the disc free of border around it (only the rest of the image goes
   through the priority queue). H&E: border-enclosed cells holding no seed (too
   narrow for a fiber: perimysium strands, slivers between clefts) stay background
   instead of being flooded from a neighbouring fiber. Seeds that are no h-dome of the distance map
   (``seed_h_um``) are then dropped, and so are seeds that no ridge higher than
   the seed itself separates from a neighbour across a wide opening
   (``seed_neck_fraction``); their basins are flooded again from the neighbours.
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
   border stain but are full of it). No fiber at all when the typical object's
   border step is below ``min_border_snr`` pixel-noise sigmas (blank image, no tissue).
   Fluorescence with bare slide in view (a dark region reaching the image edge, larger
   than four typical fibers): objects whose interior is as dark as the slide
   (``min_tissue_level``) are pieces of background between the outermost fibers.
   Fibers touching the image edge are removed with ``exclude_border=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import color, draw, filters, measure, morphology, segmentation
from skimage.feature import peak_local_max

from .. import _validate as check
from ..errors import ImageContentError
from ..measure.morphology import _label_geometry, _runs
from .gfp_cells import pixel_noise

__all__ = ["FiberParams", "border_image", "segment_fibers"]

_STAINS = ("laminin", "dystrophin", "wga", "collagen", "he")
_MAD = 1.4826


@dataclass(frozen=True)
class FiberParams:
    """Parameters of :func:`segment_fibers` (lengths in µm, areas in µm²).

    Parameters
    ----------
    min_area_um2 : float
        Smallest accepted fiber cross-sectional area. Mouse TA fibers are
        ~300–5000 µm²; human fibers up to ~12000 µm².
    max_area_um2 : float
        Largest accepted fiber cross-sectional area.
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
    seed_neck_fraction : float
        A seed not separated from a neighbouring basin by any ridge higher than the
        seed's own ridge level is dropped when the distance map, where it crosses the
        common boundary, is above this fraction of the seed's depth (a wide opening,
        as within one irregular fiber, rather than a gap in a border). 0 disables.
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
    exclude_border : bool
        Remove fibers that touch the image edge (their CSA is truncated).
    max_speck_um : float
        H&E: isolated pieces of the border mask no longer than this (bounding box)
        are ignored when seeding: central nuclei (hematoxylin) and ice-crystal holes
        inside a fiber are not borders (they split a fiber into several). Not used
        for fluorescence, whose noisy thin borders break into short pieces that are
        borders. 0 disables.
    min_border_snr : float
        When the typical candidate fiber's border step (rim level minus interior level)
        is below this many pixel-noise sigmas, the image holds no fiber pattern (a
        blank or background-only image, whose noise the watershed still cuts into
        cells) and no fiber is returned. Pure noise or a white H&E field measures
        0.3-0.8; real sections 4-25 (phantoms segmented at a border step of 1.2 sigma
        per pixel measure 1.14). 0 disables.
    min_tissue_level : float
        Fluorescence, when bare slide is in view (a dark region reaching the image edge,
        larger than four typical fibers): an object whose interior level lies less than
        this fraction of the way from the slide level to the typical fiber interior is
        empty slide -- a tongue of background between the outermost fibers, cut into
        convex pieces by the watershed -- not a fiber, whose sarcoplasm is brighter than
        the slide (autofluorescence). Measured on phantoms: slide pieces -0.23-0.16,
        the dimmest fibers 0.16-0.4. Not used when the fiber interiors are hardly
        brighter than the slide (background-subtracted images). 0 disables.
    """

    min_area_um2: float = 100.0
    max_area_um2: float = 20000.0
    ridge_sigma_um: float = 1.0
    ridge_threshold_mad: float = 3.0
    smooth_um: float = 0.5
    seed_spacing_um: float = 6.0
    min_seed_depth_um: float = 2.5
    seed_h_um: float = 1.5
    seed_neck_fraction: float = 0.5
    min_solidity: float = 0.8
    max_interior_brightness: float = 0.5
    outline_fraction: float = 0.7
    exclude_border: bool = True
    max_speck_um: float = 15.0
    min_border_snr: float = 1.0
    min_tissue_level: float = 0.1

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
        if not 0 <= self.seed_neck_fraction <= 1:
            raise ValueError(
                f"FiberParams.seed_neck_fraction must be in [0, 1], got {self.seed_neck_fraction}"
            )
        for name in ("smooth_um", "seed_h_um", "max_speck_um", "min_border_snr"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"FiberParams.{name} must be ≥ 0, got {getattr(self, name)!r}")
        if not 0 <= self.min_tissue_level < 1:
            raise ValueError(
                f"FiberParams.min_tissue_level must be in [0, 1), got {self.min_tissue_level}"
            )
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


# Colour deconvolution into hematoxylin, eosin and a grey "stain" (equal optical
# density in R, G and B) instead of skimage's DAB: uneven illumination (vignetting, a
# dimmer lamp at one side of the field) and section thickness scale all three channels
# alike, i.e. add grey optical density, which then goes to the third stain. With DAB as
# the third vector, grey density leaks into hematoxylin (+) and eosin (-): fibers in the
# darker part of a field lost eosin and were taken for pale interstitium.
_HE_GREY_FROM_RGB = np.linalg.inv(
    np.array([color.rgb_from_hed[0], color.rgb_from_hed[1], np.full(3, 1 / np.sqrt(3))])
)


def _he_stains(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin optical densities (float32, ≥ 0), free of grey density.

    Colour deconvolution (:func:`skimage.color.separate_stains`) with the
    hematoxylin and eosin vectors of :func:`skimage.color.rgb2hed` and a grey third
    vector, so that illumination changes (which scale R, G and B alike) do not alter
    H or E. uint8 images go through a 256-entry optical-density table (no float64
    copy of the RGB image).
    """
    m = _HE_GREY_FROM_RGB.astype(np.float32)
    if rgb.dtype == np.uint8:
        lut = (np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / np.log(1e-6)).astype(np.float32)
        od = [lut[rgb[..., i]] for i in range(3)]
        hema = od[0] * m[0, 0] + od[1] * m[1, 0] + od[2] * m[2, 0]
        eosin = od[0] * m[0, 1] + od[1] * m[1, 1] + od[2] * m[2, 1]
        return np.maximum(hema, 0, out=hema), np.maximum(eosin, 0, out=eosin)
    stains = color.separate_stains(rgb, _HE_GREY_FROM_RGB)
    return (
        np.maximum(stains[..., 0], 0).astype(np.float32),
        np.maximum(stains[..., 1], 0).astype(np.float32),
    )


def _he_border(hema: np.ndarray, eosin: np.ndarray, sigma_px: float) -> np.ndarray:
    """Border image (high between fibers) from H and E optical densities."""
    hema = ndi.gaussian_filter(hema, sigma_px)
    eosin = ndi.gaussian_filter(eosin, sigma_px)
    # robust levels: fiber cytoplasm dominates the section, so the upper-middle
    # eosin quantile is the fiber level and the lower tail the white gaps.
    e_sub = _subsample(eosin)
    e_fiber = float(np.percentile(e_sub, 75))
    e_low = float(np.percentile(e_sub, 1))
    if not e_fiber > e_low:
        raise ImageContentError("H&E image has no eosin contrast: cannot find muscle fibers")
    h_sub = _subsample(hema)
    h_fiber = float(np.median(h_sub))
    h_high = float(np.percentile(h_sub, 99.5))
    # lack of eosin + excess hematoxylin, each clipped at 0, in place
    eosin -= np.float32(e_fiber)
    eosin *= np.float32(-1.0 / (e_fiber - e_low))
    np.maximum(eosin, 0, out=eosin)
    hema -= np.float32(h_fiber)
    hema *= np.float32(1.0 / max(h_high - h_fiber, 1e-6))
    np.maximum(hema, 0, out=hema)
    eosin += hema
    return eosin


def _border_pair(image, pixel_size_um: float, stain: str, smooth_um: float):
    """(raw, smoothed) border images: raw barely smoothed, smoothed (float32) by smooth_um.

    For fluorescence ``raw`` is the image itself (any dtype, not copied: only pixels
    sampled from it are converted to float32).
    """
    stain = _check_stain(stain)
    if stain == "he":
        hema, eosin = _he_stains(_check_rgb(image))
        raw = _he_border(hema, eosin, 0.5)
        return raw, _he_border(hema, eosin, max(smooth_um / pixel_size_um, 0.5))
    img = _check_gray(image)
    sigma = smooth_um / pixel_size_um
    if sigma <= 0.3:
        return img, img.astype(np.float32)
    if img.dtype.kind in "ui" and img.dtype.itemsize <= 2:
        # exact in float32: filter straight into a float32 output (no float32 copy)
        return img, ndi.gaussian_filter(img, sigma, output=np.float32)
    return img, ndi.gaussian_filter(img.astype(np.float32), sigma)


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
        hema, eosin = _he_stains(_check_rgb(image))
        return _he_border(hema, eosin, max(smooth_um / pixel_size_um, 0.5))
    return _border_pair(image, pixel_size_um, stain, smooth_um)[1]


def _check_stain(stain: str) -> str:
    key = str(stain).lower()
    if key not in _STAINS:
        raise ValueError(f"stain must be one of {_STAINS}, got {stain!r}")
    return key


def _check_gray(image) -> np.ndarray:
    img = check.plane(image, "a border-stain image",
                      hint="select the border channel and project Z first")
    return check.finite(img, "the border-stain image")


def _check_rgb(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f'stain="he" needs an RGB (Y, X, 3) image, got shape {img.shape}')
    return img


def _ridges(border: np.ndarray, sigma_px: float) -> np.ndarray:
    """Bright-ridge strength at scales sigma and 2 sigma (pixel-wise maximum), float32.

    The Sato tubeness of a 2-D image, sigma² x max(0, -smallest Hessian eigenvalue):
    one Gaussian pass per scale (the second smooths the first), the Hessian by finite
    differences of the smoothed image.
    """
    g = ndi.gaussian_filter(border, sigma_px, mode="reflect")
    fine = _tubeness(g, sigma_px)
    g = ndi.gaussian_filter(g, np.sqrt(3.0) * sigma_px, mode="reflect")
    coarse = _tubeness(g, 2.0 * sigma_px)
    del g
    return np.maximum(fine, coarse, out=fine)


def _tubeness(g: np.ndarray, sigma_px: float, rows: int = 256) -> np.ndarray:
    """sigma² x max(0, -smallest Hessian eigenvalue) of an image smoothed by sigma.

    Second differences along rows and columns (one-sided at the image edges), the
    cross derivative as ``np.gradient`` of ``np.gradient``; computed in blocks of
    rows (one row of halo) so that only the result is a full-size array.
    """
    n = g.shape[0]
    out = np.empty_like(g)
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        out[r0:r1] = _tubeness_rows(g, r0, r1, sigma_px)
    return out


def _tubeness_rows(g: np.ndarray, r0: int, r1: int, sigma_px: float) -> np.ndarray:
    """:func:`_tubeness` of rows ``r0:r1`` of ``g`` (needs rows r0 - 1 .. r1)."""
    n = g.shape[0]
    lo, hi = max(r0, 1), min(r1, n - 1)
    hrr = np.empty((r1 - r0, *g.shape[1:]), dtype=g.dtype)
    if hi > lo:
        hrr[lo - r0 : hi - r0] = g[lo + 1 : hi + 1] + g[lo - 1 : hi - 1]
        hrr[lo - r0 : hi - r0] -= 2 * g[lo:hi]
    if r0 == 0:
        hrr[0] = g[1] - g[0]
    if r1 == n:
        hrr[-1] = g[-2] - g[-1]
    gb = g[r0:r1]
    hcc = np.empty_like(gb)
    hcc[:, 1:-1] = gb[:, 2:] + gb[:, :-2]
    hcc[:, 1:-1] -= 2 * gb[:, 1:-1]
    hcc[:, 0] = gb[:, 1] - gb[:, 0]
    hcc[:, -1] = gb[:, -2] - gb[:, -1]
    a0, a1 = max(r0 - 1, 0), min(r1 + 1, n)
    gr = np.gradient(g[a0:a1], axis=0)[r0 - a0 : r0 - a0 + (r1 - r0)]
    hrc = np.gradient(gr, axis=1)
    del gr
    # smallest eigenvalue of [[hrr, hrc], [hrc, hcc]]
    mean = hrr + hcc
    mean *= 0.5
    hrr -= hcc
    hrr *= 0.5
    np.square(hrr, out=hrr)
    np.square(hrc, out=hrc)
    hrr += hrc
    np.sqrt(hrr, out=hrr)
    mean -= hrr  # smallest eigenvalue
    np.negative(mean, out=mean)
    np.maximum(mean, 0, out=mean)
    mean *= np.float32(sigma_px**2)
    return mean


def _border_mask(ridge: np.ndarray, k_mad: float) -> np.ndarray:
    sub = _subsample(ridge)
    med = float(np.median(sub))
    noise = _robust_sigma(sub)
    thr = med + k_mad * noise
    if float(sub.max()) > float(sub.min()):
        thr = max(thr, float(filters.threshold_otsu(sub)))
    return ridge > thr


def _pale(border: np.ndarray, bmask: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """H&E: ``bmask`` plus the interstitium paler than half-way to a white gap.

    The H&E border image is calibrated (fiber cytoplasm 0, white gap 1), so pixels
    above 0.5 are interstitium however wide the gap is, whereas a ridge filter marks
    only the edges of a wide pale gap (and may miss a thin cleft running along one).
    Noise in pale fibers crosses 0.5 too, in isolated specks, so a pale pixel counts
    only if it is pale at 1 µm smoothing as well (a gap at least ~2 µm wide) or its
    pale piece touches the border mask (hysteresis).
    """
    wide = ndi.gaussian_filter(border, max(1.0 / pixel_size_um, 0.5)) > 0.5
    out = bmask | wide
    del wide
    pieces, n = ndi.label(border > 0.5)
    if n == 0:
        return out
    hit = np.zeros(n + 1, dtype=bool)
    hit[pieces[out]] = True
    hit[0] = False
    out |= hit[pieces]
    return out


def _deep_pale(border: np.ndarray, pixel_size_um: float, depth_um: float = 2.0) -> np.ndarray:
    """H&E: interstitium (pale at 1 µm smoothing) more than ``depth_um`` from its edge.

    Wide pale areas (endomysial fibrosis around atrophic fibers, white gaps) have no
    ridge inside, so a basin flooded from a small fiber beside one took it in, and the
    basin's "core" level (the fiber's own brightness) came out pale: the fiber was
    rejected as a bright-interior object. Borders up to ``2 * depth_um`` wide have no
    such pixels, so basins still meet on them.
    """
    wide = ndi.gaussian_filter(border, max(1.0 / pixel_size_um, 0.5)) > 0.5
    return _edt(wide, pixel_size_um) > depth_um


def _drop_specks(bmask: np.ndarray, pixel_size_um: float, max_um: float) -> np.ndarray:
    """``bmask`` without its isolated pieces no wider than ``max_um`` (µm, bounding box).

    Fiber borders form one network; a small piece of the mask on its own lies inside
    a fiber: a central nucleus in H&E (hematoxylin), an ice-crystal hole (pale).
    Left in, it makes a hole in the distance map and the fiber
    a ring with several maxima, i.e. several seeds. Only the seeds use the mask: the
    watershed still runs on the ridge image, and the outline fills holes.
    """
    if max_um <= 0:
        return bmask
    pieces, n = ndi.label(bmask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return bmask
    small = np.zeros(n + 1, dtype=bool)
    for i, sl in enumerate(ndi.find_objects(pieces), start=1):
        extent = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) * pixel_size_um
        small[i] = extent <= max_um
    return bmask & ~small[pieces]


def _edt(mask: np.ndarray, pixel_size_um: float, rows: int = 256) -> np.ndarray:
    """Euclidean distance (µm, float32) of each ``mask`` pixel to the nearest False pixel.

    The same numbers as ``ndi.distance_transform_edt(mask, sampling=pixel_size_um)``
    cast to float32, but the distances are computed from the feature transform in
    blocks of rows (scipy builds several full-size float64 and int32 temporaries).
    """
    ft = ndi.distance_transform_edt(
        mask, sampling=pixel_size_um, return_distances=False, return_indices=True
    )
    out = np.empty(mask.shape, dtype=np.float32)
    sampling = np.float64(pixel_size_um)
    cols = np.arange(mask.shape[1], dtype=np.int32)
    for r0 in range(0, mask.shape[0], rows):
        r1 = min(r0 + rows, mask.shape[0])
        dy = (ft[0, r0:r1] - np.arange(r0, r1, dtype=np.int32)[:, None]).astype(np.float64)
        dy *= sampling
        dy *= dy
        dx = (ft[1, r0:r1] - cols).astype(np.float64)
        dx *= sampling
        dx *= dx
        dy += dx
        np.sqrt(dy, out=dy)
        out[r0:r1] = dy
    return out


def _depth(clearance: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """Clearance (distance to the nearest border pixel, µm) smoothed by 1 µm, float32."""
    return ndi.gaussian_filter(clearance, max(1.0 / pixel_size_um, 0.5))


def _seeds(depth: np.ndarray, pixel_size_um: float, p: FiberParams) -> np.ndarray:
    """(K, 2) seed pixels: depth maxima ≥ ``min_seed_depth_um`` and ≥ the spacing apart."""
    spacing_px = max(round(p.seed_spacing_um / pixel_size_um), 1)
    return peak_local_max(
        depth,
        min_distance=spacing_px,
        threshold_abs=p.min_seed_depth_um,
        exclude_border=False,
    )


def _seed_discs(seeds: np.ndarray, clearance: np.ndarray, pixel_size_um: float):
    """Marker image of the seeds grown to discs free of border, and the discs' interiors.

    Seed ``i`` becomes label ``i + 1`` on the disc of radius (its clearance less
    1 µm), which any flood from that seed fills anyway. Interior disc pixels (all
    4-neighbours in the same disc) need not go through a watershed's queue.
    """
    shape = clearance.shape
    markers = np.zeros(shape, dtype=np.int32)
    radius = clearance[tuple(seeds.T)] / pixel_size_um - max(1.0 / pixel_size_um, 1.0)
    for i in np.argsort(radius):
        r0, c0 = seeds[i]
        if radius[i] >= 2:
            rr, cc = draw.disk((r0, c0), radius[i], shape=shape)
            markers[rr, cc] = i + 1
        markers[r0, c0] = i + 1
    inner = markers > 0
    inner[1:] &= markers[1:] == markers[:-1]
    inner[:-1] &= markers[:-1] == markers[1:]
    inner[:, 1:] &= markers[:, 1:] == markers[:, :-1]
    inner[:, :-1] &= markers[:, :-1] == markers[:, 1:]
    inner[0] = inner[-1] = False
    inner[:, 0] = inner[:, -1] = False
    return markers, inner


def _unseeded_cells(bmask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Pixels of border-free cells (4-connected pieces of ``~bmask``) holding no seed.

    A cell enclosed by border with no seed is too narrow to be a fiber anywhere (every
    point lies closer than ``min_seed_depth_um`` to the border): a perimysium strand or
    an interstitial sliver between clefts. It stays background instead of being
    flooded from (and merged with) a neighbouring fiber.
    """
    cells, _ = ndi.label(~bmask)
    seeded = np.zeros(int(cells.max()) + 1, dtype=bool)
    seeded[cells[tuple(seeds.T)]] = True
    seeded[0] = True
    return ~seeded[cells]


def _flood(
    image: np.ndarray, markers: np.ndarray, inner: np.ndarray, outside: np.ndarray | None = None
) -> np.ndarray:
    """Watershed of ``image`` from disc markers; only non-interior pixels are queued.

    Pixels in ``outside`` (optional bool mask) are left unlabelled.
    """
    mask = ~inner
    if outside is not None:
        mask &= ~outside
    basins = segmentation.watershed(image, markers, mask=mask)
    del mask
    basins[inner] = markers[inner]
    return basins


def _pairs(labels: np.ndarray, depth: np.ndarray, ridge: np.ndarray):
    """Adjacent label pairs (a < b) with their depth saddle and ridge pass.

    A contact is two 4-neighbouring pixels of the two labels. Per pair: the highest,
    over its contacts, of the lower depth of the two pixels (where the depth map
    crosses the common boundary highest) and the lowest, over its contacts, of the
    higher ridge value (the lowest point of the watershed line).
    """
    keys, lows, highs = [], [], []
    n1 = np.int64(labels.max()) + 1
    for sl_a, sl_b in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        la, lb = labels[sl_a], labels[sl_b]
        hit = (la != lb) & (la > 0) & (lb > 0)
        la, lb = la[hit].astype(np.int64), lb[hit].astype(np.int64)
        keys.append(np.minimum(la, lb) * n1 + np.maximum(la, lb))
        lows.append(np.minimum(depth[sl_a][hit], depth[sl_b][hit]))
        highs.append(np.maximum(ridge[sl_a][hit], ridge[sl_b][hit]))
    key = np.concatenate(keys)
    if key.size == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float32), np.empty(0, np.float32)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    saddle = np.maximum.reduceat(np.concatenate(lows)[order], first)
    pass_ = np.minimum.reduceat(np.concatenate(highs)[order], first)
    return key[first] // n1, key[first] % n1, saddle, pass_


def _drop_weak_seeds(
    basins: np.ndarray,
    ridge: np.ndarray,
    depth: np.ndarray,
    seeds: np.ndarray,
    h_um: float,
    neck: float,
) -> np.ndarray:
    """Remove the basins of seeds that no border separates from a neighbour; re-flood.

    Basin ``i`` was flooded from seed ``i - 1`` (a maximum of the depth map).

    1. h-maxima: a seed whose depth exceeds the pass of the depth map towards a
       deeper neighbouring seed by less than ``h_um`` is dropped: two maxima of one
       fiber, or a shallow seed in an interstitial patch. The pass is estimated as
       the deepest point of the depth map on the basins' common boundary (exact where
       the boundary crosses a gap in the border, an upper bound elsewhere).
    2. Then, of two neighbouring basins, the one whose seed lies higher on the ridge
       image is dropped when the lowest point of the ridge image on their common
       boundary is below that seed level (no ridge higher than the seed separates it
       from the neighbour, so a flood from single seed pixels reaches it from the
       neighbour first) *and* the depth map crosses the boundary at more than half
       ``neck`` times the seed's depth (a wide opening: not a gap in a border).

    Dropped basins are flooded again, locally, from their neighbours over the ridge
    image, as if their seeds had never been there.
    """
    n = len(seeds)
    if n < 2:
        return basins
    peak = depth[tuple(seeds.T)]
    level = ridge[tuple(seeds.T)]
    gone = np.zeros(n + 1, dtype=bool)
    if h_um > 0:
        a, b, saddle, _ = _pairs(basins, depth, ridge)
        a_low = (peak[a - 1] < peak[b - 1]) | ((peak[a - 1] == peak[b - 1]) & (a > b))
        low = np.where(a_low, a, b)
        gone[low[saddle > peak[low - 1] - h_um]] = True
        basins = _reflood(basins, ridge, gone)
    a, b, saddle, pass_ = _pairs(basins, depth, ridge)
    a_high = (level[a - 1] > level[b - 1]) | ((level[a - 1] == level[b - 1]) & (a > b))
    high = np.where(a_high, a, b)
    if neck <= 0:
        return basins
    weak = (pass_ < level[high - 1]) & (saddle > neck * peak[high - 1])
    gone2 = np.zeros(n + 1, dtype=bool)
    gone2[high[weak]] = True
    return _reflood(basins, ridge, gone2)


def _reflood(basins: np.ndarray, ridge: np.ndarray, gone: np.ndarray) -> np.ndarray:
    """Flood the basins flagged in ``gone`` (by label) again from their neighbours.

    Each connected piece of the dropped basins (with its one-pixel ring of
    neighbours) is flooded on its own bounding box: a watershed confined by its mask
    never crosses between pieces, so this equals one flood of the whole image at a
    fraction of the memory. ``basins`` is updated in place and returned.
    """
    if not gone.any():
        return basins
    region = gone[basins]
    near = ndi.binary_dilation(region)
    del region
    pieces, _ = ndi.label(near)  # 4-connected, as the watershed's neighbourhood
    del near
    for i, sl in enumerate(ndi.find_objects(pieces), start=1):
        if sl is None:
            continue
        b = basins[sl]
        mine = pieces[sl] == i
        region = mine & gone[b]
        # only the ring around the dropped basins seeds the local flood (every marker
        # pixel would otherwise enter the watershed's queue)
        ring = np.where(mine & ~region, b, 0)
        flooded = segmentation.watershed(ridge[sl], ring, mask=mine)
        b[region] = flooded[region]
    return basins


def _inner_edges(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels with a 4-neighbour of another label (find_boundaries "inner")."""
    edge = np.zeros(labels.shape, dtype=bool)
    d = labels[1:] != labels[:-1]
    edge[1:] |= d
    edge[:-1] |= d
    d = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= d
    edge[:, :-1] |= d
    edge &= labels > 0
    return edge


def _group_medians(parts, n_groups: int) -> np.ndarray:
    """Median of the values per group 0..n_groups-1 (NaN when empty); one float64 sort.

    ``parts`` is a sequence of ``(values, groups)`` array pairs (any real dtype / any
    integer dtype). Each value is packed with its group id into one sortable float64
    key (``group + value scaled to [0, 0.5]``), written part by part into one
    preallocated array; sorting the keys sorts by group, then by value, and the
    middle elements of each group are read back.
    """
    parts = [(v, g) for v, g in parts if v.size]
    total = sum(v.size for v, _ in parts)
    if total:
        lo = min(float(v.min()) for v, _ in parts)
        hi = max(float(v.max()) for v, _ in parts)
    else:
        lo, hi = 0.0, 1.0
    scale = 0.5 / (hi - lo) if hi > lo else 0.0
    key = np.empty(total, dtype=np.float64)
    counts = np.zeros(n_groups, dtype=np.int64)
    pos = 0
    for v, g in parts:
        k = key[pos : pos + v.size]
        k[:] = g
        t = v.astype(np.float64)
        t -= lo
        t *= scale
        k += t
        del t
        counts += np.bincount(g, minlength=n_groups)[:n_groups]
        pos += v.size
    key.sort()
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full(n_groups, np.nan)
    ok = counts > 0
    g = np.flatnonzero(ok)
    i_lo = start[ok] + (counts[ok] - 1) // 2
    i_hi = start[ok] + counts[ok] // 2
    frac = (key[i_lo] - g + key[i_hi] - g) / 2
    out[ok] = lo + frac / scale if scale > 0 else lo
    return out


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
    edge = _inner_edges(labels)
    # distance (µm) to the crest, which lies half a pixel beyond the edge pixels
    dist = _edt(~edge & (labels > 0), pixel_size_um)
    dist += np.float32(0.5 * pixel_size_um)
    max_depth = np.zeros(n + 1, np.float32)
    np.maximum.at(max_depth, labels.ravel(), dist.ravel())

    step = pixel_size_um
    n_rings = max(int(np.ceil(max_halfwidth_um / step)), 2)
    flat_lab = labels.ravel()
    flat_dist = dist.ravel()
    flat_raw = raw.ravel()
    # groups: cores 0..n-1, rims n..2n-1, rings 2n + (label-1) * n_rings + ring;
    # boolean masks select the pixels (no int64 index arrays), in raster order
    gtype = np.int32 if 2 * n + n * n_rings < 2**31 else np.int64
    core = flat_dist >= 0.5 * max_depth[flat_lab]
    core &= flat_lab > 0
    core_groups = flat_lab[core].astype(gtype)
    core_groups -= 1
    core_vals = flat_raw[core].astype(np.float32)
    del core
    rim = edge.ravel()
    rim_groups = flat_lab[rim].astype(gtype)
    rim_groups += n - 1
    rim_vals = flat_raw[rim].astype(np.float32)
    ring = flat_dist - np.float32(0.5 * pixel_size_um)
    ring /= np.float32(step)
    ring = ring.astype(np.int32)
    band = ring < n_rings
    band &= flat_lab > 0
    ring_group = flat_lab[band].astype(gtype)
    ring_group -= 1
    ring_group *= n_rings
    ring_group += ring[band]
    del ring
    band_dist = flat_dist[band]
    band_vals = flat_raw[band].astype(np.float32)
    del band
    med = _group_medians(
        [(core_vals, core_groups), (rim_vals, rim_groups), (band_vals, ring_group + 2 * n)],
        2 * n + n * n_rings,
    )
    del core_vals, core_groups, rim_vals, rim_groups, band_vals
    core_level = np.nan_to_num(med[:n], nan=0.0)
    rim_level = np.nan_to_num(med[n : 2 * n], nan=np.inf)
    span = np.maximum(rim_level - core_level, 1e-12)
    prof = (med[2 * n :].reshape(n, n_rings) - core_level[:, None]) / span[:, None]
    n_px = np.bincount(ring_group, minlength=n * n_rings)
    d_sum = np.bincount(ring_group, weights=band_dist, minlength=n * n_rings)
    del ring_group, band_dist
    pos = np.full(n * n_rings, np.nan)
    np.divide(d_sum, n_px, out=pos, where=n_px > 0)
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
    fibers = (dist > cut_lut[labels]) & (smooth < bright_lut.astype(np.float32)[labels])
    return np.where(fibers, labels, 0), core_level, rim_level


def _clean(fibers: np.ndarray, seeds: np.ndarray, radius_px: float) -> np.ndarray:
    """Open each fiber by a disc, keep the piece holding its seed, fill its holes.

    Vectorised over all fibers: pixels touching another fiber count as outside, so one
    binary opening of the foreground opens every fiber separately.
    """
    footprint = morphology.disk(max(round(radius_px), 1))
    inside = (fibers > 0) & ~_touches_other(fibers)
    eroded = ndi.binary_erosion(inside, structure=footprint)
    opened = ndi.binary_dilation(eroded, structure=footprint)
    del eroded, inside
    opened = np.where(opened, fibers, 0)
    # pieces: connected parts of one fiber label (skimage labels equal values only)
    pieces = measure.label(opened, connectivity=1)
    n_pieces = int(pieces.max())
    if n_pieces == 0:
        return opened
    owner = np.zeros(n_pieces + 1, np.int64)
    owner[pieces.ravel()] = opened.ravel()
    size = np.bincount(pieces.ravel(), minlength=n_pieces + 1).astype(np.float64)
    seeded = np.zeros(n_pieces + 1, bool)
    seeded[pieces[tuple(seeds.T)]] = True
    score = size + seeded * (size.max() + 1)
    # per owner, the best-scoring piece
    order = np.lexsort((score[1:], owner[1:])) + 1
    last = np.r_[owner[order][1:] != owner[order][:-1], True]
    keep = np.zeros(n_pieces + 1, bool)
    keep[order[last]] = True
    keep[0] = False
    out = np.where(keep[pieces], opened, 0)
    del pieces
    return _fill_holes(out)


def _touches_other(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of a different non-zero label."""
    hit = np.zeros(labels.shape, dtype=bool)
    d = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
    hit[1:] |= d
    hit[:-1] |= d
    d = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    hit[:, 1:] |= d
    hit[:, :-1] |= d
    return hit


def _fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes enclosed by a single label (holes between several labels stay)."""
    fg = labels > 0
    holes = ndi.binary_fill_holes(fg) & ~fg
    if not holes.any():
        return labels
    hole_lab, n = ndi.label(holes)
    # the labels 4-adjacent to each hole: fill when there is exactly one
    lo = np.full(n + 1, np.iinfo(np.int64).max)
    hi = np.zeros(n + 1, np.int64)
    for h_, l_ in (
        (hole_lab[1:], labels[:-1]),
        (hole_lab[:-1], labels[1:]),
        (hole_lab[:, 1:], labels[:, :-1]),
        (hole_lab[:, :-1], labels[:, 1:]),
    ):
        hit = (h_ > 0) & (l_ > 0)
        np.minimum.at(lo, h_[hit], l_[hit].astype(np.int64))
        np.maximum.at(hi, h_[hit], l_[hit].astype(np.int64))
    fill = np.where(lo == hi, hi, 0).astype(labels.dtype)
    fill[0] = 0
    return np.where(holes, fill[hole_lab], labels)


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
    pixel_size_um = check.pixel_size(pixel_size_um)
    p = params
    drop_edge = p.exclude_border if exclude_border is None else bool(exclude_border)
    raw, border = _border_pair(image, pixel_size_um, stain, p.smooth_um)
    if float(border.max()) == float(border.min()):
        return np.zeros(border.shape, dtype=np.int32)

    ridge = _ridges(border, max(p.ridge_sigma_um / pixel_size_um, 0.7))
    bmask = _border_mask(ridge, p.ridge_threshold_mad)
    if stain == "he":
        bmask = _pale(border, bmask, pixel_size_um)
        bmask = _drop_specks(bmask, pixel_size_um, p.max_speck_um)
    clearance = _edt(~bmask, pixel_size_um)
    depth = _depth(clearance, pixel_size_um)
    seeds = _seeds(depth, pixel_size_um, p)
    if len(seeds) == 0:
        return np.zeros(border.shape, dtype=np.int32)
    outside = None
    if stain == "he":
        outside = _unseeded_cells(bmask, seeds) | _deep_pale(border, pixel_size_um)
    del bmask
    discs, inner = _seed_discs(seeds, clearance, pixel_size_um)
    del clearance
    basins = _flood(ridge, discs, inner, outside)
    del outside
    del discs, inner
    basins = _drop_weak_seeds(basins, ridge, depth, seeds, p.seed_h_um, p.seed_neck_fraction)
    del ridge, depth
    fibers, core_level, rim_level = _outline(
        basins, raw, border, pixel_size_um, p.outline_fraction, max(4.0, 4 * p.ridge_sigma_um)
    )
    noise = pixel_noise(raw)  # NaN for an image under 2 pixels wide: no blank-image test
    # fluorescence: raw is the input image itself (no copy), kept for the slide test
    raw = None if stain == "he" else raw
    del basins
    fibers = _clean(fibers, seeds, max(p.ridge_sigma_um / pixel_size_um, 1.0))
    return _reject(
        fibers, border, core_level, rim_level, pixel_size_um, p, drop_edge, noise, slide=raw
    )


def _solidity(labels: np.ndarray, enough: float):
    """Labels, pixel areas and solidities (area / pixel-corner hull area).

    The hull lies inside each label's bounding octagon (extremes of r, c, r + c and
    r - c over its pixel corners), whose area follows from its runs; labels whose
    area / octagon area already reaches ``enough`` get that lower bound, the others
    their exact hull area (one convex hull per label).
    """
    n = int(labels.max(initial=0))
    lab, r, cs, ce = _runs(labels, 0)
    big = np.iinfo(np.int64).max
    ext = {}
    for name, vals, ufunc, init in (
        ("r0", r, np.minimum, big),
        ("r1", r, np.maximum, -big),
        ("c0", cs, np.minimum, big),
        ("c1", ce, np.maximum, -big),
        ("u0", r + cs, np.minimum, big),
        ("u1", r + ce, np.maximum, -big),
        ("v0", r - ce, np.minimum, big),
        ("v1", r - cs, np.maximum, -big),
    ):
        acc = np.full(n + 1, init, dtype=np.int64)
        ufunc.at(acc, lab, vals.astype(np.int64))
        ext[name] = acc.astype(np.float64)
    area = np.bincount(lab, weights=(ce - cs + 1).astype(np.float64), minlength=n + 1)
    present = np.flatnonzero(area[1:] > 0) + 1
    e = {k: v[present] for k, v in ext.items()}
    top, bottom = e["r0"] - 0.5, e["r1"] + 0.5
    left, right = e["c0"] - 0.5, e["c1"] + 0.5
    legs = (
        np.maximum(e["u0"] - 1 - (top + left), 0),  # top-left, cut by r + c >= u0 - 1
        np.maximum(e["v0"] - 1 - (top - right), 0),  # top-right, r - c >= v0 - 1
        np.maximum((bottom - left) - (e["v1"] + 1), 0),  # bottom-left, r - c <= v1 + 1
        np.maximum((bottom + right) - (e["u1"] + 1), 0),  # bottom-right, r + c <= u1 + 1
    )
    width, height = right - left, bottom - top
    box = width * height
    tl_, tr_, bl_, br_ = legs
    separate = (
        (tl_ + tr_ <= width) & (bl_ + br_ <= width) & (tl_ + bl_ <= height) & (tr_ + br_ <= height)
    )
    octagon = np.where(separate, box - (tl_**2 + tr_**2 + bl_**2 + br_**2) / 2, box)
    a = area[present]
    solidity = a / octagon
    unsure = solidity < enough
    if unsure.any():
        lut = np.zeros(n + 1, dtype=labels.dtype)
        lut[present[unsure]] = present[unsure]
        geo = _label_geometry(lut[labels], 1.0, perimeter=False)
        solidity[unsure] = geo["area_px"] / geo["hull_area"]
    return present, a, solidity


def _slide_level(
    raw: np.ndarray,
    border: np.ndarray,
    typical_core: float,
    typical_area_um2: float,
    pixel_size_um: float,
) -> float | None:
    """Level (in ``raw``) of the bare slide around the section; None if none is in view.

    The slide is a dark region (below half-way from the image's 0.5th percentile to the
    typical fiber interior, at 2 µm smoothing) that reaches the image edge and is larger
    than four typical fibers: a fiber interior, even a dim one, is enclosed by its
    border and no larger than one fiber. ``border`` is ``raw`` lightly smoothed; the level
    is the median of ``raw`` more than 2 µm inside that region (away from the blurred
    tissue edge), as the fibers' core levels are medians of ``raw``.
    """
    sm = ndi.gaussian_filter(border, max(np.sqrt(2.0**2 - 0.5**2) / pixel_size_um, 0.5))
    s0 = float(np.percentile(_subsample(sm), 0.5))
    if not typical_core > s0:
        return None
    comps, n = ndi.label(sm < np.float32(s0 + 0.5 * (typical_core - s0)))
    del sm
    if n == 0:
        return None
    size = np.bincount(comps.ravel(), minlength=n + 1) * pixel_size_um**2
    at_edge = np.zeros(n + 1, dtype=bool)
    at_edge[np.concatenate([comps[0], comps[-1], comps[:, 0], comps[:, -1]])] = True
    big = at_edge & (size > 4 * typical_area_um2)
    big[0] = False
    if not big.any():
        return None
    deep = _edt(big[comps], pixel_size_um) > 2.0
    del comps
    if not deep.any():
        return None
    return float(np.median(raw[deep]))


def _reject(
    fibers: np.ndarray,
    border: np.ndarray,
    core_level: np.ndarray,
    rim_level: np.ndarray,
    pixel_size_um: float,
    p: FiberParams,
    drop_edge: bool,
    noise: float = 0.0,
    slide: np.ndarray | None = None,
) -> np.ndarray:
    """Relabelled ``fibers`` without the objects that fail the rejection tests.

    ``slide``: the raw fluorescence image (levels comparable with ``core_level``) to
    test objects against the bare slide, or None (H&E) to skip that test.
    """
    lab, area_px, solidity = _solidity(fibers, p.min_solidity)
    area_um2 = area_px * pixel_size_um**2
    keep = (area_um2 >= p.min_area_um2) & (area_um2 <= p.max_area_um2)
    keep &= solidity >= p.min_solidity
    if noise > 0 and p.min_border_snr > 0 and keep.any():
        # no fiber pattern at all (blank slide, background only): the watershed still
        # finds cells between noise ridges, but their borders are barely above their
        # interiors, whereas real fibers' borders stand out of the pixel noise
        typical_step = float(np.median((rim_level - core_level)[lab[keep] - 1]))
        if typical_step < p.min_border_snr * noise:
            keep[:] = False
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
    if slide is not None and p.min_tissue_level > 0 and keep.any():
        # empty slide between the outermost fibers of a section (a tongue of
        # background cut into convex pieces by watershed lines) is no fiber: its
        # interior is as dark as the slide, a fiber's sarcoplasm is brighter
        typical_core = float(np.median(core_level[lab[keep] - 1]))
        level = _slide_level(
            slide, border, typical_core, float(np.median(area_um2[keep])), pixel_size_um
        )
        typical_rim = float(np.median(rim_level[lab[keep] - 1]))
        if level is not None and typical_core - level > 0.03 * (typical_rim - level):
            cut = level + p.min_tissue_level * (typical_core - level)
            keep &= core_level[lab - 1] >= cut
    if drop_edge:
        edge = np.concatenate([fibers[0], fibers[-1], fibers[:, 0], fibers[:, -1]])
        keep &= ~np.isin(lab, edge)
    lut = np.zeros(int(fibers.max()) + 1, dtype=np.int32)
    kept = lab[keep]
    lut[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lut[fibers]
