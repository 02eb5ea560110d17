"""ChAT+ motor neurons: large cholinergic somata of the ventral horn.

Method (every scale in µm, converted with the pixel size):

1. **Background.** A smooth background is estimated at a scale just above the
   largest soma (``background_radius_um``, default 1.5 x ``soma_diameter_um``): the
   image is block-averaged to ~2 µm bins, opened with a disk of that radius
   (which removes every soma, whatever its brightness, and a touching pair),
   smoothed and upsampled, then subtracted. This removes vignetting, tissue
   autofluorescence and uneven neuropil staining (grey vs white matter,
   antibody penetration) down to swellings a few soma diameters across; the
   rest of a swelling is handled by the local cut and the edge test below.
2. **Threshold.** On the background-free image smoothed at ``smooth_um`` the
   threshold is the larger of Otsu's threshold and a noise floor
   ``median + threshold_snr * sigma`` (sigma = 1.4826 x MAD of the smoothed image,
   a robust estimate dominated by background pixels). Otsu separates somata from
   neuropil when somata are a fair part of the image; the noise floor takes
   over when they are few or the image is noisy.
   Each object is then cut at half way between its local surround and its own
   brightness. An object holding several somata (touching, or joined by
   ChAT+ dendrites and neuropil above the low threshold) is first divided
   among them: each hill of the image smoothed at a quarter soma diameter
   whose top lies more than 3 µm inside the object (not on a dendrite) is a
   soma, and each soma gets its own brightness (from its pixels that deep)
   and surround; otherwise a dim soma joined to a bright one would be cut at
   the bright one's half-maximum and lost. The surround is the median of a ring 2-5 µm outside the cut
   (at least the image median), re-measured after each cut until it stops
   rising, so a soma on a background swelling is cut at its own edge, not
   where the swelling fades. The cut is applied at ``smooth_um`` and, added to that, on the image smoothed at the finer
   ``outline_smooth_um`` (0.5 µm): at ``smooth_um`` alone the blur rounds off
   corners and the tapering tips of dendrite stumps (0.5-1 µm inside the true
   outline there, puncta beside them fall outside the 2 µm band).
3. **Dim nucleus.** ChAT is cytoplasmic, so the nucleus is a dim hole inside
   the soma; holes smaller than ``max_hole_area_um2`` are filled (larger holes,
   such as the space enclosed by a ring of touching cells, are not), after a
   closing at 1 µm that seals one-pixel gaps in the rim. A nucleus near the soma
   edge has only a thin rim of cytoplasm there, which blurs below the cut and
   leaves the nucleus open, a bay; it is found as the part of the soma cut at
   the lower ``nucleus_level`` (nucleus still above it, neuropil below) that
   lies more than two smoothing widths inside that outline, and is filled too.
   The image edge is no outline there: the nucleus of a soma cut by the image
   edge is filled like one behind a thin rim.
4. **Dendrites.** An opening with a disk of diameter ``dendrite_width_um``
   removes dendrites and axons thinner than that. Wider processes are judged
   by their shape after splitting (step 5): each soma's body is its opening by
   a disk of half its inscribed radius, and a process beyond the body longer
   than ``stump_length_ratio`` times its base width is a dendrite and is cut
   off at the body; a short stump (about as long as wide) stays with the soma,
   as in manual outlines.
5. **Touching somata.** Markers are maxima of the Euclidean distance transform
   (µm) at least ``min_separation_um`` apart (default half a soma diameter) and
   at least ``split_prominence_um`` above the saddle to any higher maximum; a
   watershed on the distance transform splits the mask.
6. **Size and edge.** Regions smaller than ``min_area_um2`` (300 µm², the alpha motor
   neuron criterion) are ChAT+ interneurons or gamma motor neurons and are
   dropped; optionally regions larger than ``max_area_um2`` and regions
   touching the image border. A soma has a sharp outline: the brightness step
   from a 2 µm band inside its outline to a ring 1-3 µm outside must reach
   ``edge_contrast`` times the seed level; a background swelling that passed
   the thresholds changes little over a few µm and is dropped. A region below
   its own half-maximum over more than half its area is a closed loop of
   ChAT+ processes around neuropil (its hole filled like a nucleus; a nucleus
   is 16-25 % of a motor neuron's area) and is dropped.

Examples
--------
>>> import numpy as np
>>> yy, xx = np.mgrid[:200, :200]
>>> img = np.full((200, 200), 100.0)
>>> img[(yy - 100) ** 2 + (xx - 60) ** 2 < 30 ** 2] += 400     # 30 px = 15 µm radius
>>> img[(yy - 100) ** 2 + (xx - 160) ** 2 < 10 ** 2] += 400    # small ChAT+ cell
>>> labels = segment_motor_neurons(img, pixel_size_um=0.5)
>>> int(labels.max()), labels.dtype.name
(1, 'int32')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from skimage import feature, filters, graph, measure, morphology, segmentation, transform

from .. import _validate as check
from ..measure.synapses import outline_length_um
from ._cells import grow_box, open_disk

__all__ = [
    "MotorNeuronParams",
    "background_bin_px",
    "background_radius_um",
    "foreground",
    "measure_motor_neurons",
    "remove_background",
    "segment_motor_neurons",
    "threshold_levels",
]

_MAD_TO_SIGMA = 1.4826
# a nucleus is enclosed by cytoplasm on most of its outline (a gap in a thin rim
# is a small part of it); a notch between dendrite stumps is open on one side
_MIN_ENCLOSURE = 0.7
# the soma body is the opening of each soma by a disk of this fraction of its
# inscribed radius: it keeps a round or lobed body whole and takes off every
# process narrower than the soma's radius
_BODY_FRACTION = 0.5
# the outline band (inside) and ring (outside, beyond the blur of the edge)
# whose brightness difference is a soma's edge contrast, µm
_EDGE_BAND_UM = 2.0
_EDGE_RING_UM = (1.0, 3.0)
# rounds of the local-base estimate of each object's half-maximum cut, and its
# ring (µm outside the cut: beyond the blur of the soma's own edge)
_LOCAL_ROUNDS = 6
_LOCAL_RING_UM = (2.0, 5.0)
# a region darker than its own half-maximum over more than this fraction of
# its area is a closed loop of processes around neuropil, not a soma around its
# nucleus (a motor neuron's nucleus is 40-50 % of its diameter: 16-25 % of its
# area; up to 0.39 measured on phantoms)
_MAX_DARK_FRACTION = 0.5
# a soma's brightness (the top of its half-maximum cut) is read from the
# pixels deeper than this inside its object, µm: half the widest dendrite base
_BODY_DEPTH_UM = 3.0
_COLUMNS = ("label", "y_um", "x_um", "area_um2", "perimeter_um", "equivalent_diameter_um")


@dataclass(frozen=True)
class MotorNeuronParams:
    """Parameters of :func:`segment_motor_neurons`.

    Parameters
    ----------
    min_area_um2 : float
        Smallest motor-neuron soma (µm²); smaller ChAT+ cells are excluded
        (contract default 300 µm², about 20 µm diameter).
    max_area_um2 : float or None
        Largest soma (µm²); None keeps every size.
    soma_diameter_um : float
        Typical soma diameter; sets the default background scale and the
        minimum separation of touching somata.
    background_radius_um : float or None
        Radius of the background opening (µm); default 1.5 x ``soma_diameter_um``
        (30 µm: larger than the largest soma's radius, small enough that
        autofluorescent haze and uneven staining tens of µm across go to the
        background).
    smooth_um : float
        Gaussian sigma (µm) of the noise smoothing before thresholding.
    outline_smooth_um : float or None
        Gaussian sigma (µm) of a second, finer smoothing: pixels of a soma above
        its half-maximum cut at this scale are added to its outline (the
        objects and levels are found at ``smooth_um``, whose blur rounds off
        corners and shortens tapering dendrite stumps). None uses ``smooth_um``
        only.
    threshold_snr : float
        Noise floor of the threshold in robust standard deviations.
    max_hole_area_um2 : float
        Holes (the dim nucleus) up to this area are filled.
    dendrite_width_um : float
        Processes thinner than this are cut off by an opening.
    min_separation_um : float or None
        Minimum distance between the centres of two touching somata; default
        half of ``soma_diameter_um``.
    split_prominence_um : float
        A distance-transform maximum must rise this much above the saddle to a
        higher one to seed its own soma (stops over-splitting elongated somata).
    stump_length_ratio : float or None
        A process leaving the soma body (the soma opened by a disk of half its
        inscribed radius) that is longer than this many times its own width at
        the base is a dendrite, not a stump: it is cut off at the body. Short
        stumps (about as long as wide, as in manual outlines) stay. None keeps
        every process wider than ``dendrite_width_um``.
    edge_contrast : float
        A soma has a sharp outline: the median brightness of its outermost
        ``_EDGE_BAND_UM`` inside its outline must exceed that of a ring just
        outside it by at least this fraction of the seed level (the hysteresis
        ``high`` level above the median; both on the ``smooth_um`` image).
        Smooth background swellings (autofluorescent haze, uneven staining
        tens of µm across) that pass the thresholds change little over a few
        µm and are dropped. 0 keeps every object.
    exclude_border : bool
        Drop somata touching the image edge (their area is unknown).
    nucleus_level : float
        Brightness of the dim nucleus relative to the soma's (0-1; the soma is
        cut at 0.5). Pixels above this level well inside a soma count as
        nucleus and are filled even where a thin rim leaves the nucleus open to
        the outside; 0 fills enclosed nuclei only.
    fixed_levels : (float, float, float, float) or None
        ``(low, high, floor, median)`` of the background-removed, smoothed image
        (see :func:`threshold_levels`) to use instead of this image's own: for
        tiled analysis, the whole image's. None (default) measures them.
    origin_px : (int, int)
        Image pixel of this image's first pixel when it is a window of a
        larger image: the background's block averages are then pooled on the
        larger image's blocks. ``(0, 0)`` for a whole image.
    """

    min_area_um2: float = 300.0
    max_area_um2: float | None = None
    soma_diameter_um: float = 20.0
    background_radius_um: float | None = None
    smooth_um: float = 1.0
    outline_smooth_um: float | None = 0.5
    threshold_snr: float = 3.0
    max_hole_area_um2: float = 400.0
    dendrite_width_um: float = 1.5
    min_separation_um: float | None = None
    split_prominence_um: float = 1.5
    stump_length_ratio: float | None = 3.0
    edge_contrast: float = 0.6
    exclude_border: bool = False
    nucleus_level: float = 0.2
    fixed_levels: tuple[float, float, float, float] | None = None
    origin_px: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for key in ("soma_diameter_um", "smooth_um", "threshold_snr", "dendrite_width_um"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"MotorNeuronParams.{key} must be a positive number; got {v!r}")
        for key in ("min_area_um2", "max_hole_area_um2", "split_prominence_um", "edge_contrast"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"MotorNeuronParams.{key} must be >= 0; got {v!r}")
        for key in ("max_area_um2", "background_radius_um", "min_separation_um", "outline_smooth_um",
                    "stump_length_ratio"):
            v = getattr(self, key)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ValueError(f"MotorNeuronParams.{key} must be positive or None; got {v!r}")
        if not (np.isfinite(self.nucleus_level) and 0 <= self.nucleus_level < 0.5):
            raise ValueError("MotorNeuronParams.nucleus_level must be in [0, 0.5); "
                             f"got {self.nucleus_level!r}")
        if self.max_area_um2 is not None and self.max_area_um2 <= self.min_area_um2:
            raise ValueError("MotorNeuronParams.max_area_um2 must exceed min_area_um2")
        if self.fixed_levels is not None:
            lv = tuple(float(v) for v in self.fixed_levels)
            if len(lv) != 4 or not all(np.isfinite(lv)) or not (lv[3] <= lv[2] <= lv[0] <= lv[1]):
                raise ValueError("MotorNeuronParams.fixed_levels must be finite (low, high, floor, median) "
                                 f"with median <= floor <= low <= high; got {self.fixed_levels!r}")
            object.__setattr__(self, "fixed_levels", lv)
        origin = tuple(self.origin_px)
        if len(origin) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in origin):
            raise ValueError(f"MotorNeuronParams.origin_px must be two integers >= 0; got {self.origin_px!r}")
        object.__setattr__(self, "origin_px", (int(origin[0]), int(origin[1])))


def _check(image, pixel_size_um: float) -> np.ndarray:
    """The image as float32 after the shared input checks."""
    check.pixel_size(pixel_size_um)
    arr = check.plane(image)
    return check.finite(arr.astype(np.float32), "the image")


def _disk(radius_px: float) -> np.ndarray:
    """Pixels whose centre lies within ``radius_px`` (at least 1) of the centre: a disk
    of that radius in physical terms, not rounded to whole pixels."""
    r = max(float(radius_px), 1.0)
    h = int(np.floor(r + 1e-9))
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    return (yy**2 + xx**2) <= r * r + 1e-9


def _closing(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary closing that treats the outside of the image as background-free."""
    r = footprint.shape[0] // 2 + 1
    padded = np.pad(mask, r, mode="edge")
    return ndi.binary_closing(padded, structure=footprint)[r:-r, r:-r]


