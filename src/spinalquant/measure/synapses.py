"""Perisomatic synaptic puncta per motor neuron.

Definition (result contract): a punctum belongs to a motor neuron when its centre
lies within ``distance_um`` (2 µm) of the soma outline. The outline of a label
image runs along the **pixel edges** (pixel ``(i, j)`` covers ``[i - 1/2, i +
1/2) x [j - 1/2, j + 1/2)`` pixel units, centres at ``(i, j) * pixel_size_um``),
where a contour of the soma's true boundary lies; distances are Euclidean, in µm,
from the punctum's centre as given (not rounded to a pixel):

* **outside** every soma, the distance is to the nearest soma pixel square; a
  punctum within ``distance_um`` belongs to the soma that pixel belongs to (a
  punctum between two neurons goes to the **nearest** one, never to both);
* **inside** a soma (the centre lies in one of its pixels), the depth is the
  distance to the nearest background pixel square, i.e. to the outline; a
  punctum up to ``inside_um`` deep still counts (its centre fell just inside
  the segmented outline: the outline is only as precise as the threshold). The
  default ``inside_um = 1.0`` µm tolerates that; puncta deeper than that (over
  the cytoplasm, i.e. above or below the soma in the projection) are **not
  counted**. Set ``inside_um = 0`` for the strict "on or outside" reading.

Measuring to the pixel edges rather than to the outer soma pixels' centres keeps
the band ``distance_um`` wide at every pixel size (to the centres it would be
half a pixel narrower: 1.65 µm instead of 2 µm at 0.7 µm/px). The image edge is
no outline. ``puncta_per_100um = 100 * n_puncta / perimeter_um``.

``perimeter_um`` (:func:`outline_length_um`) is the length of the soma outline
**inside the image**: the sub-pixel contour of the soma mask, smoothed by one
pixel to take off the pixel staircase (a pixel-edge count such as
:func:`skimage.measure.perimeter` reads a smooth outline 4-5 % long), without
the stretches where a soma is cut by the image edge. No punctum can be counted
beyond the image edge, so that stretch would dilute ``puncta_per_100um`` of a
cut soma (by a third for a soma cut through its middle).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import measure

from .. import _validate as check

__all__ = ["assign_puncta", "outline_length_um", "perisomatic_puncta"]

_COLUMNS = ("label", "n_puncta", "perimeter_um", "puncta_per_100um")
# the soma mask is smoothed by this many pixels before its contour is traced: it
# takes off the pixel staircase (a circle's contour is then within 0.5 % of its
# circumference at every radius) and leaves processes two pixels wide in place
_CONTOUR_SMOOTH_PX = 1.0


def _validate(labels, puncta: pd.DataFrame, pixel_size_um: float) -> np.ndarray:
    lab = check.labels(labels, "neuron_labels")
    check.pixel_size(pixel_size_um)
    missing = {"y_um", "x_um"} - set(puncta.columns)
    if missing:
        raise ValueError(f"the puncta table needs columns y_um and x_um; missing {sorted(missing)}")
    return lab


def _nearest_square(pts_um: np.ndarray, pixels: np.ndarray, ps: float, reach_um: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Distance (µm) from each point to the nearest of the pixel squares and its row
    in ``pixels``; ``inf`` (row -1) beyond ``reach_um``.

    A pixel ``(i, j)`` covers ``[i - 1/2, i + 1/2) x [j - 1/2, j + 1/2)`` pixels: a
    square within ``reach_um`` of a point has its centre within ``reach_um`` plus
    half its diagonal.
    """
    h = 0.5 * ps
    centres = pixels * ps
    cand = cKDTree(centres).query_ball_point(pts_um, reach_um * (1 + 1e-9) + h * np.sqrt(2.0))
    n_cand = np.fromiter((len(c) for c in cand), np.intp, len(cand))
    dist = np.full(len(pts_um), np.inf)
    row = np.full(len(pts_um), -1, np.intp)
    if n_cand.sum() == 0:
        return dist, row
    owner = np.repeat(np.arange(len(pts_um)), n_cand)
    j = np.concatenate([np.asarray(c, np.intp) for c in cand if len(c)])
    gap = np.maximum(np.abs(pts_um[owner] - centres[j]) - h, 0.0)
    d = np.hypot(gap[:, 0], gap[:, 1])
    # the nearest square of each point (ties: the lowest candidate index)
    order = np.lexsort((j, d, owner))
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    dist[owner[first]] = d[first]
    row[owner[first]] = j[first]
    return dist, row


