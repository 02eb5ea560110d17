"""Generic per-object tables from label images, in micrometres."""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.measure import regionprops_table

BASIC_COLUMNS = ("label", "y_um", "x_um", "area_um2")


def object_table(labels: np.ndarray, *, pixel_size_um: float, perimeter: bool = False) -> pd.DataFrame:
    """One row per labelled object: label, centroid (µm) and area (µm²).

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        0 is background.
    pixel_size_um : float
        Lateral pixel size.
    perimeter : bool
        Add ``perimeter_um`` and ``equivalent_diameter_um``.

    Examples
    --------
    >>> lab = np.zeros((10, 10), int); lab[2:4, 2:6] = 1
    >>> object_table(lab, pixel_size_um=0.5).to_dict("records")
    [{'label': 1, 'y_um': 1.25, 'x_um': 1.75, 'area_um2': 2.0}]
    """
    cols = list(BASIC_COLUMNS) + (["perimeter_um", "equivalent_diameter_um"] if perimeter else [])
    if labels.max(initial=0) == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "label" else "float64") for c in cols})
    props = ["label", "centroid", "area"] + (["perimeter", "equivalent_diameter_area"] if perimeter else [])
    t = regionprops_table(np.asarray(labels), properties=props, spacing=(pixel_size_um, pixel_size_um))
    out = pd.DataFrame(
        {
            "label": t["label"].astype("int64"),
            # µm with the centre of the top-left pixel at (0, 0), the
            # scikit-image / napari convention used by every spinalquant table
            "y_um": t["centroid-0"],
            "x_um": t["centroid-1"],
            "area_um2": t["area"].astype(float),
        }
    )
    if perimeter:
        out["perimeter_um"] = t["perimeter"]
        out["equivalent_diameter_um"] = t["equivalent_diameter_area"]
    return out