def background_radius_um(params: MotorNeuronParams | None = None) -> float:
    """Radius (µm) of the background opening: ``background_radius_um`` or 1.5 soma diameters.

    The opening's disk (3 soma diameters across) fits inside no soma, nor a
    touching pair, so every soma leaves the background; a background swelling
    wider than the disk stays in it and is subtracted.

    Examples
    --------
    >>> background_radius_um()
    30.0
    """
    prm = MotorNeuronParams() if params is None else params
    return float(prm.background_radius_um or 1.5 * prm.soma_diameter_um)


def _bin_px(pixel_size_um: float, radius_um: float, bin_um: float) -> int:
    return max(1, round(max(bin_um, radius_um / 10.0) / pixel_size_um))


def background_bin_px(pixel_size_um: float, params: MotorNeuronParams | None = None) -> int:
    """Side (pixels) of the blocks :func:`segment_motor_neurons` averages before its background opening.

    Blocks of max(2 µm, radius / 10) are pooled from the image's first pixel.

    Examples
    --------
    >>> background_bin_px(0.5)
    6
    """
    return _bin_px(float(pixel_size_um), background_radius_um(params), 2.0)


def remove_background(image, *, pixel_size_um: float, radius_um: float,
                      bin_um: float = 2.0, origin_px: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Subtract a smooth background estimated by a large morphological opening.

    Parameters
    ----------
    image : array-like, shape (Y, X)
    pixel_size_um : float
        Lateral pixel size (µm).
    radius_um : float
        Radius of the opening (µm): objects narrower than twice this are removed
        from the background estimate, so it must exceed the largest soma radius.
    bin_um : float
        The opening runs on block averages of at least ``bin_um`` (and at least a
        tenth of the radius): fast, and it averages the noise.
    origin_px : (int, int)
        Image pixel of ``image``'s first pixel in a larger image: blocks are
        those of the larger image (the first ones, cut by the edge, are
        completed with edge values).

    Returns
    -------
    ndarray of float32, shape (Y, X)
        Image minus background (can be slightly negative).

    Examples
    --------
    >>> ramp = np.tile(np.linspace(100, 200, 64), (64, 1))
    >>> flat = remove_background(ramp, pixel_size_um=1.0, radius_um=10)
    >>> bool(np.abs(flat[:, 16:48]).max() < 1)
    True
    """
    img = _check(image, pixel_size_um)
    f = _bin_px(pixel_size_um, radius_um, bin_um)
    ay, ax = int(origin_px[0]) % f, int(origin_px[1]) % f
    # pad to whole blocks with edge values so that every block is a true average
    full = np.pad(img, ((ay, -(img.shape[0] + ay) % f), (ax, -(img.shape[1] + ax) % f)), mode="edge")
    small = measure.block_reduce(full, (f, f), np.mean) if f > 1 else full
    r = radius_um / (pixel_size_um * f)
    pad = int(np.ceil(r)) + 1
    padded = np.pad(small, pad, mode="edge")
    opened = morphology.opening(padded, _disk(r))
    bg_small = ndi.gaussian_filter(opened, max(r / 2, 1.0), mode="nearest")[pad:-pad, pad:-pad]
    bg = transform.resize(bg_small.astype(np.float32), full.shape, order=1, mode="edge",
                          anti_aliasing=False)
    bg = bg[ay : ay + img.shape[0], ax : ax + img.shape[1]]
    return img - bg


def foreground(chat, *, pixel_size_um: float, params: MotorNeuronParams | None = None) -> np.ndarray:
    """The background-removed, smoothed ChAT image that :func:`segment_motor_neurons` thresholds.

    Parameters
    ----------
    chat : array-like, shape (Y, X)
    pixel_size_um : float
    params : MotorNeuronParams, optional
        Uses ``background_radius_um``, ``smooth_um`` and ``origin_px``.

    Returns
    -------
    ndarray of float32, shape (Y, X)

    Examples
    --------
    >>> foreground(np.ones((32, 32)), pixel_size_um=1.0).shape
    (32, 32)
    """
    prm = MotorNeuronParams() if params is None else params
    img = _check(chat, pixel_size_um)
    ps = float(pixel_size_um)
    fg = remove_background(img, pixel_size_um=ps, radius_um=background_radius_um(prm),
                           origin_px=prm.origin_px)
    return ndi.gaussian_filter(fg, prm.smooth_um / ps, mode="nearest")


def threshold_levels(values, *, threshold_snr: float = 3.0) -> tuple[float, float, float, float]:
    """``(low, high, floor, median)`` of :func:`segment_motor_neurons` from its smoothed image's values.

    Hysteresis levels from Otsu's level, the noise floor (median +
    ``threshold_snr`` robust sigma) and the median. For tiled analysis,
    run it on the whole image's values (or a regular sample of them) and pass
    the result as ``MotorNeuronParams.fixed_levels``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = np.r_[rng.normal(0, 1, 800), rng.normal(40, 1, 200)]
    >>> low, high, floor, median = threshold_levels(v)
    >>> bool(median < floor <= low <= high < 40)
    True
    """
    arr = np.asarray(values, dtype=np.float32).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError("threshold_levels needs finite values")
    low, high, floor = _thresholds(arr, threshold_snr)
    return low, high, floor, float(np.median(arr))


def _thresholds(smoothed: np.ndarray, k: float) -> tuple[float, float, float]:
    """(low, high) hysteresis thresholds from Otsu's level, both above the noise
    floor (``median + k`` robust sigma, returned third)."""
    med = float(np.median(smoothed))
    sd = float(np.median(np.abs(smoothed - med))) * _MAD_TO_SIGMA
    floor = med + k * sd
    try:
        otsu = float(filters.threshold_otsu(smoothed))
    except ValueError:  # a constant image
        otsu = floor
    otsu = max(floor, otsu)
    # seeds reach down to half of Otsu's level (dim somata: ALS neurons lose ChAT),
    # candidate extents to a quarter of it; each object is then cut at its own
    # half-maximum (see _half_max_mask)
    high = max(floor, med + 0.5 * (otsu - med))
    low = max(floor, med + 0.25 * (otsu - med))
    return low, high, floor


def _half_max_mask(smoothed: np.ndarray, low: float, high: float, base: float, *,
                   nucleus_level: float = 0.0, depth_px: float = 1.0,
                   max_hole_px: int = 0, floors: tuple[float, ...] = (),
                   edge: np.ndarray | None = None,
                   ring_px: tuple[float, float] | None = None,
                   somata: dict | None = None) -> np.ndarray:
    """Objects found by hysteresis (low, high), each cut at half its own brightness.

    A dim soma and a bright one then both get their outline at the half-maximum
    of their own edge, where the true outline of a blurred object lies.

    The dim nucleus falls below that cut. Where it lies close to the soma edge
    the rim of cytoplasm between is thin, blurs below the cut too, and the
    nucleus opens to the outside: a bay that hole filling cannot close. So the
    object is also cut at ``nucleus_level`` of its brightness (above the dim
    nucleus, below the cytoplasm; holes filled; this wider outline may reach
    beyond the hysteresis extent), never below a noise floor: each of
    ``floors`` is tried, a strict one first (a noisy outline can leak out
    through the gap), then a lenient one (a dim nucleus in a noisy image). Its pixels that lie
    more than ``depth_px`` inside that wider outline and are below the
    half-maximum form candidate regions; one is added when the half-maximum
    region of one soma surrounds at least ``_MIN_ENCLOSURE`` of its outline: the
    nucleus, whether enclosed or opening through a gap. Notches between dendrite stumps
    (even where faint neuropil closes them off at the lower level) are open on
    one side, and the valley between two touching somata borders two pieces:
    both stay out.

    With ``edge`` (the same image, less smoothed), each object's pixels above
    its cut on ``edge`` are added too: the corners and tapering tips that the
    heavier smoothing rounds off.

    With ``ring_px`` (inner, outer radius in pixels), the half-maximum is taken
    above each object's local surround rather than ``base`` (see
    :func:`_local_base`): a soma on a background swelling is cut at its own
    edge, not where the swelling falls below the cut.
    """
    cand = filters.apply_hysteresis_threshold(smoothed, low, high)
    lab, _n = ndi.label(cand)
    scratch = None
    out = np.zeros(smoothed.shape, bool)
    fine = np.zeros(smoothed.shape, bool)
    eight = np.ones((3, 3), bool)
    for index, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        own = lab[sl] == index
        vals = smoothed[sl][own]
        level = float(np.percentile(vals, 90))
        loc = base
        if ring_px is not None:
            loc = _local_base(smoothed, lab, index, sl, level, low, base, ring_px)
        # several somata joined (by dendrites, neuropil or touching): each gets
        # its own level and surround, so a dim soma is not cut at the half-maximum
        # of a brighter one
        parts = None if somata is None else _somata_of(smoothed[sl], own, **somata)
        if parts is not None:
            if scratch is None:
                scratch = np.zeros(lab.shape, np.int32)
            level_map = np.full(own.shape, level, np.float32)
            loc_map = np.full(own.shape, loc, np.float32)
            deep = ndi.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1] > somata["depth_px"]
            for p in range(1, int(parts.max()) + 1):
                part = parts == p
                lv = _part_level(smoothed[sl], part, deep)
                lc = base
                if ring_px is not None:
                    scratch[sl][part] = 1
                    lc = _local_base(smoothed, scratch, 1, sl, lv, low, base, ring_px)
                    scratch[sl][part] = 0
                level_map[part] = lv
                loc_map[part] = lc
            level, loc = level_map, loc_map
        cut = np.maximum(low, loc + 0.5 * (level - loc))
        keep = own & (smoothed[sl] > cut)
        out[sl] |= keep
        if edge is not None:
            fine[sl] |= own & (edge[sl] > cut)
        if nucleus_level <= 0 or not keep.any():
            continue
        # the wider outline, on the object's box grown so that it may reach out
        m = int(np.ceil(depth_px)) + 2
        box = grow_box(sl, (m, m), smoothed.shape)
        inner = tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(sl, box, strict=True))
        if parts is not None:
            # the parts' levels over the grown box (the nearest part's beyond the object)
            near = ndi.distance_transform_edt(parts == 0, return_distances=False, return_indices=True)
            grid = np.pad(level_map[near[0], near[1]], [(a.start - b.start, b.stop - a.stop)
                                                        for a, b in zip(sl, box, strict=True)], mode="edge")
            lgrid = np.pad(loc_map[near[0], near[1]], [(a.start - b.start, b.stop - a.stop)
                                                       for a, b in zip(sl, box, strict=True)], mode="edge")
            level, loc = grid, lgrid
        keep_b = np.zeros(smoothed[box].shape, bool)
        keep_b[inner] = keep
        pieces, _ = ndi.label(keep_b)
        for fl in floors or (base,):
            nuc_cut = np.maximum(loc + nucleus_level * (level - loc), fl)
            wide_lab, _ = ndi.label(smoothed[box] > nuc_cut)
            wide = np.isin(wide_lab, np.unique(wide_lab[keep_b])) & (wide_lab > 0)
            # holes are filled inside the image only (a dark pocket between a soma
            # and the image edge may be neuropil); the depth is not cut by the edge
            wide = _beyond_image(ndi.binary_fill_holes(np.pad(wide, 1)), box, smoothed.shape)
            deep = ndi.distance_transform_edt(wide)[1:-1, 1:-1] > depth_px
            extra, _ = ndi.label(deep & ~keep_b & ~out[box])
            for e, esl in enumerate(ndi.find_objects(extra), start=1):
                grow = grow_box(esl, (1, 1), extra.shape)
                blob = extra[grow] == e
                if blob.sum() > max_hole_px:
                    continue
                ring = ndi.binary_dilation(blob, structure=eight) & ~blob
                touching = np.unique(pieces[grow][ring])
                enclosed = np.count_nonzero(pieces[grow][ring]) >= _MIN_ENCLOSURE * ring.sum()
                if enclosed and np.count_nonzero(touching) == 1:
                    out[box][grow] |= blob
    # the cut on the finer image adds the corners and tapering stump tips that the
    # detection scale rounds off (after the nucleus search: its noise would break
    # the rim that encloses a nucleus)
    return out | fine


def _somata_of(values: np.ndarray, own: np.ndarray, *, sigma_px: float, min_sep_px: float,
               depth_px: float) -> np.ndarray | None:
    """The somata of one thresholded object: labels 1..k (0 outside ``own``), or None for one.

    A soma is a maximum of ``values`` smoothed at ``sigma_px`` (a quarter of a
    soma diameter: texture and the dim nucleus merge into one hill) that lies
    deeper than ``depth_px`` inside ``own`` (not on a dendrite) and at least
    ``min_sep_px`` from a brighter one; every pixel of ``own`` goes to the soma
    it climbs to (watershed of the smoothed values).
    """
    depth = ndi.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1]
    if np.count_nonzero(depth > depth_px) < 2:
        return None
    coarse = ndi.gaussian_filter(np.where(own, values, 0.0).astype(np.float32), sigma_px, mode="constant")
    peaks = feature.peak_local_max(coarse, min_distance=max(round(min_sep_px), 1),
                                   labels=own.astype(np.int32), exclude_border=False)
    peaks = peaks[depth[peaks[:, 0], peaks[:, 1]] > depth_px] if len(peaks) else peaks
    if len(peaks) < 2:
        return None
    markers = np.zeros(own.shape, np.int32)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
    return segmentation.watershed(-coarse, markers, mask=own)


def _part_level(values: np.ndarray, part: np.ndarray, deep: np.ndarray) -> float:
    """Brightness (90th percentile) of one soma of an object, from its pixels in
    ``deep`` (deep inside the object: not the dendrites it holds)."""
    body = part & deep
    return float(np.percentile(values[body] if body.any() else values[part], 90))


def _beyond_image(padded: np.ndarray, box: tuple[slice, slice], shape: tuple[int, ...]) -> np.ndarray:
    """``padded`` (the crop ``box`` of an image of ``shape``, padded by one
    pixel) with its padding set True where it lies beyond the image's edges.

    A soma cut by the image edge goes on beyond it: the pixels of its cut
    nucleus next to the edge lie deep inside the soma, not at its outline.
    """
    out = padded.copy()
    if box[0].start == 0:
        out[0, :] = True
    if box[0].stop == shape[0]:
        out[-1, :] = True
    if box[1].start == 0:
        out[:, 0] = True
    if box[1].stop == shape[1]:
        out[:, -1] = True
    return out


def _local_base(smoothed: np.ndarray, lab: np.ndarray, index: int, sl: tuple[slice, slice],
                level: float, low: float, base: float, ring_px: tuple[float, float]) -> float:
    """The brightness around object ``index`` of ``lab``, at least ``base``.

    The object is cut at half way from the base to its ``level``; the median
    of the ring ``ring_px`` outside that cut (neighbours and dendrite stumps
    cover less than half of it) becomes the base, and the cut
    is repeated until the base stops rising (a few rounds): a background
    swelling joined to the soma falls outside the cut as the base climbs it.
    """
    m = int(np.ceil(ring_px[1])) + 1
    box = grow_box(sl, (m, m), smoothed.shape)
    own = lab[box] == index
    values = smoothed[box]
    loc = base
    for _ in range(_LOCAL_ROUNDS):
        keep = own & (values > max(low, loc + 0.5 * (level - loc)))
        if not keep.any():
            break
        dist = ndi.distance_transform_edt(~keep)
        ring = (dist >= ring_px[0]) & (dist <= ring_px[1])
        new = float(np.median(values[ring])) if ring.any() else loc
        # a small rise is noise: stop (the base only ever rises)
        if new <= loc + 0.02 * (level - loc):
            break
        loc = min(new, 0.5 * (level + base))  # never above half the object's height
    return loc


def _markers(mask: np.ndarray, dist: np.ndarray, min_sep_px: int, h_um: float) -> np.ndarray:
    """Distance-transform maxima, separated and prominent, labelled 1..n.

    Runs per connected component (on its bounding box): the mask is sparse.
    """
    comp, _n_comp = ndi.label(mask)
    markers = np.zeros(mask.shape, np.int32)
    next_label = 1
    for index, sl in enumerate(ndi.find_objects(comp), start=1):
        if sl is None:
            continue
        own = comp[sl] == index
        d = np.where(own, dist[sl], 0.0)
        peaks = morphology.h_maxima(d, h_um) if h_um > 0 else morphology.local_maxima(d)
        peaks = peaks.astype(bool) & own
        lab, n = ndi.label(peaks, structure=np.ones((3, 3)))
        if n == 0:
            continue
        # the highest point of each h-maximum plateau, highest first
        pts = np.array(ndi.maximum_position(d, lab, index=np.arange(1, n + 1)), np.intp).reshape(-1, 2)
        pts = pts[np.argsort(-d[pts[:, 0], pts[:, 1]], kind="stable")]
        kept: list[np.ndarray] = []
        for pt in pts:
            if all(np.hypot(*(pt - q)) >= min_sep_px for q in kept):
                kept.append(pt)
        for pt in kept:
            markers[sl][pt[0], pt[1]] = next_label
            next_label += 1
    return markers


def _groups(mask: np.ndarray, margin: int):
    """Yield ``(slices, sub_mask)`` for groups of components whose boxes, grown by
    ``margin`` pixels, overlap; each box is grown by ``margin`` (within the image)."""
    comp, n = ndi.label(mask)
    if n == 0:
        return
    boxes = np.array([[s[0].start, s[0].stop, s[1].start, s[1].stop] for s in ndi.find_objects(comp)])
    h, w = mask.shape
    grown = np.column_stack([np.maximum(boxes[:, 0] - margin, 0), np.minimum(boxes[:, 1] + margin, h),
                             np.maximum(boxes[:, 2] - margin, 0), np.minimum(boxes[:, 3] + margin, w)])
    # union of overlapping grown boxes, repeated until stable
    group = np.arange(n)
    while True:
        over = ((grown[:, None, 0] < grown[None, :, 1]) & (grown[None, :, 0] < grown[:, None, 1])
                & (grown[:, None, 2] < grown[None, :, 3]) & (grown[None, :, 2] < grown[:, None, 3]))
        _, group = connected_components(csr_matrix(over), directed=False)
        merged = np.column_stack([
            ndi.minimum(grown[:, 0], group, np.arange(group.max() + 1)),
            ndi.maximum(grown[:, 1], group, np.arange(group.max() + 1)),
            ndi.minimum(grown[:, 2], group, np.arange(group.max() + 1)),
            ndi.maximum(grown[:, 3], group, np.arange(group.max() + 1)),
        ]).astype(np.intp)
        new = merged[group]
        if np.array_equal(new, grown):
            break
        grown = new
    for g in range(group.max() + 1):
        members = np.flatnonzero(group == g) + 1
        y0, y1, x0, x1 = merged[g]
        sl = (slice(y0, y1), slice(x0, x1))
        yield sl, np.isin(comp[sl], members)


def _fill_holes(mask: np.ndarray, max_px: int) -> np.ndarray:
    """Fill background regions of at most ``max_px`` pixels that do not touch the edge."""
    bg, n = ndi.label(~mask)
    if n == 0:
        return mask
    fill = np.bincount(bg.ravel(), minlength=n + 1) <= max_px
    fill[np.unique(np.r_[bg[0], bg[-1], bg[:, 0], bg[:, -1]])] = False
    fill[0] = False
    return mask | fill[bg]


def _cut_dendrites(labels: np.ndarray, ps: float, ratio: float) -> np.ndarray:
    """Remove from each soma the processes longer than ``ratio`` times their base width.

    The body of a soma is its opening by a disk of ``_BODY_FRACTION`` of its
    inscribed radius; each connected piece outside the body is a process, of
    length its largest geodesic distance (µm) from the body and width twice its
    largest distance to the soma's outline. Returns new labels.
    """
    out = labels.copy()
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        pad = 2
        own = np.pad(labels[sl] == index, pad)
        dt = ndi.distance_transform_edt(own) * ps
        radius = _BODY_FRACTION * float(dt.max())
        body = open_disk(own, radius, (ps, ps))
        if not body.any():
            continue
        procs, n = ndi.label(own & ~body, structure=np.ones((3, 3)))
        if n == 0:
            continue
        # geodesic distance from the body inside the soma (µm)
        # (started from the body pixels next to a process: the rest add nothing)
        starts = body & ndi.binary_dilation(procs > 0, structure=np.ones((3, 3), bool))
        geo, _ = graph.MCP_Geometric(np.where(own, 1.0, np.inf)).find_costs(np.argwhere(starts))
        geo = np.where(own, geo, 0.0) * ps
        idx = np.arange(1, n + 1)
        length = ndi.maximum(geo, procs, idx)
        width = 2.0 * ndi.maximum(dt, procs, idx)
        cut = np.r_[False, np.asarray(length) > ratio * np.asarray(width)]
        if cut.any():
            drop = cut[procs][pad:-pad, pad:-pad]
            out[sl][drop] = 0
    return out


def _edge_steps(labels: np.ndarray, smoothed: np.ndarray, ps: float,
                which: np.ndarray | None = None) -> np.ndarray:
    """Brightness step at each label's outline (index = label; inf where not measured).

    Only labels where ``which`` (boolean, indexed by label) is true are measured.

    Median of ``smoothed`` over the label's pixels within ``_EDGE_BAND_UM`` of
    its outline minus the median over the unlabelled pixels ``_EDGE_RING_UM``
    outside it (the whole label, or the ring, when either is empty).
    """
    steps = np.full(int(labels.max()) + 1, np.inf)
    m = int(np.ceil(_EDGE_RING_UM[1] / ps)) + 2
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or (which is not None and not which[index]):
            continue
        box = grow_box(sl, (m, m), labels.shape)
        own = labels[box] == index
        inside = ndi.distance_transform_edt(own) * ps
        outside = ndi.distance_transform_edt(~own) * ps
        band = own & (inside <= _EDGE_BAND_UM)
        ring = (outside >= _EDGE_RING_UM[0]) & (outside <= _EDGE_RING_UM[1]) & (labels[box] == 0)
        values = smoothed[box]
        if not band.any() or not ring.any():
            continue
        steps[index] = float(np.median(values[band]) - np.median(values[ring]))
    return steps


def _dark_fractions(labels: np.ndarray, smoothed: np.ndarray, base: float,
                    which: np.ndarray) -> np.ndarray:
    """Fraction of each label's pixels below its half-maximum (index = label; 0
    where not measured): half way from ``base`` to the label's 90th percentile.

    A soma is dark only over its nucleus (16-25 % of a motor neuron's area); a
    closed loop of ChAT+ processes, its enclosed neuropil filled like a
    nucleus, is dark over most of its area.
    """
    out = np.zeros(int(labels.max()) + 1)
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or not which[index]:
            continue
        v = smoothed[sl][labels[sl] == index]
        top = float(np.percentile(v, 90))
        out[index] = float(np.mean(v < base + 0.5 * (top - base)))
    return out


def _split_somata(mask: np.ndarray, ps: float, prm: MotorNeuronParams,
                  close_fp: np.ndarray) -> np.ndarray:
    """Nucleus filling, dendrite opening and watershed splitting of one crop (labels 1..n)."""
    # dim nucleus: seal thin gaps in the rim, then fill nucleus-sized holes
    mask = _closing(mask, close_fp)
    mask = _fill_holes(mask, round(prm.max_hole_area_um2 / ps**2))
    # thin dendrites: opening with a disk of the dendrite width
    mask = ndi.binary_opening(mask, structure=_disk(0.5 * prm.dendrite_width_um / ps))
    # a first size cut drops debris before the (costlier) splitting
    mask = morphology.remove_small_objects(mask, max_size=max(int(0.25 * prm.min_area_um2 / ps**2), 1))
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    dist = ndi.distance_transform_edt(mask, sampling=ps).astype(np.float32)
    dist = ndi.gaussian_filter(dist, 1.0, mode="nearest") * mask  # tame pixel-level ripples
    min_sep = prm.min_separation_um or 0.5 * prm.soma_diameter_um
    markers = _markers(mask, dist, max(round(min_sep / ps), 1), prm.split_prominence_um)
    labels = segmentation.watershed(-dist, markers, mask=mask)
    # regions without a marker (none seeded) keep their connected component
    unseeded = mask & (labels == 0)
    if unseeded.any():
        extra, _ = ndi.label(unseeded)
        labels = np.where(unseeded, extra + labels.max(), labels)
    if prm.stump_length_ratio is not None:
        labels = _cut_dendrites(labels, ps, prm.stump_length_ratio)
    return labels.astype(np.int32)


def segment_motor_neurons(
    chat, *, pixel_size_um: float, params: MotorNeuronParams | None = None
) -> np.ndarray:
    """Label ChAT+ motor-neuron somata.

    Parameters
    ----------
    chat : array-like, shape (Y, X)
        The ChAT channel (e.g. a maximum projection), any numeric dtype.
    pixel_size_um : float
        Lateral pixel size in µm.
    params : MotorNeuronParams, optional
        Defaults of :class:`MotorNeuronParams` (``min_area_um2 = 300``).

    Returns
    -------
    ndarray of int32, shape (Y, X)
        0 = background, 1..n = somata (sequential).

    Raises
    ------
    ValueError
        For a non-2-D or non-finite image or a non-positive pixel size.

    Examples
    --------
    >>> segment_motor_neurons(np.zeros((64, 64), np.uint16), pixel_size_um=0.5).max()
    np.int32(0)
    """
    prm = MotorNeuronParams() if params is None else params
    img = _check(chat, pixel_size_um)
    ps = float(pixel_size_um)
    out = np.zeros(img.shape, np.int32)
    if np.ptp(img) == 0:
        return out
    fg = remove_background(img, pixel_size_um=ps, radius_um=background_radius_um(prm),
                           origin_px=prm.origin_px)
    smoothed = ndi.gaussian_filter(fg, prm.smooth_um / ps, mode="nearest")
    edge = None
    if prm.outline_smooth_um is not None and prm.outline_smooth_um != prm.smooth_um:
        edge = ndi.gaussian_filter(fg, prm.outline_smooth_um / ps, mode="nearest")
    if prm.fixed_levels is None:
        low, high, floor = _thresholds(smoothed, prm.threshold_snr)
        med = float(np.median(smoothed))
    else:
        low, high, floor, med = prm.fixed_levels
    # the nucleus outline only has to hold as a whole (it must lie deep inside,
    # enclosed by a soma), not pixel by pixel: down to half the detection floor
    mask = _half_max_mask(smoothed, low, high, med,
                          nucleus_level=prm.nucleus_level, depth_px=prm.smooth_um * 2.0 / ps,
                          max_hole_px=round(prm.max_hole_area_um2 / ps**2),
                          floors=(floor, med + 0.5 * (floor - med)), edge=edge,
                          ring_px=(_LOCAL_RING_UM[0] / ps, _LOCAL_RING_UM[1] / ps),
                          somata={"sigma_px": 0.25 * prm.soma_diameter_um / ps,
                                  "min_sep_px": (prm.min_separation_um or 0.5 * prm.soma_diameter_um) / ps,
                                  "depth_px": _BODY_DEPTH_UM / ps})

    # the candidates are sparse: every further step runs on the bounding box of
    # each group of candidates that the closing could join
    close_fp = _disk(1.0 / ps)
    margin = close_fp.shape[0] // 2 + 2
    labels = np.zeros(img.shape, np.int32)
    for sl, sub in _groups(mask, margin):
        lab = _split_somata(sub, ps, prm, close_fp)
        n = int(lab.max())
        if n:
            view = labels[sl]
            view[lab > 0] = lab[lab > 0] + int(labels.max())
    if not labels.any():
        return out

    if prm.exclude_border:
        labels = segmentation.clear_border(labels)
    areas = np.bincount(labels.ravel()) * ps**2
    bad = areas < prm.min_area_um2
    if prm.max_area_um2 is not None:
        bad |= areas > prm.max_area_um2
    if prm.edge_contrast > 0:
        # every label bounds the others' rings; only those still kept are measured
        bad |= _edge_steps(labels, smoothed, ps, ~bad) < prm.edge_contrast * (high - med)
    bad |= _dark_fractions(labels, smoothed, med, ~bad) > _MAX_DARK_FRACTION
    bad[0] = True
    labels[bad[labels]] = 0
    relabelled, _, _ = segmentation.relabel_sequential(labels)
    return relabelled.astype(np.int32)


def measure_motor_neurons(labels, *, pixel_size_um: float) -> pd.DataFrame:
    """Centroid, area, perimeter and equivalent diameter of each soma, in µm.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Output of :func:`segment_motor_neurons`.
    pixel_size_um : float
        Lateral pixel size.

    Returns
    -------
    DataFrame
        ``label``, ``y_um``, ``x_um`` (centroid from the top-left pixel centre),
        ``area_um2``, ``perimeter_um`` (the outline inside the image, see
        :func:`~spinalquant.measure.synapses.outline_length_um`: the stretch
        of a soma cut by the image edge is not counted), ``equivalent_diameter_um``;
        empty with these
        columns when there is no soma.

    Examples
    --------
    >>> lab = np.zeros((40, 40), np.int32); lab[10:30, 10:30] = 1
    >>> measure_motor_neurons(lab, pixel_size_um=0.5)[["label", "area_um2"]].values.tolist()
    [[1.0, 100.0]]
    """
    lab = check.labels(labels)
    pixel_size_um = check.pixel_size(pixel_size_um)
    if not lab.any():
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "label" else "float64")
                             for c in _COLUMNS})
    ps = float(pixel_size_um)
    t = measure.regionprops_table(
        lab.astype(np.int32, copy=False),
        properties=("label", "centroid", "area", "equivalent_diameter_area"),
        spacing=(ps, ps),
    )
    return pd.DataFrame({
        "label": t["label"].astype(np.int64),
        "y_um": t["centroid-0"],
        "x_um": t["centroid-1"],
        "area_um2": t["area"],
        "perimeter_um": outline_length_um(lab, pixel_size_um=ps)[t["label"]],
        "equivalent_diameter_um": t["equivalent_diameter_area"],
    })
