"""Perisomatic synaptic puncta per motor neuron.

Definition (result contract): a punctum belongs to a motor neuron when its centre
lies within ``distance_um`` (2 µm) of the soma outline. Distances are Euclidean,
in µm, from a distance transform of the label image:

* **outside** every soma, the distance is to the nearest soma pixel; a punctum
  within ``distance_um`` belongs to the soma that pixel belongs to (a punctum
  between two neurons goes to the **nearest** one, never to both);
* **on** the outline (a soma pixel touching the background) the distance is 0;
* **inside** a soma, the depth is the distance to the nearest background pixel;
  a punctum up to ``inside_um`` deep still counts (its centre fell just inside
  the segmented outline: the outline is only as precise as the threshold). The
  default ``inside_um = 1.0`` µm tolerates that; puncta deeper than that (over
  the cytoplasm, i.e. above or below the soma in the projection) are **not
  counted**. Set ``inside_um = 0`` for the strict "on or outside" reading.

A centre is looked up in the pixel ``round(y_um / pixel_size_um)``, the same
convention as the object tables. ``puncta_per_100um = 100 * n_puncta /
perimeter_um``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import measure

from .. import _validate as check

__all__ = ["assign_puncta", "perisomatic_puncta"]

_COLUMNS = ("label", "n_puncta", "perimeter_um", "puncta_per_100um")


def _validate(labels, puncta: pd.DataFrame, pixel_size_um: float) -> np.ndarray:
    lab = check.labels(labels, "neuron_labels")
    check.pixel_size(pixel_size_um)
    missing = {"y_um", "x_um"} - set(puncta.columns)
    if missing:
        raise ValueError(f"the puncta table needs columns y_um and x_um; missing {sorted(missing)}")
    return lab


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
    iy = np.floor(puncta["y_um"].to_numpy(float) / ps + 0.5)
    ix = np.floor(puncta["x_um"].to_numpy(float) / ps + 0.5)
    ok = np.isfinite(iy) & np.isfinite(ix)
    ok &= (iy >= 0) & (iy < lab.shape[0]) & (ix >= 0) & (ix < lab.shape[1])
    iy_i = iy[ok].astype(np.intp)
    ix_i = ix[ok].astype(np.intp)
    pts = np.column_stack([iy_i, ix_i]) * ps
    inside = soma[iy_i, ix_i]
    # Euclidean distances as a distance transform would give them, but only at the
    # puncta: the nearest soma pixel of an outside point lies on the soma's inner
    # outline, the nearest background pixel of an inside point on its outer outline
    cross = ndi.generate_binary_structure(2, 1)
    inner = np.argwhere(soma & ~ndi.binary_erosion(soma, cross, border_value=1))
    outer = np.argwhere(~soma & ndi.binary_dilation(soma, cross))
    res = np.zeros(len(iy_i), np.int64)
    out_i = np.flatnonzero(~inside)
    if len(out_i) and len(inner):
        d, j = cKDTree(inner * ps).query(pts[out_i], distance_upper_bound=distance_um * (1 + 1e-9))
        near = np.isfinite(d)
        q = inner[j[near]]
        res[out_i[near]] = lab[q[:, 0], q[:, 1]]
    in_i = np.flatnonzero(inside)
    if len(in_i):
        if len(outer):
            depth, _ = cKDTree(outer * ps).query(pts[in_i])
            # outline pixels (touching the background) have depth 0
            depth = np.maximum(depth - ps, 0.0)
        else:  # the soma fills the image
            depth = np.full(len(in_i), np.inf)
        keep = depth <= inside_um
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
        One row per soma label: ``label``, ``n_puncta``, ``perimeter_um``,
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
    t = measure.regionprops_table(lab.astype(np.int32, copy=False),
                                  properties=("label", "perimeter"), spacing=(ps, ps))
    labels = t["label"].astype(np.int64)
    counts = np.bincount(owner, minlength=int(labels.max()) + 1)[labels].astype(np.int64)
    perimeter = np.asarray(t["perimeter"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        per100 = np.where(perimeter > 0, 100.0 * counts / perimeter, np.nan)
    return pd.DataFrame({
        "label": labels, "n_puncta": counts, "perimeter_um": perimeter, "puncta_per_100um": per100,
    })