def outline_length_um(labels, *, pixel_size_um: float) -> np.ndarray:
    """Length (µm) of each label's outline inside the image (index = label).

    The outline is the 0.5 contour of the label's mask smoothed by
    ``_CONTOUR_SMOOTH_PX`` pixels (sub-pixel, without the pixel staircase);
    where a label touches the image edge the mask is continued beyond it and
    only the contour inside the image (to the outer pixel edges) is measured:
    the image edge is no outline. Holes count as outline.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
    pixel_size_um : float

    Returns
    -------
    ndarray of float64, shape (labels.max() + 1,)
        0 for absent labels and for the background (index 0).

    Examples
    --------
    >>> yy, xx = np.mgrid[:100, :100]
    >>> lab = np.zeros((100, 100), np.int32); lab[np.hypot(yy - 50, xx - 50) < 30] = 1
    >>> round(float(outline_length_um(lab, pixel_size_um=0.5)[1] / (2 * np.pi * 15)), 2)
    1.0
    >>> half = lab[:50]   # the image edge cuts the soma through its centre
    >>> round(float(outline_length_um(half, pixel_size_um=0.5)[1] / (np.pi * 15)), 2)
    1.0
    """
    lab = check.labels(labels)
    ps = float(check.pixel_size(pixel_size_um))
    out = np.zeros(int(lab.max()) + 1 if lab.size else 1)
    if not lab.any():
        return out
    m = int(np.ceil(3 * _CONTOUR_SMOOTH_PX)) + 2
    # the edge rows repeated: a label cut by the image edge runs on beyond it
    padded = np.pad(lab, m, mode="edge")
    h, w = lab.shape
    for index, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        # the box in padded coordinates, m pixels around the label
        y0, y1 = sl[0].start, sl[0].stop + 2 * m
        x0, x1 = sl[1].start, sl[1].stop + 2 * m
        own = (padded[y0:y1, x0:x1] == index).astype(np.float32)
        # a label under ~5 pixels across would shrink or vanish in the smoothing: its
        # own 0.5 contour (corners cut by half-pixel diagonals) is measured instead
        wide = ndi.distance_transform_edt(own).max() >= 3 * _CONTOUR_SMOOTH_PX
        smooth = ndi.gaussian_filter(own, _CONTOUR_SMOOTH_PX, mode="nearest") if wide else own
        total = 0.0
        for c in measure.find_contours(smooth, 0.5):
            seg = np.diff(c, axis=0)
            mid = 0.5 * (c[1:] + c[:-1]) + [y0 - m, x0 - m]  # image pixel coordinates
            inside = ((mid[:, 0] >= -0.5) & (mid[:, 0] <= h - 0.5)
                      & (mid[:, 1] >= -0.5) & (mid[:, 1] <= w - 0.5))
            total += float(np.hypot(seg[inside, 0], seg[inside, 1]).sum())
        out[index] = total * ps
    return out


