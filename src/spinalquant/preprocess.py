"""Reduce z-stacks to planes and other dtype-preserving preprocessing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def project(zyx, *, method: str = "max") -> np.ndarray:
    """Project a (Z, Y, X) stack to one (Y, X) plane.

    Parameters
    ----------
    zyx : array-like, shape (Z, Y, X)
        One channel of a stack (numpy or dask).
    method : {"max", "mean", "best"}
        "max" is the maximum-intensity projection (dtype preserved), "mean"
        the average (float32), "best" the single plane with the highest
        variance of the Laplacian (the sharpest, dtype preserved).

    Returns
    -------
    ndarray, shape (Y, X)

    Examples
    --------
    >>> project(np.arange(8, dtype=np.uint16).reshape(2, 2, 2)).tolist()
    [[4, 5], [6, 7]]
    """
    arr = zyx
    if getattr(arr, "ndim", 0) == 2:
        return np.asarray(arr)
    if getattr(arr, "ndim", 0) != 3:
        raise ValueError(f"project expects a (Z, Y, X) array; got shape {getattr(arr, 'shape', None)}")
    if arr.shape[0] == 1:
        return np.asarray(arr[0])
    if method == "max":
        out = arr.max(axis=0)
    elif method == "mean":
        out = arr.mean(axis=0, dtype=np.float32)
    elif method == "best":
        scores = [
            float(ndi.laplace(np.asarray(arr[z], dtype=np.float32)).var()) for z in range(arr.shape[0])
        ]
        out = arr[int(np.argmax(scores))]
    else:
        raise ValueError(f"unknown projection {method!r}; use 'max', 'mean' or 'best'")
    return np.asarray(out.compute() if hasattr(out, "compute") else out)
