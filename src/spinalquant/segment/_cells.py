"""Cell-body segmentation shared by GFP+ cells and astrocyte somata (package-internal).

Both :mod:`~spinalquant.segment.gfp_cells` and
:mod:`~spinalquant.segment.astrocytes` find their cells the same way once a
detection mask exists: every connected component of the mask is split into
cells with a marker watershed (:func:`split_component`), each cell is cut at a
fraction of its own brightness above its local background
(:func:`outline_objects`), and the result is size filtered and renumbered
(:func:`filter_and_relabel`). :func:`split_and_outline` runs the first two
steps on a whole image, component by component on small crops, so the cost
grows with the number of cells, not with the image. :func:`check_origin`
validates the offset of a window of a larger image (the ``origin_px`` of
both modules' parameters).

The method (and the meaning of every option) is described in the module
docstring of :mod:`~spinalquant.segment.gfp_cells`, steps 3-4. The functions
here take plain keyword options rather than a parameter set: each caller maps
its own parameters onto them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

__all__ = [
    "TOP_PERCENTILE",
    "boundary_saddles",
    "check_origin",
    "distance_surface",
    "ellipsoid",
    "filter_and_relabel",
    "grow_box",
    "merge_without_neck",
    "open_disk",
    "outline_objects",
    "resplit",
    "split_and_outline",
    "split_component",
]

#: Percentile of a cell's values taken as its "top" brightness: robust to the
#: dim skirt of the detection mask and to texture.
TOP_PERCENTILE = 70


def check_origin(origin_px, name: str, error: type[Exception] = ValueError) -> tuple[int, int]:
    """A window's ``origin_px`` in a larger image as two ints >= 0, else ``error`` naming ``name``.

    Examples
    --------
    >>> check_origin([3, np.int64(8)], "origin_px")
    (3, 8)
    >>> check_origin((1.5, 0), "origin_px")
    Traceback (most recent call last):
    ...
    ValueError: origin_px must be two integers >= 0; got (1.5, 0)
    """
    origin = tuple(origin_px) if isinstance(origin_px, tuple | list) else ()
    if len(origin) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in origin
    ):
        raise error(f"{name} must be two integers >= 0; got {origin_px!r}")
    return int(origin[0]), int(origin[1])


def grow_box(sl: tuple[slice, ...], margin, shape) -> tuple[slice, ...]:
    """Bounding-box slices grown by ``margin`` pixels per axis, clipped to ``shape``.

    Examples
    --------
    >>> grow_box((slice(2, 5), slice(8, 9)), (3, 3), (10, 10))
    (slice(0, 8, None), slice(5, 10, None))
    """
    return tuple(
        slice(max(s.start - int(m), 0), min(s.stop + int(m), n))
        for s, m, n in zip(sl, margin, shape, strict=True)
    )


def ellipsoid(radius_um: float, spacing) -> np.ndarray:
    """Boolean disk (2-D) or ball (3-D) footprint of a radius in µm.

    Each half-axis is ``radius_um / spacing`` pixels; the footprint holds at
    least the centre pixel.

    Examples
    --------
    >>> ellipsoid(1.0, (1.0, 1.0)).astype(int)
    array([[0, 1, 0],
           [1, 1, 1],
           [0, 1, 0]])
    >>> ellipsoid(0.2, (1.0, 1.0)).shape
    (1, 1)
    """
    r = radius_um / np.asarray(spacing, dtype=float)
    half = np.floor(r).astype(int)
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g / max(ri, 1e-9)) ** 2 for g, ri in zip(grids, r, strict=True)) <= 1.0


def split_component(comp: np.ndarray, values: np.ndarray, *, spacing, min_sep_um: float,
                    how: str) -> tuple[np.ndarray, int]:
    """Split one connected mask (a crop) into objects with a marker watershed.

    Parameters
    ----------
    comp : ndarray of bool, shape (Y, X) or (Z, Y, X)
        One connected component (a crop around it).
    values : ndarray, same shape
        Image values of the crop (used by ``how="intensity"``).
    spacing : sequence of float
        Pixel size per axis in µm.
    min_sep_um : float
        Smallest distance between two markers.
    how : str
        "distance": markers are maxima of the (lightly smoothed) Euclidean
        distance transform and the watershed runs on its inverse;
        "intensity": maxima of the smoothed ``values``; "none": no split.

    Returns
    -------
    (ndarray of int32, int)
        Labels ``1..m`` inside ``comp`` and ``m``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:20, :34]
    >>> two = (np.hypot(yy - 10, xx - 9) < 7) | (np.hypot(yy - 10, xx - 24) < 7)
    >>> lab, m = split_component(two, two.astype(float), spacing=(1, 1), min_sep_um=5, how="distance")
    >>> m, int(lab[10, 9]) != int(lab[10, 24])
    (2, True)
    """
    if how == "none":
        return comp.astype(np.int32), 1
    spacing = np.asarray(spacing, dtype=float)
    if how == "distance":
        # a hole inside a cell (a dim nucleus below the detection threshold) is part of
        # it: left open, the distance transform would peak all around it
        comp = _fill_small_holes(comp, values, min_sep_um, spacing)
        surface = distance_surface(comp, spacing=spacing, min_sep_um=min_sep_um)
    else:
        surface = ndi.gaussian_filter(values, sigma=np.maximum(0.5, 0.25 * min_sep_um / spacing))
    radius = np.maximum(1, np.round(min_sep_um / spacing).astype(int))
    masked = np.where(comp, surface, -np.inf)
    peak = comp & (masked >= ndi.maximum_filter(masked, size=tuple(2 * radius + 1), mode="nearest"))
    markers, m = ndi.label(peak)  # a plateau of equal maxima is one marker
    if m <= 1:
        return comp.astype(np.int32), 1
    lab = watershed(-surface, markers, mask=comp).astype(np.int32)
    if how == "distance":
        lab, m = merge_without_neck(lab, surface, m)
    return lab, m


def distance_surface(comp: np.ndarray, *, spacing, min_sep_um: float) -> np.ndarray:
    """The distance split's surface: Euclidean distance to the outside (µm), lightly smoothed.

    The smoothing (σ = 0.15 ``min_sep_um``, at least half a pixel) removes
    spurious maxima of the distance transform on ragged outlines.
    """
    spacing = np.asarray(spacing, dtype=float)
    dist = ndi.distance_transform_edt(comp, sampling=spacing)
    return ndi.gaussian_filter(dist, sigma=np.maximum(0.5, 0.15 * min_sep_um / spacing))


def _fill_small_holes(comp: np.ndarray, values: np.ndarray, radius_um: float,
                      spacing: np.ndarray) -> np.ndarray:
    """``comp`` with its small, cell-bright holes filled.

    A hole is filled when it is no larger than a disc (a ball in 3-D) of
    ``radius_um`` and its mean value is at least half the component's median:
    a dim nucleus just below the detection threshold. Background enclosed
    between touching cells is darker and stays open.
    """
    holes = ndi.binary_fill_holes(comp) & ~comp
    if not holes.any():
        return comp
    size = np.pi * radius_um**2 if comp.ndim == 2 else 4.0 / 3.0 * np.pi * radius_um**3
    lab, n = ndi.label(holes)
    idx = np.arange(1, n + 1)
    big = np.bincount(lab.ravel(), minlength=n + 1)[1:] * float(np.prod(spacing)) > size
    dim = np.asarray(ndi.mean(values, lab, idx)) < 0.5 * float(np.median(values[comp]))
    return comp | np.isin(lab, idx[~big & ~dim])


#: Two distance-watershed regions are one cell unless the distance transform
#: dips between them below this fraction of the lower of their two peaks.
NECK_RATIO = 0.9


def boundary_saddles(lab: np.ndarray, surface: np.ndarray) -> dict[tuple[int, int], float]:
    """Highest value of ``surface`` along the boundary of each pair of touching regions.

    Across each face between pixels of regions *i* < *j* (> 0) the lower of
    the two pixels' values counts; the result maps ``(i, j)`` to the highest.

    Examples
    --------
    >>> lab = np.array([[1, 1, 2, 2]]); surface = np.array([[1.0, 3.0, 2.0, 5.0]])
    >>> boundary_saddles(lab, surface)
    {(1, 2): 2.0}
    """
    saddle: dict[tuple[int, int], float] = {}
    for axis in range(lab.ndim):
        a = np.moveaxis(lab, axis, 0)
        sv = np.moveaxis(surface, axis, 0)
        la, lb = a[:-1], a[1:]
        edge = (la != lb) & (la > 0) & (lb > 0)
        if not edge.any():
            continue
        pa, pb = la[edge], lb[edge]
        v = np.minimum(sv[:-1][edge], sv[1:][edge])
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        for i, j, val in zip(lo.tolist(), hi.tolist(), v.tolist(), strict=True):
            if val > saddle.get((i, j), -np.inf):
                saddle[(i, j)] = float(val)
    return saddle


def merge_without_neck(lab: np.ndarray, surface: np.ndarray, m: int, *,
                       ratio: float = NECK_RATIO) -> tuple[np.ndarray, int]:
    """Merge neighbouring regions of a distance watershed that have no neck between them.

    Two touching cells meet at a neck: along the watershed line the distance
    transform (``surface``) drops below both cells' inscribed radii (two equal
    discs whose centres are 0.87 radii apart, overlapping by more than half,
    still dip to 0.9 of the radius). A ragged outline of *one* noisy cell can also give the distance
    transform two maxima, but the line between them then crosses the cell at
    nearly its full width. Neighbours whose highest saddle reaches ``ratio``
    times the lower of their peaks are therefore merged.

    Parameters
    ----------
    lab : ndarray of int, shape (Y, X) or (Z, Y, X)
        Regions ``1..m`` of one component (0 outside).
    surface : ndarray of float, same shape
        The (smoothed) distance transform the watershed ran on.
    m : int
        Number of regions.
    ratio : float
        Saddle / lower peak at or above which two regions are one.

    Returns
    -------
    (ndarray of int32, int)
        Regions renumbered ``1..k`` and ``k``.

    Examples
    --------
    >>> from scipy import ndimage as ndi
    >>> yy, xx = np.mgrid[:20, :40]
    >>> two = (np.hypot(yy - 10, xx - 10) < 8) | (np.hypot(yy - 10, xx - 26) < 8)
    >>> one = two | ((yy > 1) & (yy < 19) & (xx > 10) & (xx < 26))  # no neck
    >>> lab = np.where(xx < 18, 1, 2) * two
    >>> surface = ndi.distance_transform_edt(two)
    >>> merge_without_neck(lab, surface, 2)[1]
    2
    >>> merge_without_neck(np.where(xx < 18, 1, 2) * one, ndi.distance_transform_edt(one), 2)[1]
    1
    """
    if m <= 1:
        return lab.astype(np.int32, copy=False), int(m)
    surface = np.asarray(surface, float)
    peak = ndi.maximum(surface, lab, np.arange(1, m + 1))
    peak = np.asarray(peak, float)
    saddle = boundary_saddles(lab, surface)
    parent = list(range(m + 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (i, j), val in saddle.items():
        if val >= ratio * min(peak[i - 1], peak[j - 1]):
            parent[root(j)] = root(i)
    roots = np.array([root(i) for i in range(m + 1)])
    _, new = np.unique(roots, return_inverse=True)  # 0 stays 0 (root of 0 is 0)
    out = new.astype(np.int32)[lab]
    return out, int(new.max())


def open_disk(obj: np.ndarray, radius_um: float, spacing) -> np.ndarray:
    """Binary opening with a disk (ball) of ``radius_um``; by distance transforms when large.

    Examples
    --------
    >>> obj = np.zeros((20, 30), bool); obj[5:15, 3:13] = True; obj[9:11, 13:28] = True
    >>> opened = open_disk(obj, 2.0, (1.0, 1.0))
    >>> bool(opened[10, 8]), bool(opened[10, 20])  # the square stays, the thin bar goes
    (True, False)
    """
    footprint = ellipsoid(radius_um, spacing)
    if footprint.size < 49:
        return ndi.binary_opening(obj, structure=footprint)
    # erosion = points deeper than r, dilation = points within r of those
    core = ndi.distance_transform_edt(obj, sampling=spacing) > radius_um
    return ndi.distance_transform_edt(~core, sampling=spacing) <= radius_um


def outline_objects(local: np.ndarray, m: int, others: np.ndarray, values: np.ndarray, *, spacing,
                    fraction: float, ring_um: tuple[float, float], grow_um: float, trim_um: float,
                    fallback: float) -> np.ndarray:
    """Cut each object of one component at ``fraction`` of its own brightness.

    The component's background is the median of ``values`` over a ring
    ``ring_um[0]`` to ``ring_um[0] + ring_um[1]`` µm outside it, excluding
    ``others`` (``fallback`` when the ring has fewer than 8 pixels). Object
    *j* keeps the pixels of its watershed basin (within ``grow_um`` of the
    component, not in ``others``) brighter than ``background + fraction ·
    (top − background)``, *top* its :data:`TOP_PERCENTILE`-th percentile;
    then an opening with a disk of ``trim_um`` (0 = none), the largest piece
    and its holes filled. An object without contrast keeps its pixels.

    Parameters
    ----------
    local : ndarray of int, shape (Y, X) or (Z, Y, X)
        Objects ``1..m`` of one component (a crop around it).
    m : int
        Number of objects in ``local``.
    others : ndarray of int, same shape
        Other components in the crop (> 0), never claimed nor used as background.
    values : ndarray, same shape
        Image values of the crop.
    spacing : sequence of float
        Pixel size per axis in µm.
    fraction : float
        Cut level between background (0) and top (1).
    ring_um : (float, float)
        Gap and width of the background ring.
    grow_um : float
        How far an outline may grow beyond ``local``.
    trim_um : float
        Radius of the opening that trims thin processes (0 = none).
    fallback : float
        Background when the ring is (nearly) empty.

    Returns
    -------
    ndarray of int32, same shape
        Labels ``1..m`` (an object may come out empty).

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> values = 100.0 * (np.hypot(yy - 20, xx - 20) < 6)
    >>> local = (np.hypot(yy - 20, xx - 20) < 9).astype(np.int32)  # a loose detection mask
    >>> out = outline_objects(local, 1, np.zeros_like(local), values, spacing=(1, 1), fraction=0.5,
    ...                       ring_um=(1.0, 3.0), grow_um=2.0, trim_um=0.0, fallback=0.0)
    >>> int(out.sum()) == int((values > 0).sum())
    True
    """
    comp = local > 0
    free = others == 0
    d_out = ndi.distance_transform_edt(~comp, sampling=spacing)
    ring_px = free & (d_out > ring_um[0]) & (d_out <= ring_um[0] + ring_um[1])
    bg = float(np.median(values[ring_px])) if np.count_nonzero(ring_px) >= 8 else fallback
    region = comp | (free & (d_out <= grow_um))
    basins = watershed(-values, local, mask=region) if m > 1 else region.astype(np.int32)
    out = np.zeros(local.shape, np.int32)
    for j in range(1, m + 1):
        core = values[local == j]
        if core.size == 0:
            continue
        top = float(np.percentile(core, TOP_PERCENTILE))
        if not top > bg:  # no contrast to cut at: keep the global-threshold outline
            out[(local == j) & (out == 0)] = j
            continue
        obj = (basins == j) & (values > bg + fraction * (top - bg))
        if trim_um > 0:
            obj = open_disk(obj, trim_um, spacing)
        pieces, k = ndi.label(obj)
        if k == 0:
            continue
        if k > 1:
            obj = pieces == 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
        obj = ndi.binary_fill_holes(obj)
        out[obj & (out == 0)] = j
    return out


def resplit(local: np.ndarray, m: int, values: np.ndarray, *, spacing, min_sep_um: float,
            how: str) -> tuple[np.ndarray, int]:
    """Split every object of ``local`` (labels ``1..m``) again with :func:`split_component`.

    Returns
    -------
    (ndarray of int32, int)
        New labels ``1..n`` and ``n``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:20, :34]
    >>> two = (np.hypot(yy - 10, xx - 9) < 7) | (np.hypot(yy - 10, xx - 24) < 7)
    >>> resplit(two.astype(np.int32), 1, two.astype(float), spacing=(1, 1), min_sep_um=5, how="distance")[1]
    2
    """
    out = np.zeros(local.shape, np.int32)
    n = 0
    for j in range(1, m + 1):
        obj = local == j
        if not obj.any():
            continue
        sub, k = split_component(obj, values, spacing=spacing, min_sep_um=min_sep_um, how=how)
        out[sub > 0] = sub[sub > 0] + n
        n += k
    return out, n


def split_and_outline(values: np.ndarray, mask: np.ndarray, *, spacing, min_separation_um: float,
                      split: str, edge_fraction: float, ring_um: tuple[float, float],
                      max_grow_um: float, trim_um: float, min_px: float,
                      fallback: float, refine=None) -> np.ndarray:
    """Split every component of ``mask`` into cells and outline each one (no size filter yet).

    Component by component, on a crop grown by the outline's reach:
    :func:`split_component`, then (``edge_fraction > 0``)
    :func:`outline_objects` and, for ``split="distance"``, one more split of
    each tighter outline (it shows the neck between touching cells that the
    detection mask filled in); with ``edge_fraction = 0`` the detection mask
    is kept, its holes filled. Components smaller than a quarter of
    ``min_px`` (at least 2 px), or in 2-D too small to hold the trim disk once
    grown by ``max_grow_um``, are skipped.

    Parameters
    ----------
    values : ndarray, shape (Y, X) or (Z, Y, X)
        Background-removed image the outlines are cut on.
    mask : ndarray of bool, same shape
        Detection mask.
    spacing : sequence of float
        Pixel size per axis in µm.
    min_separation_um : float
        Smallest distance between two split cell centres (> 0).
    split : str
        "distance", "intensity" or "none" (:func:`split_component`).
    edge_fraction : float
        Cut level of :func:`outline_objects` (0 keeps the detection mask).
    ring_um : (float, float)
        Gap and width of the outline's background ring.
    max_grow_um : float
        How far an outline may grow beyond the detection mask.
    trim_um : float
        Radius of the opening that trims thin processes (0 = none).
    min_px : float
        Smallest cell in pixels (used only to skip hopeless specks).
    fallback : float
        Background of an outline whose ring is empty.
    refine : callable, optional
        ``refine(local, m, comp, crop, values) -> (local, m)``, run on each
        component's split before the outlines: ``local`` its regions ``1..m``,
        ``comp`` the component's mask, ``crop`` the labelled components in the
        crop (0 = background), ``values`` the crop of ``values``.

    Returns
    -------
    ndarray of int32, same shape
        0 = background, cells numbered from 1 (numbers may be unused).

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :60]
    >>> img = 100.0 * ((np.hypot(yy - 20, xx - 15) < 6) | (np.hypot(yy - 20, xx - 42) < 8))
    >>> lab = split_and_outline(img, img > 50, spacing=(1, 1), min_separation_um=4, split="distance",
    ...                         edge_fraction=0.5, ring_um=(1.0, 3.0), max_grow_um=2.0, trim_um=2.0,
    ...                         min_px=30, fallback=0.0)
    >>> int(lab.max())
    2
    """
    spacing = np.asarray(spacing, dtype=float)
    cc, n = ndi.label(mask)
    out = np.zeros(mask.shape, np.int32)
    if n == 0:
        return out
    areas = np.bincount(cc.ravel())
    frac = edge_fraction
    reach = max(ring_um[0] + ring_um[1], max_grow_um) if frac > 0 else 0.0
    margin = np.ceil(reach / spacing).astype(int) + 2
    trim = trim_um if frac > 0 and ellipsoid(trim_um, spacing).size > 1 else 0.0
    skip_px = max(2.0, 0.25 * min_px)
    if trim > 0 and mask.ndim == 2:
        # a component must hold the trim disk once grown by max_grow_um
        r_um = max(trim_um - max_grow_um, 0.0)
        skip_px = max(skip_px, np.pi * r_um**2 / float(np.prod(spacing)))
    next_id = 0
    for c, sl in enumerate(ndi.find_objects(cc), start=1):
        if areas[c] < skip_px:
            continue  # a speck that no outline can make a cell, or the trim would erase
        box = grow_box(sl, margin, mask.shape)
        sub = cc[box]
        comp = sub == c
        vals = values[box]
        local, m = split_component(comp, vals, spacing=spacing, min_sep_um=min_separation_um, how=split)
        if refine is not None:
            local, m = refine(local, m, comp, sub, vals)
        if frac > 0:
            local = outline_objects(local, m, np.where(comp, 0, sub), vals, spacing=spacing, fraction=frac,
                                    ring_um=ring_um, grow_um=max_grow_um, trim_um=trim, fallback=fallback)
            if split == "distance":
                # the tighter outline shows the neck between touching cells that the
                # detection mask filled in: split each outline once more
                local, m = resplit(local, m, vals, spacing=spacing, min_sep_um=min_separation_um, how=split)
        else:
            filled = ndi.binary_fill_holes(comp)
            if m == 1:
                local = filled.astype(np.int32)
            elif np.count_nonzero(filled) > np.count_nonzero(comp):
                local = watershed(-vals, local, mask=filled).astype(np.int32)
        dst = out[box]
        put = (local > 0) & (dst == 0)
        dst[put] = local[put] + next_id
        next_id += m
    return out


def filter_and_relabel(lab: np.ndarray, *, min_px: float, max_px: float, drop=()) -> np.ndarray:
    """Drop objects outside ``[min_px, max_px]`` pixels or listed in ``drop``; renumber in order.

    Kept labels are renumbered ``1, 2, ...`` in their original order. With
    ``min_px = 0`` a label number absent from ``lab`` counts as a kept
    (empty) object and keeps its slot, so the output is ``1..n`` only when
    ``lab`` had no unused numbers below its maximum or ``min_px > 0``.

    Parameters
    ----------
    lab : ndarray of int
        Label image (any shape).
    min_px, max_px : float
        Size range in pixels (``max_px = 0``: no upper limit).
    drop : sequence of int
        Labels removed regardless of size.

    Returns
    -------
    ndarray of int32, same shape

    Examples
    --------
    >>> lab = np.array([[1, 1, 0, 2], [1, 0, 3, 3]])
    >>> filter_and_relabel(lab, min_px=2, max_px=0)
    array([[1, 1, 0, 0],
           [1, 0, 2, 2]], dtype=int32)
    >>> filter_and_relabel(lab, min_px=0, max_px=0, drop=[1])
    array([[0, 0, 0, 1],
           [0, 0, 2, 2]], dtype=int32)
    """
    if lab.max(initial=0) == 0:
        return lab.astype(np.int32)
    areas = np.bincount(lab.ravel())
    keep = areas >= min_px
    if max_px > 0:
        keep &= areas <= max_px
    keep[0] = False
    if len(drop):
        keep[np.asarray(drop, dtype=np.intp)] = False
    lut = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    return lut[lab]
