"""Writers: a :class:`~spinalquant.stack.Stack` or label images to TIFF.

Every writer goes through :func:`_atomic_path`: the file is written under a
temporary name in the destination folder and moved into place with
:func:`os.replace`, so a crash never leaves a half-written image behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..stack import Stack

#: ImageJ hyperstacks can only hold these sample types.
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)

#: Marker in the ImageJ "Info" property that carries the channel names.
INFO_CHANNELS_KEY = "spinalquant_channel_names"


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` on success."""
    dest = Path(path)
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"cannot write {dest}: folder {dest.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _as_numpy(data: Any) -> np.ndarray:
    """Materialise numpy or dask data (dask arrays are computed)."""
    if hasattr(data, "compute") and not isinstance(data, np.ndarray):
        data = data.compute()
    return np.asarray(data)


def _ome_metadata(
    axes: str,
    pixel_size_um: tuple[float | None, float | None, float | None],
    channel_names: tuple[str, ...] | None,
) -> dict[str, Any]:
    z, y, x = pixel_size_um
    meta: dict[str, Any] = {"axes": axes}
    for key, value in (("X", x), ("Y", y), ("Z", z)):
        if value is not None:
            meta[f"PhysicalSize{key}"] = float(value)
            meta[f"PhysicalSize{key}Unit"] = "µm"
    if channel_names is not None:
        meta["Channel"] = {"Name": list(channel_names)}
    return meta


def _resolution(pixel_size_um: tuple[float | None, float | None, float | None]):
    """(x, y) pixels per µm for the TIFF resolution tags, or None if unknown."""
    _, y, x = pixel_size_um
    if y is None or x is None:
        return None
    return (1.0 / float(x), 1.0 / float(y))


def save_stack(
    stack: Stack,
    path: str | os.PathLike[str],
    *,
    format: str = "ome",
    compression: str | None = None,
) -> Path:
    """Write a :class:`Stack` as OME-TIFF or ImageJ hyperstack TIFF.

    Parameters
    ----------
    stack : Stack
        Data ``(C, Z, Y, X)``, channel names and pixel size ``(z, y, x)`` in µm.
        Dask data is computed first.
    path : str or PathLike
        Destination file; its folder must exist. Written atomically.
    format : {"ome", "imagej"}
        ``"ome"``: OME-TIFF with ``Channel Name`` and ``PhysicalSizeX/Y/Z`` in µm.
        ``"imagej"``: ImageJ hyperstack (axes ``ZCYX``), resolution in pixels per
        µm with unit ``micron``, z ``spacing``, channel names as slice
        ``Labels`` and in the ``Info`` property. ImageJ allows only uint8,
        uint16 and float32.
        RGB stacks (``stack.rgb``, 3 uint8 channels) are written as an RGB TIFF
        (samples last, photometric ``rgb``) in either format.
    compression : str, optional
        A tifffile compression name (``"zlib"``); default uncompressed.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        Unknown format, or a dtype ImageJ cannot store.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> s = Stack(np.zeros((2, 1, 8, 8), np.uint16), ("DAPI", "GFP"), (None, 0.5, 0.5))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.ome.tif"
    >>> save_stack(s, out).name
    'a.ome.tif'
    """
    if format not in ("ome", "imagej"):
        raise ValueError(f"format must be 'ome' or 'imagej'; got {format!r}")
    data = _as_numpy(stack.data)
    names = tuple(stack.channel_names)
    ps = stack.pixel_size_um
    resolution = _resolution(ps)
    n_c, n_z = data.shape[:2]

    if stack.rgb:
        if n_c != 3 or data.dtype != np.uint8:
            raise ValueError(
                f"an RGB stack must have 3 uint8 channels; got {n_c} channels of {data.dtype}"
            )
        # (C, Z, Y, X) -> (Z, Y, X, S) or (Y, X, S)
        rgb = np.moveaxis(data, 0, -1)
        rgb = rgb[0] if n_z == 1 else rgb
        axes = "YXS" if n_z == 1 else "ZYXS"
        with _atomic_path(path) as tmp:
            if format == "ome":
                tifffile.imwrite(
                    tmp,
                    rgb,
                    ome=True,
                    photometric="rgb",
                    compression=compression,
                    resolution=None
                    if resolution is None
                    else (resolution[0] * 1e4, resolution[1] * 1e4),
                    resolutionunit=None if resolution is None else "CENTIMETER",
                    metadata=_ome_metadata(axes, ps, None),
                )
            else:
                meta: dict[str, Any] = {"axes": axes, "unit": "micron"}
                if n_z > 1 and ps[0] is not None:
                    meta["spacing"] = float(ps[0])
                tifffile.imwrite(
                    tmp,
                    rgb,
                    imagej=True,
                    photometric="rgb",
                    compression=compression,
                    resolution=resolution,
                    metadata=meta,
                )
        return Path(path)

    if format == "ome":
        with _atomic_path(path) as tmp:
            tifffile.imwrite(
                tmp,
                data,
                ome=True,
                photometric="minisblack",
                compression=compression,
                resolution=None
                if resolution is None
                else (resolution[0] * 1e4, resolution[1] * 1e4),
                resolutionunit=None if resolution is None else "CENTIMETER",
                metadata=_ome_metadata("CZYX", ps, names),
            )
        return Path(path)

    if data.dtype.type not in _IMAGEJ_DTYPES:
        raise ValueError(
            f"ImageJ TIFF cannot store {data.dtype}; use format='ome' or convert to "
            "uint8, uint16 or float32 first"
        )
    zcyx = np.ascontiguousarray(np.moveaxis(data, 0, 1))
    meta = {
        "axes": "ZCYX",
        "unit": "micron",
        "Labels": [names[c] for _ in range(n_z) for c in range(n_c)],
        "Info": f"{INFO_CHANNELS_KEY} = {json.dumps(list(names))}\n",
    }
    if n_c > 1:
        meta["mode"] = "composite"
    if ps[0] is not None:
        meta["spacing"] = float(ps[0])
    with _atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            zcyx,
            imagej=True,
            photometric="minisblack",
            compression=compression,
            resolution=resolution,
            metadata=meta,
        )
    return Path(path)


