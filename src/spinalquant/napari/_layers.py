"""Layer data for napari, built from spinalquant objects — numpy/pandas only, no Qt.

A napari "layer data tuple" is ``(data, kwargs, layer_type)``. Everything the
plugin shows goes through these functions, so readers and the widget agree on
names, colours, scales (µm) and the ``metadata["spinalquant"]`` record that
lets the widget find an image's channels and result layers again.

Coordinates: a pixel ``(i, j)`` is drawn centred on ``(i, j) * pixel_size``
(napari's convention); object tables give centroids in µm from the image's
top-left corner, i.e. ``(i + 0.5) * pixel_size``. Points therefore sit at data
coordinates ``y_um / pixel_size - 0.5``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..stack import DEFAULT_ALIASES, Stack, match_channel

LayerData = tuple[Any, dict[str, Any], str]

#: Display colormap per marker (napari colormap names).
MARKER_COLORMAPS: dict[str, str] = {
    "gfp": "green",
    "gfap": "magenta",
    "chat": "cyan",
    "synapse": "yellow",
    "nuclei": "blue",
    "border": "gray",
}
#: Markers offered in the channel mapping, in display order.
MARKERS: tuple[str, ...] = ("gfp", "gfap", "chat", "synapse", "nuclei", "border")

#: Outline colour of each object kind (RGBA 0..1).
KIND_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "gfp_cells": (0.3, 1.0, 0.3, 1.0),
    "astrocytes": (1.0, 0.45, 1.0, 1.0),
    "motor_neurons": (1.0, 0.3, 0.2, 1.0),
    "fibers": (1.0, 0.85, 0.1, 1.0),
}
GFAP_POSITIVE = (1.0, 0.2, 1.0, 1.0)
GFAP_NEGATIVE = (1.0, 0.9, 0.0, 1.0)
GFAP_UNKNOWN = (0.8, 0.8, 0.8, 1.0)
PUNCTA_COLOUR = (1.0, 0.55, 0.0, 1.0)

KIND_TITLES: dict[str, str] = {
    "gfp_cells": "GFP+ cells",
    "astrocytes": "astrocytes",
    "motor_neurons": "motor neurons",
    "puncta": "puncta",
    "fibers": "fibers",
}


def auto_channel_mapping(
    channel_names: Sequence[str], aliases: Mapping[str, Sequence[str]] | None = None
) -> dict[str, str | None]:
    """Which channel carries each marker, guessed from the names.

    Parameters
    ----------
    channel_names : sequence of str
    aliases : mapping, optional
        Marker -> aliases (default :data:`~spinalquant.stack.DEFAULT_ALIASES`).

    Returns
    -------
    dict of str -> str or None
        For every marker of :data:`MARKERS`, a channel name or None (absent or
        ambiguous).

    Examples
    --------
    >>> auto_channel_mapping(["DAPI", "EGFP", "Ch3"])["gfp"]
    'EGFP'
    """
    out: dict[str, str | None] = {}
    for m in MARKERS:
        try:
            i = match_channel(channel_names, m, aliases or DEFAULT_ALIASES)
        except Exception:  # ambiguous: let the user choose
            i = None
        out[m] = None if i is None else str(channel_names[i])
    return out


def marker_of(name: str, aliases: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """The marker a single channel name stands for, or None."""
    for m in MARKERS:
        try:
            if match_channel([name], m, aliases or DEFAULT_ALIASES) is not None:
                return m
        except Exception:
            continue
    return None


def _contrast(plane: Any, *, sparse: bool = True) -> tuple[float, float] | None:
    """Display range: median (sparse fluorescent signal) or 0.5th percentile .. 99.9th."""
    if not isinstance(plane, np.ndarray) or plane.size == 0:
        return None
    sample = plane.ravel()[:: max(1, plane.size // 500_000)]
    lo, hi = np.percentile(sample, [50.0 if sparse else 0.5, 99.9])
    if hi <= lo:
        hi = lo + 1
    return float(lo), float(hi)


def _scale(stack: Stack, ndim: int) -> tuple[float, ...]:
    z, y, x = stack.pixel_size_um
    yx = (y or 1.0, x or 1.0)
    return (z or 1.0, *yx) if ndim == 3 else yx


def stack_layers(stack: Stack, *, source: str | None = None) -> list[LayerData]:
    """One image layer per channel (or one RGB layer), scaled in µm.

    Parameters
    ----------
    stack : Stack
        Data (C, Z, Y, X); a single plane gives 2-D layers.
    source : str, optional
        Identifier stored in ``metadata["spinalquant"]["source"]`` (default:
        the stack's path).

    Returns
    -------
    list of LayerData
    """
    src = source or (str(stack.path) if stack.path is not None else "<array>")
    n_z = stack.shape[1]
    common = {"source": src, "pixel_size_um": list(stack.pixel_size_um),
              "channel_names": list(stack.channel_names), "rgb": stack.rgb,
              "path": str(stack.path) if stack.path is not None else None}
    stem = stack.path.name if stack.path is not None else "image"
    if stack.rgb:
        data = stack.data[:3]
        data = np.moveaxis(np.asarray(data), 0, -1)  # (Z, Y, X, 3)
        if n_z == 1:
            data = data[0]
        meta = {"spinalquant": {**common, "channel": "RGB", "index": -1}}
        kwargs = {"name": f"{stem} RGB", "rgb": True, "scale": _scale(stack, data.ndim - 1),
                  "metadata": meta, "units": "µm"}
        return [(data, kwargs, "image")]
    layers: list[LayerData] = []
    for i, name in enumerate(stack.channel_names):
        data = stack.data[i]
        if n_z == 1:
            data = data[0]
        marker = marker_of(name)
        meta = {"spinalquant": {**common, "channel": name, "index": i, "marker": marker}}
        kwargs: dict[str, Any] = {
            "name": name, "scale": _scale(stack, data.ndim), "blending": "additive",
            "colormap": MARKER_COLORMAPS.get(marker or "", "gray"), "metadata": meta,
            "units": "µm",
        }
        plane = data.max(axis=0) if isinstance(data, np.ndarray) and data.ndim == 3 else data
        lims = _contrast(plane, sparse=marker not in ("nuclei", "border"))
        if lims is not None:
            kwargs["contrast_limits"] = lims
        if marker == "nuclei":
            kwargs["opacity"] = 0.6
        layers.append((data, kwargs, "image"))
    return layers


def roi_layer(mask: np.ndarray, *, pixel_size_um: float, source: str | None = None) -> LayerData | None:
    """The outline of an ROI mask as a Shapes layer of polygons (pixel coordinates)."""
    from skimage.measure import find_contours

    contours = [c for c in find_contours(np.pad(mask.astype(np.uint8), 1), 0.5) if len(c) >= 3]
    if not contours:
        return None
    polys = [c - 1.0 for c in contours]
    kwargs = {"name": "ROI", "shape_type": "polygon", "edge_color": "yellow",
              "face_color": "transparent", "edge_width": 2.0, "scale": (pixel_size_um,) * 2,
              "metadata": {"spinalquant": {"source": source, "kind": "roi"}}, "opacity": 0.8,
              "units": "µm"}
    return (polys, kwargs, "shapes")


# ------------------------------------------------------------------ results
def features_table(table: pd.DataFrame | None) -> pd.DataFrame:
    """An object table as napari ``Labels.features`` (``index`` = label value)."""
    if table is None:
        return pd.DataFrame({"index": pd.Series(dtype="int64")})
    df = table.drop(columns=["image"], errors="ignore").reset_index(drop=True).copy()
    for c in df.columns:  # napari shows nullable dtypes as objects; keep them plain
        if str(df[c].dtype) == "boolean":
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        elif str(df[c].dtype) in ("Int64", "Float64"):
            df[c] = df[c].astype("float64")
    df.insert(0, "index", df["label"].astype("int64") if "label" in df else np.arange(len(df)))
    return df


def gfap_colormap(table: pd.DataFrame | None) -> dict[int | None, tuple[float, ...]]:
    """Direct label colours: GFAP+ magenta, GFAP− yellow, unknown/new grey."""
    colours: dict[int | None, tuple[float, ...]] = {None: GFAP_UNKNOWN, 0: (0.0, 0.0, 0.0, 0.0)}
    if table is None or "gfap_positive" not in table:
        return colours
    for lab, pos in zip(table["label"].tolist(), table["gfap_positive"].tolist(), strict=True):
        if pos is None or pos is pd.NA or (isinstance(pos, float) and np.isnan(pos)):
            continue
        colours[int(lab)] = GFAP_POSITIVE if bool(pos) else GFAP_NEGATIVE
    return colours


def kind_colormap(kind: str) -> dict[int | None, tuple[float, ...]]:
    """One colour for every object of a kind."""
    return {None: KIND_COLOURS.get(kind, (1.0, 1.0, 1.0, 1.0)), 0: (0.0, 0.0, 0.0, 0.0)}


def points_data(puncta: pd.DataFrame | None, *, pixel_size_um: float) -> np.ndarray:
    """Puncta table (µm from the top-left corner) -> (N, 2) data coordinates."""
    if puncta is None or len(puncta) == 0:
        return np.zeros((0, 2))
    yx = puncta[["y_um", "x_um"]].to_numpy(dtype=float)
    return yx / float(pixel_size_um) - 0.5


def puncta_table(points: np.ndarray, features: pd.DataFrame | None, *, pixel_size_um: float
                 ) -> pd.DataFrame:
    """Points layer data (+ features) -> puncta table in µm (inverse of :func:`points_data`)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    df = pd.DataFrame() if features is None else features.reset_index(drop=True).copy()
    df = df.drop(columns=["index", "label", "y_um", "x_um"], errors="ignore")
    if len(df) != len(pts):
        df = pd.DataFrame(index=range(len(pts)))
    df.insert(0, "y_um", (pts[:, 0] + 0.5) * pixel_size_um)
    df.insert(1, "x_um", (pts[:, 1] + 0.5) * pixel_size_um)
    return df


def result_layers(results: Any, *, image: str, out_dir: str | None = None,
                  source: str | None = None) -> list[LayerData]:
    """Labels layers (one per object kind, measurements in ``features``) and a puncta Points layer.

    Parameters
    ----------
    results : Results
    image : str
        The image's name (results folder ``image`` column, or the file name).
    out_dir : str, optional
        Results folder the layers came from.
    source : str, optional
        The channel layers' ``source`` (links results to their image).
    """
    px = float(results.pixel_size_um)
    stem = Path(image).name
    layers: list[LayerData] = []
    order = ("fibers", "astrocytes", "gfp_cells", "motor_neurons")
    for kind in sorted(results.labels, key=lambda k: order.index(k) if k in order else 99):
        lab = np.asarray(results.labels[kind])
        table = results.tables.get(kind)
        meta = {"spinalquant": {"kind": kind, "image": image, "out_dir": out_dir,
                                "source": source, "pixel_size_um": px}}
        colormap = gfap_colormap(table) if kind == "gfp_cells" else kind_colormap(kind)
        kwargs = {"name": f"{KIND_TITLES.get(kind, kind)} [{stem}]", "scale": (px, px),
                  "features": features_table(table), "colormap": colormap, "opacity": 0.9,
                  "metadata": meta, "units": "µm"}
        layers.append((lab, kwargs, "labels"))
    pts = results.tables.get("puncta")
    if pts is not None:
        feats = pts.drop(columns=["image"], errors="ignore").reset_index(drop=True)
        meta = {"spinalquant": {"kind": "puncta", "image": image, "out_dir": out_dir,
                                "source": source, "pixel_size_um": px}}
        kwargs = {"name": f"puncta [{stem}]", "scale": (px, px), "features": feats,
                  "face_color": list(PUNCTA_COLOUR), "border_width": 0.0,
                  "size": max(3.0, 0.8 / px), "metadata": meta, "units": "µm"}
        layers.append((points_data(pts, pixel_size_um=px), kwargs, "points"))
    return layers


def stack_from_layers(
    arrays: Sequence[Any], names: Sequence[str], *, scale: Sequence[float],
    rgb: bool = False, path: str | None = None,
) -> Stack:
    """A :class:`Stack` from image-layer data, so any open layers can be analysed.

    Parameters
    ----------
    arrays : sequence of array, each (Y, X) or (Z, Y, X); one (…, 3) array when ``rgb``
    names : sequence of str
        Channel names.
    scale : sequence of float
        The layers' scale (µm per pixel), ``(y, x)`` or ``(z, y, x)``.
    rgb : bool
    path : str, optional
        The file, when the layers came from one.

    Examples
    --------
    >>> s = stack_from_layers([np.zeros((4, 4)), np.ones((4, 4))], ["DAPI", "GFP"], scale=(0.5, 0.5))
    >>> s.shape, s.pixel_size_um
    ((2, 1, 4, 4), (None, 0.5, 0.5))
    """
    scale = [float(s) for s in scale]
    if rgb:
        a = arrays[0]
        a = a if a.ndim == 4 else a[np.newaxis]
        data = np.moveaxis(np.asarray(a), -1, 0)[:3]
        names = ("R", "G", "B")
    else:
        planes = [a if a.ndim == 3 else a[np.newaxis] for a in arrays]
        if any(not isinstance(p, np.ndarray) for p in planes):
            import dask.array as da

            data = da.stack(planes)
        else:
            data = np.stack(planes)
    n_z = data.shape[1]
    z = scale[-3] if (len(scale) >= 3 and n_z > 1) else None
    ps = (z, scale[-2], scale[-1])
    return Stack(data, tuple(str(n) for n in names), ps, path=Path(path) if path else None, rgb=rgb)