def assign_puncta(
    neuron_labels, puncta: pd.DataFrame, *, pixel_size_um: float, distance_um: float = 2.0,
    inside_um: float = 1.0,
) -> np.ndarray:
    """The motor neuron each punctum belongs to (0 = none), one per row of ``puncta``.

    Parameters
    ----------
    neuron_labels : ndarray of int, shape (Y, X)
        Soma labels (0 = background).
    puncta : DataFrame
        With ``y_um``, ``x_um`` (centre, µm from the top-left pixel centre).
    pixel_size_um : float
        Lateral pixel size.
    distance_um : float
        Largest distance outside the outline.
    inside_um : float
        Largest depth inside the outline (see the module notes).

    Returns
    -------
    ndarray of int64, shape (N,)

    Examples
    --------
    >>> lab = np.zeros((40, 40), np.int32); lab[10:20, 10:20] = 1
    >>> pts = pd.DataFrame({"y_um": [10.5, 5.5, 7.0, 2.0], "x_um": [5.5, 5.5, 7.0, 2.0]})
    >>> assign_puncta(lab, pts, pixel_size_um=0.5).tolist()  # outside, rim, deep, far
    [1, 1, 0, 0]
    """
    lab = _validate(neuron_labels, puncta, pixel_size_um)
    if distance_um < 0 or inside_um < 0:
        raise ValueError("distance_um and inside_um must be >= 0")
    n = len(puncta)
    out = np.zeros(n, np.int64)
    if n == 0 or not lab.any():
        return out
    ps = float(pixel_size_um)
    soma = lab > 0
    y = puncta["y_um"].to_numpy(float)
    x = puncta["x_um"].to_numpy(float)
    iy = np.floor(y / ps + 0.5)
    ix = np.floor(x / ps + 0.5)
    ok = np.isfinite(iy) & np.isfinite(ix)
    ok &= (iy >= 0) & (iy < lab.shape[0]) & (ix >= 0) & (ix < lab.shape[1])
    iy_i = iy[ok].astype(np.intp)
    ix_i = ix[ok].astype(np.intp)
    pts = np.column_stack([y[ok], x[ok]])
    inside = soma[iy_i, ix_i]
    # the outline runs along the pixel edges: the nearest soma square of an outside
    # centre belongs to the soma's inner outline, the nearest background square of
    # an inside centre to its outer outline (the image edge is no outline)
    cross = ndi.generate_binary_structure(2, 1)
    inner = np.argwhere(soma & ~ndi.binary_erosion(soma, cross, border_value=1))
    outer = np.argwhere(~soma & ndi.binary_dilation(soma, cross))
    res = np.zeros(len(iy_i), np.int64)
    out_i = np.flatnonzero(~inside)
    if len(out_i) and len(inner):
        d, q = _nearest_square(pts[out_i], inner, ps, distance_um)
        near = d <= distance_um * (1 + 1e-9)
        res[out_i[near]] = lab[inner[q[near], 0], inner[q[near], 1]]
    in_i = np.flatnonzero(inside)
    if len(in_i):
        if len(outer):
            depth, _ = _nearest_square(pts[in_i], outer, ps, inside_um)
        else:  # the soma fills the image
            depth = np.full(len(in_i), np.inf)
        keep = depth <= inside_um * (1 + 1e-9)
        res[in_i[keep]] = lab[iy_i[in_i[keep]], ix_i[in_i[keep]]]
    out[ok] = res
    return out


def perisomatic_puncta(
    neuron_labels,
    puncta: pd.DataFrame,
    *,
    pixel_size_um: float,
    distance_um: float = 2.0,
    inside_um: float = 1.0,
) -> pd.DataFrame:
    """Count the puncta around each motor-neuron soma.

    Parameters
    ----------
    neuron_labels : ndarray of int, shape (Y, X)
        Soma labels from :func:`~spinalquant.segment.motor_neurons.segment_motor_neurons`.
    puncta : DataFrame
        Puncta with ``y_um``, ``x_um`` (e.g. from
        :func:`~spinalquant.segment.puncta.detect_puncta`).
    pixel_size_um : float
        Lateral pixel size.
    distance_um : float
        A punctum counts when its centre is within this distance of the outline
        (contract default 2 µm), on or outside it.
    inside_um : float
        Tolerance for centres just inside the segmented outline (module notes).

    Returns
    -------
    DataFrame
        One row per soma label: ``label``, ``n_puncta``, ``perimeter_um`` (the
        outline inside the image, :func:`outline_length_um`),
        ``puncta_per_100um`` (``100 * n_puncta / perimeter_um``); empty with these
        columns when there is no soma.

    Examples
    --------
    >>> lab = np.zeros((40, 40), np.int32); lab[10:30, 10:30] = 1
    >>> pts = pd.DataFrame({"y_um": [4.0, 10.0, 1.0], "x_um": [10.0, 4.0, 1.0]})
    >>> perisomatic_puncta(lab, pts, pixel_size_um=0.5)[["label", "n_puncta"]].values.tolist()
    [[1, 2]]
    """
    lab = _validate(neuron_labels, puncta, pixel_size_um)
    ps = float(pixel_size_um)
    if not lab.any():
        return pd.DataFrame({
            "label": pd.Series(dtype="int64"), "n_puncta": pd.Series(dtype="int64"),
            "perimeter_um": pd.Series(dtype="float64"), "puncta_per_100um": pd.Series(dtype="float64"),
        })
    owner = assign_puncta(lab, puncta, pixel_size_um=ps, distance_um=distance_um,
                          inside_um=inside_um)
    labels = np.unique(lab[lab > 0]).astype(np.int64)
    counts = np.bincount(owner, minlength=int(labels.max()) + 1)[labels].astype(np.int64)
    perimeter = outline_length_um(lab, pixel_size_um=ps)[labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        per100 = np.where(perimeter > 0, 100.0 * counts / perimeter, np.nan)
    return pd.DataFrame({
        "label": labels, "n_puncta": counts, "perimeter_um": perimeter, "puncta_per_100um": per100,
    })
