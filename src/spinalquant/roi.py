"""Ventral-horn regions of interest: ImageJ ``.roi``/RoiSet ``.zip`` and QuPath GeoJSON.

A cord image may come with a sidecar outline (``<stem>.roi``, ``<stem>.zip`` or
``<stem>.geojson`` beside it, see :func:`find_sidecar_roi`). Cord counts are then
restricted to objects whose centroid lies inside the union of those ROIs.

Coordinate convention
---------------------
Polygons are ``(N, 2)`` arrays of ``(y, x)`` vertices in **pixel-edge**
coordinates, the convention of ImageJ and QuPath: ``(0, 0)`` is the top-left
corner of the top-left pixel and pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``.
A pixel belongs to a mask when its centre ``(i + 0.5, j + 0.5)`` lies inside the
polygon, which is what ImageJ does when it turns an ROI into a mask. Object
tables give centroids ``y_um = row * pixel_size_um`` (pixel-centre indices), so
:func:`filter_by_roi` looks a centroid up in the pixel ``round(y_um / pixel_size_um)``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.draw import polygon2mask

from .errors import LoadError

__all__ = [
    "ROI_SUFFIXES",
    "RoiError",
    "filter_by_roi",
    "find_sidecar_roi",
    "polygon_mask",
    "read_roi_mask",
    "roi_area_um2",
    "roi_mask",
    "write_geojson",
    "write_imagej_roi",
]

#: Sidecar ROI suffixes, in the order they are reported.
ROI_SUFFIXES: tuple[str, ...] = (".roi", ".zip", ".geojson")

# Whole image extensions stripped to get a file's stem (longest first wins).
_IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".ome.tiff", ".ome.tif", ".ome.zarr", ".ome.btf", ".tiff", ".tif", ".btf", ".czi",
    ".lif", ".nd2", ".lsm", ".oib", ".oif", ".ims", ".vsi", ".svs", ".ndpi", ".zarr",
    ".png", ".jpg", ".jpeg", ".bmp",
)

# GeoJSON unit names that mean micrometres (QuPath can export either).
_UM_UNITS = {"um", "µm", "μm", "micron", "microns", "micrometer", "micrometre", "micrometers"}


class RoiError(LoadError, ValueError):
    """An ROI file is missing, corrupt, or holds no area ROI."""


# --------------------------------------------------------------------- sidecars
def _stem(path: str | Path) -> str:
    """File name without its whole image extension (``L4_s1.ome.tif`` -> ``L4_s1``)."""
    name = Path(path).name
    low = name.lower()
    for ext in sorted(_IMAGE_EXTENSIONS, key=len, reverse=True):
        if low.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return Path(name).stem


def find_sidecar_roi(image_path: str | Path) -> list[Path]:
    """Sidecar ROI files lying beside an image.

    Parameters
    ----------
    image_path : str or Path
        The image file.

    Returns
    -------
    list of Path
        Existing ``<stem>.roi``, ``<stem>.zip`` and ``<stem>.geojson`` files (in that
        order; the suffix match is case-insensitive), where ``<stem>`` is the image
        name without its whole extension, so ``L4_s1.ome.tif`` pairs with
        ``L4_s1.roi``. Empty when there are none.

    Examples
    --------
    >>> find_sidecar_roi("/nonexistent/L4_s1.ome.tif")
    []
    """
    path = Path(image_path)
    folder = path.parent
    if not folder.is_dir():
        return []
    stem = _stem(path)
    found: dict[str, Path] = {}
    for entry in folder.iterdir():
        name = entry.name
        if not entry.is_file() or entry.name == path.name:
            continue
        for suffix in ROI_SUFFIXES:
            if (
                len(name) == len(stem) + len(suffix)
                and name.startswith(stem)
                and name[len(stem):].lower() == suffix
            ):
                found.setdefault(suffix, entry)
    return [found[s] for s in ROI_SUFFIXES if s in found]


# ---------------------------------------------------------------- rasterising
def polygon_mask(polygon_yx: np.ndarray, *, shape_yx: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside a polygon.

    Parameters
    ----------
    polygon_yx : array-like, shape (N, 2)
        Vertices ``(y, x)`` in pixel-edge coordinates (see the module notes).
    shape_yx : tuple of int
        Shape ``(Y, X)`` of the mask.

    Returns
    -------
    ndarray of bool, shape (Y, X)

    Examples
    --------
    >>> int(polygon_mask([[2, 2], [2, 6], [6, 6], [6, 2]], shape_yx=(8, 8)).sum())
    16
    """
    poly = np.asarray(polygon_yx, dtype=float)
    if poly.ndim != 2 or poly.shape[1] != 2:
        raise ValueError(f"a polygon must be an (N, 2) array of (y, x) vertices; got shape {poly.shape}")
    shape = (int(shape_yx[0]), int(shape_yx[1]))
    if len(poly) < 3:
        return np.zeros(shape, dtype=bool)
    return polygon2mask(shape, poly - 0.5)