def _label_dtype(arrays: list[np.ndarray]) -> np.dtype:
    top = max((int(a.max()) if a.size else 0) for a in arrays)
    if top < 2**16:
        return np.dtype(np.uint16)
    if top < 2**32:
        return np.dtype(np.uint32)
    raise ValueError(f"label value {top} does not fit in uint32")


def save_labels(
    path: str | os.PathLike[str],
    labels: Mapping[str, Any],
    *,
    pixel_size_um: float | tuple[float | None, float | None, float | None] | None,
) -> Path:
    """Write label images as one OME-TIFF, one channel per object kind.

    Parameters
    ----------
    path : str or PathLike
        Destination file (``.ome.tif``); written atomically.
    labels : mapping of str to ndarray, each (Y, X) or (Z, Y, X)
        Object kind -> integer label image; all of the same shape. The keys
        become the OME channel names, in order.
    pixel_size_um : float or (z, y, x) tuple or None
        Physical pixel size in µm (a float means y = x, z unknown).

    Returns
    -------
    Path
        The written file. Stored as uint16 when every label fits, else uint32,
        zlib compressed.

    Raises
    ------
    ValueError
        Empty mapping, shapes that differ, non-integer or negative labels.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> lab = np.zeros((8, 8), np.int32); lab[2:4, 2:4] = 1
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "labels.ome.tif"
    >>> _ = save_labels(out, {"gfp_cells": lab}, pixel_size_um=0.5)
    """
    if not labels:
        raise ValueError("save_labels needs at least one label image")
    names = [str(k) for k in labels]
    arrays = [_as_numpy(v) for v in labels.values()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"all label images must have the same shape; got "
            f"{dict(zip(names, (a.shape for a in arrays), strict=True))}"
        )
    shape = arrays[0].shape
    if len(shape) not in (2, 3):
        raise ValueError(f"label images must be (Y, X) or (Z, Y, X); got shape {shape}")
    for name, a in zip(names, arrays, strict=True):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise ValueError(f"label image {name!r} has non-integer dtype {a.dtype}")
        if a.size and np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
            raise ValueError(f"label image {name!r} has negative labels")
    dtype = _label_dtype(arrays)
    stacked = np.stack([a.astype(dtype, copy=False) for a in arrays])
    axes = "CYX" if len(shape) == 2 else "CZYX"
    if pixel_size_um is None:
        ps: tuple[float | None, float | None, float | None] = (None, None, None)
    elif np.isscalar(pixel_size_um):
        ps = (None, float(pixel_size_um), float(pixel_size_um))  # type: ignore[arg-type]
    else:
        ps = tuple(pixel_size_um)  # type: ignore[assignment]
        if len(ps) != 3:
            raise ValueError(f"pixel_size_um must be a float or (z, y, x); got {pixel_size_um}")
    resolution = _resolution(ps)
    with _atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            stacked,
            ome=True,
            photometric="minisblack",
            compression="zlib",
            resolution=None if resolution is None else (resolution[0] * 1e4, resolution[1] * 1e4),
            resolutionunit=None if resolution is None else "CENTIMETER",
            metadata=_ome_metadata(axes, ps, tuple(names)),
        )
    return Path(path)


def load_labels(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read label images written by :func:`save_labels`.

    Parameters
    ----------
    path : str or PathLike
        An OME-TIFF with one channel per object kind.

    Returns
    -------
    dict of str to ndarray
        Channel name -> label image, (Y, X) or (Z, Y, X) as written.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> lab = np.zeros((8, 8), np.uint16); lab[2:4, 2:4] = 1
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "labels.ome.tif"
    >>> _ = save_labels(out, {"fibers": lab}, pixel_size_um=0.5)
    >>> int(load_labels(out)["fibers"].sum())
    4
    """
    from ..errors import LoadError
    from ._tiff import ome_channel_names

    p = Path(path)
    if not p.is_file():
        raise LoadError(f"{p}: label file not found")
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            names = ome_channel_names(tif.ome_metadata) if tif.is_ome else None
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise LoadError(f"{p}: cannot read label file ({exc})") from exc
    if "C" not in axes:
        data = data[np.newaxis]
        axes = "C" + axes
    data = np.moveaxis(data, axes.index("C"), 0)
    n_c = data.shape[0]
    if names is None or len(names) != n_c:
        names = [f"labels{i}" for i in range(n_c)]
    return {n: data[i] for i, n in enumerate(names)}
