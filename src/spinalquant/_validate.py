"""Input checks shared by the segmentation and measurement functions.

Each check returns the value it accepted (as an array or a float) or raises a
``ValueError`` whose message names the argument and says what was expected, so
every public function reports bad input in the same words.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ImageContentError


def pixel_size(value, name: str = "pixel_size_um") -> float:
    """A positive, finite physical size in µm.

    Examples
    --------
    >>> pixel_size(0.5)
    0.5
    >>> pixel_size(0)
    Traceback (most recent call last):
    ...
    ValueError: pixel_size_um must be a positive number of µm; got 0
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number of µm; got {value!r}")
    return v


def plane(image, name: str = "image", *, hint: str = "project a z-stack first") -> np.ndarray:
    """A real-valued 2-D (Y, X) array (bool, integer or float); not copied.

    Examples
    --------
    >>> plane(np.zeros((2, 3), np.uint16)).shape
    (2, 3)
    >>> plane(np.zeros((1, 2, 3)), "gfp")
    Traceback (most recent call last):
    ...
    ValueError: gfp must be a 2-D (Y, X) plane; got shape (1, 2, 3) (project a z-stack first)
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be a 2-D (Y, X) plane; got shape {arr.shape}{extra}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric image; got dtype {arr.dtype}")
    return arr


def finite(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` itself, after checking a float image has no NaN or infinite value.

    Examples
    --------
    >>> finite(np.array([1.0, np.nan]), "chat")
    Traceback (most recent call last):
    ...
    spinalquant.errors.ImageContentError: chat contains NaN or infinite values
    """
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ImageContentError(f"{name} contains NaN or infinite values")
    return image


def labels(image, name: str = "labels") -> np.ndarray:
    """A 2-D (Y, X) label image of integers (a boolean mask becomes labels 0/1, int32).

    Examples
    --------
    >>> labels(np.ones((2, 2), bool)).dtype
    dtype('int32')
    >>> labels(np.zeros((2, 2), np.float32), "neuron_labels")
    Traceback (most recent call last):
    ...
    ValueError: neuron_labels must be an integer label image; got dtype float32
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (Y, X) label image; got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int32)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer label image; got dtype {arr.dtype}")
    return arr