def _rings_mask(rings: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Even-odd fill of several closed rings (holes and composite shapes)."""
    out = np.zeros(shape, dtype=bool)
    for ring in rings:
        out ^= polygon_mask(ring, shape_yx=shape)
    return out


# ----------------------------------------------------------------- ImageJ ROIs
def _imagej_rings(roi) -> list[np.ndarray]:
    """Closed (y, x) rings of one ImageJ ROI; empty for line and point ROIs."""
    from roifile import ROI_TYPE

    if roi.roitype in (ROI_TYPE.LINE, ROI_TYPE.POLYLINE, ROI_TYPE.FREELINE,
                       ROI_TYPE.ANGLE, ROI_TYPE.POINT, ROI_TYPE.NOROI):
        return []
    if roi.composite or roi.multi_coordinates is not None:
        rings = roi.coordinates(multi=True)
    elif roi.roitype == ROI_TYPE.OVAL and roi.subpixel_coordinates is None:
        rings = [_ellipse_xy(roi.left, roi.top, roi.right, roi.bottom)]
    else:
        rings = [roi.coordinates()]
    out = []
    for xy in rings:
        xy = np.asarray(xy, dtype=float)
        if xy.ndim == 2 and len(xy) >= 3:
            out.append(xy[:, ::-1])
    return out


def _ellipse_xy(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """Dense (x, y) outline of the ellipse inscribed in a bounding box (area error < 0.01%)."""
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    rx, ry = (right - left) / 2.0, (bottom - top) / 2.0
    n = int(np.clip(4 * (rx + ry), 64, 4096))
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def _read_imagej(path: Path) -> list[list[np.ndarray]]:
    try:
        import roifile
    except ImportError as exc:  # pragma: no cover - roifile is a dependency
        raise RoiError("reading ImageJ ROIs needs the 'roifile' package") from exc
    try:
        rois = roifile.roiread(path)
    except (ValueError, OSError, EOFError, KeyError, IndexError, RuntimeError,
            NotImplementedError, zipfile.BadZipFile) as exc:
        raise RoiError(f"{path}: not a readable ImageJ ROI/RoiSet file ({exc})") from exc
    if not isinstance(rois, list):
        rois = [rois]
    try:
        return [_imagej_rings(r) for r in rois]
    except (ValueError, RuntimeError, NotImplementedError, IndexError) as exc:
        raise RoiError(f"{path}: cannot decode an ROI's coordinates ({exc})") from exc


# ----------------------------------------------------------------- GeoJSON
def _geojson_geometries(obj) -> Iterable[dict]:
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind == "FeatureCollection":
        for feat in obj.get("features", []):
            yield from _geojson_geometries(feat)
    elif kind == "Feature":
        geom = obj.get("geometry")
        if geom is not None:
            yield from _geojson_geometries(geom)
    elif kind == "GeometryCollection":
        for geom in obj.get("geometries", []):
            yield from _geojson_geometries(geom)
    elif kind is not None:
        yield obj
    else:
        raise ValueError(f"not a GeoJSON object: {str(obj)[:80]!r}")


def _geojson_unit_scale(obj, pixel_size_um: float | None, path: Path) -> float:
    """Factor that turns the file's coordinates into pixels."""
    unit = None
    if isinstance(obj, dict):
        props = obj.get("properties") or {}
        unit = obj.get("units", obj.get("unit", props.get("units", props.get("unit"))))
    if unit is None or str(unit).lower() in ("px", "pixel", "pixels"):
        return 1.0
    if str(unit).lower() in _UM_UNITS:
        if pixel_size_um is None or not pixel_size_um > 0:
            raise RoiError(f"{path}: coordinates are in µm; pass pixel_size_um to rasterise them")
        return 1.0 / float(pixel_size_um)
    raise RoiError(f"{path}: unknown coordinate unit {unit!r} (use pixels or µm)")


def _read_geojson(path: Path, pixel_size_um: float | None) -> list[list[np.ndarray]]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RoiError(f"{path}: not a readable GeoJSON file ({exc})") from exc
    if isinstance(obj, list):  # QuPath can export a bare list of features
        obj = {"type": "FeatureCollection", "features": obj}
    scale = _geojson_unit_scale(obj, pixel_size_um, path)
    shapes: list[list[np.ndarray]] = []
    try:
        for geom in _geojson_geometries(obj):
            kind = geom.get("type")
            coords = geom.get("coordinates")
            if kind == "Polygon":
                polygons = [coords]
            elif kind == "MultiPolygon":
                polygons = list(coords)
            else:  # points and lines enclose no area
                continue
            for poly in polygons:
                rings = [np.asarray(r, dtype=float)[:, 1::-1] * scale for r in poly]
                shapes.append([r for r in rings if r.ndim == 2 and len(r) >= 3])
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise RoiError(f"{path}: malformed GeoJSON geometry ({exc})") from exc
    return shapes


# -------------------------------------------------------------------- masks
def read_roi_mask(
    path: str | Path, *, shape_yx: tuple[int, int], pixel_size_um: float | None = None
) -> np.ndarray:
    """Rasterise an ROI file to a boolean mask (union of every area ROI in it).

    Parameters
    ----------
    path : str or Path
        An ImageJ ``.roi`` (polygon, rectangle, oval, freehand, traced, composite),
        an ImageJ RoiSet ``.zip``, or a QuPath ``.geojson`` export (Polygon and
        MultiPolygon features with holes; coordinates in pixels).
    shape_yx : tuple of int
        Shape ``(Y, X)`` of the image the ROI was drawn on.
    pixel_size_um : float, optional
        Only needed for a GeoJSON file that declares its coordinates in µm
        (a top-level ``"units": "um"``).

    Returns
    -------
    ndarray of bool, shape (Y, X)

    Raises
    ------
    RoiError
        For a missing, unreadable or corrupt file, an unknown suffix, or a file with
        no area ROI (only lines or points).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.geojson")
    >>> write_geojson(p, [[[2, 2], [2, 6], [6, 6], [6, 2]]])
    >>> int(read_roi_mask(p, shape_yx=(8, 8)).sum())
    16
    """
    p = Path(path)
    shape = (int(shape_yx[0]), int(shape_yx[1]))
    if not p.is_file():
        raise RoiError(f"ROI file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in (".roi", ".zip"):
        shapes = _read_imagej(p)
    elif suffix in (".geojson", ".json"):
        shapes = _read_geojson(p, pixel_size_um)
    else:
        raise RoiError(f"{p}: unsupported ROI file type {suffix!r}; use .roi, .zip or .geojson")
    shapes = [s for s in shapes if s]
    if not shapes:
        raise RoiError(f"{p}: contains no area ROI (only lines/points, or empty)")
    mask = np.zeros(shape, dtype=bool)
    for rings in shapes:
        mask |= _rings_mask(rings, shape)
    return mask


def roi_mask(
    paths: Iterable[str | Path], *, shape_yx: tuple[int, int], pixel_size_um: float | None = None
) -> np.ndarray | None:
    """Union of the masks of several ROI files, or None when ``paths`` is empty.

    Examples
    --------
    >>> roi_mask([], shape_yx=(4, 4)) is None
    True
    """
    mask = None
    for p in paths:
        m = read_roi_mask(p, shape_yx=shape_yx, pixel_size_um=pixel_size_um)
        mask = m if mask is None else (mask | m)
    return mask


def roi_area_um2(mask: np.ndarray, *, pixel_size_um: float) -> float:
    """Area of a mask in µm².

    Examples
    --------
    >>> roi_area_um2(np.ones((10, 10), bool), pixel_size_um=0.5)
    25.0
    """
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be positive; got {pixel_size_um}")
    return float(np.count_nonzero(mask)) * float(pixel_size_um) ** 2


def filter_by_roi(df: pd.DataFrame, mask: np.ndarray | None, *, pixel_size_um: float) -> pd.DataFrame:
    """Rows of an object table whose ``(y_um, x_um)`` centroid lies inside a mask.

    Parameters
    ----------
    df : DataFrame
        Has ``y_um`` and ``x_um`` columns (µm from the top-left pixel centre).
    mask : ndarray of bool, shape (Y, X), or None
        The ROI; None keeps every row.
    pixel_size_um : float
        Lateral pixel size.

    Returns
    -------
    DataFrame
        A new table (index reset) with the rows inside; centroids off the image are out.

    Examples
    --------
    >>> m = np.zeros((4, 4), bool); m[:2] = True
    >>> t = pd.DataFrame({"y_um": [0.5, 3.0], "x_um": [1.0, 1.0]})
    >>> filter_by_roi(t, m, pixel_size_um=1.0)["y_um"].tolist()
    [0.5]
    """
    if mask is None:
        return df.copy()
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be positive; got {pixel_size_um}")
    missing = {"y_um", "x_um"} - set(df.columns)
    if missing:
        raise ValueError(f"filter_by_roi needs columns y_um and x_um; missing {sorted(missing)}")
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"the ROI mask must be 2-D (Y, X); got shape {m.shape}")
    if len(df) == 0:
        return df.copy().reset_index(drop=True)
    iy = np.floor(df["y_um"].to_numpy(float) / pixel_size_um + 0.5)
    ix = np.floor(df["x_um"].to_numpy(float) / pixel_size_um + 0.5)
    ok = np.isfinite(iy) & np.isfinite(ix)
    ok &= (iy >= 0) & (iy < m.shape[0]) & (ix >= 0) & (ix < m.shape[1])
    keep = np.zeros(len(df), dtype=bool)
    keep[ok] = m[iy[ok].astype(np.intp), ix[ok].astype(np.intp)]
    return df.loc[keep].reset_index(drop=True)


# ------------------------------------------------------------------- writers
def write_imagej_roi(path: str | Path, polygon_yx, *, name: str | None = None) -> Path:
    """Write polygon(s) as an ImageJ ROI.

    Parameters
    ----------
    path : str or Path
        ``.roi`` for one polygon, ``.zip`` for a RoiSet (one ROI per polygon).
    polygon_yx : array-like, shape (N, 2), or a list of them
        Vertices ``(y, x)`` in pixel-edge coordinates.
    name : str, optional
        ROI name (``.roi``) or name prefix (``.zip``).

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_imagej_roi(os.path.join(tempfile.mkdtemp(), "a.roi"), [[1, 1], [1, 5], [5, 5]])
    >>> p.suffix
    '.roi'
    """
    import roifile

    p = Path(path)
    arr = np.asarray(polygon_yx, dtype=object if _is_ragged(polygon_yx) else float)
    polys = [np.asarray(polygon_yx, float)] if arr.ndim == 2 else [np.asarray(q, float) for q in polygon_yx]
    for q in polys:
        if q.ndim != 2 or q.shape[1] != 2 or len(q) < 3:
            raise ValueError(f"each polygon must be an (N>=3, 2) array of (y, x); got shape {q.shape}")
    rois = [roifile.ImagejRoi.frompoints(q[:, ::-1]) for q in polys]
    suffix = p.suffix.lower()
    if suffix == ".roi":
        if len(rois) != 1:
            raise ValueError(f"{p}: a .roi file holds one polygon; use .zip for {len(rois)}")
        if p.exists():
            p.unlink()
        rois[0].tofile(p, name=name)
    elif suffix == ".zip":
        if p.exists():
            p.unlink()
        prefix = name or p.stem
        roifile.roiwrite(p, rois, name=[f"{prefix}-{i + 1:04d}" for i in range(len(rois))], mode="w")
    else:
        raise ValueError(f"{p}: write ImageJ ROIs to a .roi or .zip file")
    return p


def _is_ragged(obj) -> bool:
    try:
        np.asarray(obj, dtype=float)
    except ValueError:
        return True
    return False


def write_geojson(path: str | Path, polygons_yx, *, name: str = "ventral horn") -> None:
    """Write polygons as a QuPath-style GeoJSON FeatureCollection.

    Parameters
    ----------
    path : str or Path
        Output ``.geojson`` file.
    polygons_yx : list
        One entry per feature: an ``(N, 2)`` array of ``(y, x)`` vertices, or a list
        of rings ``[outer, hole, ...]``. Coordinates are pixels (edge convention).
    name : str
        The features' classification name.

    Examples
    --------
    >>> import tempfile, os
    >>> write_geojson(os.path.join(tempfile.mkdtemp(), "a.geojson"), [[[0, 0], [0, 4], [4, 4]]])
    """
    features = []
    for item in polygons_yx:
        arr_ok = not _is_ragged(item)
        first = np.asarray(item, float) if arr_ok else None
        rings_yx = [first] if first is not None and first.ndim == 2 else [np.asarray(r, float) for r in item]
        rings = []
        for r in rings_yx:
            if r.ndim != 2 or r.shape[1] != 2 or len(r) < 3:
                raise ValueError(f"each ring must be an (N>=3, 2) array of (y, x); got shape {r.shape}")
            xy = r[:, ::-1].tolist()
            if xy[0] != xy[-1]:
                xy.append(xy[0])
            rings.append(xy)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {"objectType": "annotation", "classification": {"name": name}},
            }
        )
    Path(path).write_text(
        json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8"
    )
