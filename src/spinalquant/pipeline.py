"""``analyze(stack, config) -> Results``: the whole per-image analysis, pure.

No paths are opened here: the caller (batch run, napari, a notebook) loads the
:class:`~spinalquant.stack.Stack` and, optionally, an ROI mask, and decides
where results go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .config import Config
from .errors import ImageContentError, MissingChannelError
from .measure.objects import object_table
from .preprocess import project
from .roi import filter_by_roi
from .stack import Stack

CORD_MARKERS = ("gfp", "gfap", "chat", "synapse")
MUSCLE_MARKERS = ("border",)

#: Object tables and their contract columns (besides ``image``).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "gfp_cells": ("label", "y_um", "x_um", "area_um2", "gfap_positive"),
    "astrocytes": ("label", "y_um", "x_um", "area_um2"),
    "motor_neurons": (
        "label", "y_um", "x_um", "area_um2", "perimeter_um", "n_puncta", "puncta_per_100um",
    ),
    "puncta": ("label", "y_um", "x_um"),
    "fibers": ("label", "y_um", "x_um", "area_um2", "min_feret_um"),
}

CORD_FIGURES = (
    "n_gfp_cells", "n_gfp_gfap_cells", "pct_gfp_gfap", "n_astrocytes", "n_motor_neurons",
    "n_puncta", "puncta_per_motor_neuron", "pearson_gfp_gfap", "manders_m1_gfp_gfap",
    "manders_m2_gfp_gfap", "roi_area_um2",
)
MUSCLE_FIGURES = (
    "n_fibers", "fiber_csa_mean_um2", "fiber_csa_median_um2", "fiber_min_feret_mean_um",
)

Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class Results:
    """Everything measured on one image.

    Attributes
    ----------
    section : {"cord", "muscle"}
    summary : dict
        The image's row of ``summary.csv`` (figures that do not apply are None).
    tables : dict of str -> DataFrame
        Object tables (``gfp_cells``, ``astrocytes``, ``motor_neurons``,
        ``puncta``, ``fibers``; extra ones such as ``fiber_histogram``), one
        row per object, without the ``image`` column.
    labels : dict of str -> ndarray (Y, X)
        Label images of every segmentation (0 = background).
    planes : dict of str -> ndarray (Y, X)
        The projected channel planes that were analysed (for QC overlays).
    pixel_size_um : float
    roi_mask : ndarray of bool or None
    """

    section: str
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    labels: dict[str, np.ndarray]
    planes: dict[str, np.ndarray]
    pixel_size_um: float
    roi_mask: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # the label images would flood a notebook
        figures = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.summary.items()
                   if v is not None}
        rows = {k: len(t) for k, t in self.tables.items()}
        return (f"Results(section={self.section!r}, pixel_size_um={self.pixel_size_um}, "
                f"summary={figures}, table rows={rows}, labels={sorted(self.labels)})")


def empty_table(kind: str) -> pd.DataFrame:
    """An object table with the contract's columns and no rows."""
    cols = TABLE_COLUMNS[kind]
    dtypes = {"label": "int64", "gfap_positive": "boolean", "n_puncta": "int64"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "float64")) for c in cols})


#: Granules (bright in every channel) are rejected only when at least this many
#: other marker channels, besides a nuclear stain, can show that an object is bright
#: in all of them.
GRANULE_MIN_REFERENCES = 2


#: Channel names of transmitted-light (non-fluorescence) images.
_TRANSMITTED = re.compile(r"(?i)\b(dic|bf|bright\s*field|mono|trans(mitted)?|t-?pmt|phase|tl)\b")


def detect_section(stack: Stack, config: Config | None = None) -> str:
    """"cord" or "muscle", decided from channel names (see the result contract).

    Raises
    ------
    MissingChannelError
        When no channel identifies either kind of section.
    """
    cfg = config or Config()
    if stack.rgb:
        return "muscle"
    present = {m for m in (*CORD_MARKERS, *MUSCLE_MARKERS, "nuclei") if has_marker(stack, cfg, m)}
    if present & set(CORD_MARKERS):
        return "cord"
    if present & set(MUSCLE_MARKERS):
        return "muscle"
    # the example names a channel that no marker claims: not the nuclear stain, and a
    # fluorescence channel before a transmitted-light one (DIC, brightfield, "Mono")
    nuclei = stack.channel_index(cfg.marker("nuclei"), cfg.aliases) if "nuclei" in present else None
    free = [n for i, n in enumerate(stack.channel_names) if i != nuclei]
    free.sort(key=lambda n: bool(_TRANSMITTED.search(n)))
    example = free[0] if free else "Ch2"
    raise MissingChannelError(
        f"{stack.name}: cannot tell cord from muscle: channels {list(stack.channel_names)} "
        "name none of GFP, GFAP, ChAT, a synaptic marker (cord) or Laminin/Dystrophin/WGA "
        f"(muscle). Map them in the config, e.g. [channels] gfp = \"{example}\" "
        "(a channel name or its 0-based index)"
    )


def has_marker(stack: Stack, cfg: Config, marker: str) -> bool:
    """Whether ``stack`` has the channel the config maps ``marker`` to ("gfp", "chat", ...).

    Examples
    --------
    >>> from spinalquant.synthetic import make_muscle_section
    >>> st = make_muscle_section(seed=0, shape=(64, 64)).stack
    >>> has_marker(st, Config(), "border"), has_marker(st, Config(), "gfp")
    (True, False)
    """
    key = cfg.marker(marker)
    if isinstance(key, int):
        return 0 <= key < stack.n_channels
    return stack.has_channel(key, cfg.aliases)


def marker_plane(stack: Stack, cfg: Config, marker: str) -> np.ndarray:
    """The (Y, X) plane of a marker's channel, projected as ``[image] projection`` says.

    Raises :class:`~spinalquant.errors.MissingChannelError` when the channel is absent.
    """
    return project(stack.channel(cfg.marker(marker), cfg.aliases), method=cfg.image.projection)


def _channel_label(stack: Stack, cfg: Config, marker: str) -> str:
    """The file's name of the channel a marker maps to (for messages)."""
    try:
        i = stack.channel_index(cfg.marker(marker), cfg.aliases)
    except MissingChannelError:
        return marker
    names = stack.channel_names
    return f"'{names[i]}'" if i < len(names) else f"channel {i}"


def resolve_pixel_size(stack: Stack, cfg: Config) -> float:
    """The lateral pixel size (µm) an analysis uses.

    The config's ``[image] pixel_size_um`` when ``override_pixel_size`` is set,
    else the file's calibration, else the config's value as a fallback; raises
    :class:`~spinalquant.errors.PixelSizeError` when there is none.
    """
    if cfg.image.override_pixel_size and cfg.image.pixel_size_um:
        return float(cfg.image.pixel_size_um)
    _, y, x = stack.pixel_size_um
    if (y is None or x is None) and cfg.image.pixel_size_um:
        return float(cfg.image.pixel_size_um)
    return stack.yx_um  # raises PixelSizeError with a clear message when unknown


def cord_counts(tables: dict[str, pd.DataFrame], *, area_mm2: float,
                gfap_called: bool) -> dict[str, Any]:
    """The count and density figures of ``summary.csv`` from a cord image's object tables.

    One definition for a whole-image analysis, a tiled one and a napari review.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Object tables by kind (``gfp_cells``, ``astrocytes``, ``motor_neurons``,
        ``puncta``); kinds that were not analysed are absent.
    area_mm2 : float
        The area the densities are per: the ROI's, else the image's.
    gfap_called : bool
        Whether GFP cells were called GFAP+/− (the image has a GFAP channel);
        otherwise ``n_gfp_gfap_cells``, ``pct_gfp_gfap`` and
        ``gfap_bleed_coefficient`` (the bleed-through subtracted before the
        calls, from the cells' ``bleed_coefficient`` column) stay None.

    Returns
    -------
    dict
        Only the figures the tables allow; the others are left out.

    Examples
    --------
    >>> t = {"gfp_cells": pd.DataFrame({"gfap_positive": [True, False, True, True]})}
    >>> c = cord_counts(t, area_mm2=0.5, gfap_called=True)
    >>> c["n_gfp_cells"], c["gfp_cells_per_mm2"], c["pct_gfp_gfap"]
    (4, 8.0, 75.0)
    """
    out: dict[str, Any] = {}
    per_mm2 = (lambda n: n / area_mm2) if area_mm2 else (lambda n: None)
    if "gfp_cells" in tables:
        t = tables["gfp_cells"]
        n = len(t)
        out["n_gfp_cells"] = n
        out["gfp_cells_per_mm2"] = per_mm2(n)
        if gfap_called:
            npos = int(t["gfap_positive"].fillna(False).astype(bool).sum())
            out["n_gfp_gfap_cells"] = npos
            out["pct_gfp_gfap"] = 100.0 * npos / n if n else None
            # the GFP->GFAP bleed-through subtracted before the calls (set or estimated)
            coef = t["bleed_coefficient"].dropna() if "bleed_coefficient" in t else ()
            out["gfap_bleed_coefficient"] = float(coef.iloc[0]) if len(coef) else None
    if "astrocytes" in tables:
        astro = tables["astrocytes"]
        out["n_astrocytes"] = len(astro)
        out["astrocytes_per_mm2"] = per_mm2(len(astro))
        if "gfp_positive" in astro:
            n_host = int((~astro["gfp_positive"].fillna(False).astype(bool)).sum())
            out["n_host_astrocytes"] = n_host
            out["host_astrocytes_per_mm2"] = per_mm2(n_host)
    neurons = tables.get("motor_neurons")
    if neurons is not None:
        out["n_motor_neurons"] = len(neurons)
        out["motor_neurons_per_mm2"] = per_mm2(len(neurons))
    if "puncta" in tables:
        out["n_puncta"] = len(tables["puncta"])
        if neurons is not None and len(neurons):
            out["puncta_per_motor_neuron"] = float(neurons["n_puncta"].mean())
            out["puncta_per_100um_mean"] = float(neurons["puncta_per_100um"].mean())
    return out


def analyze(
    stack: Stack,
    config: Config | None = None,
    *,
    roi_mask: np.ndarray | None = None,
    section: str | None = None,
    progress: Progress | None = None,
) -> Results:
    """Analyse one image: segment every object kind its channels allow, measure.

    Parameters
    ----------
    stack : Stack
        The image, data (C, Z, Y, X).
    config : Config, optional
        Parameters; defaults to ``Config()``.
    roi_mask : ndarray of bool, shape (Y, X), optional
        Ventral-horn ROI: cord objects count only when their centroid is inside.
    section : {"cord", "muscle"}, optional
        Force the kind of analysis instead of deciding from channel names.
    progress : callable, optional
        Called with a short message before each step.

    Returns
    -------
    Results

    Examples
    --------
    >>> from spinalquant.synthetic import make_cord_section
    >>> ph = make_cord_section(seed=1, shape=(320, 320), n_motor_neurons=2)
    >>> res = analyze(ph.stack)
    >>> res.section
    'cord'
    """
    cfg = config or Config()
    say = progress or (lambda _msg: None)
    px = resolve_pixel_size(stack, cfg)  # first: without units nothing else is meaningful
    kind = section or detect_section(stack, cfg)
    if roi_mask is not None:
        roi_mask = np.asarray(roi_mask, dtype=bool)
        if roi_mask.shape != stack.shape[2:]:
            raise ValueError(
                f"{stack.name}: ROI mask shape {roi_mask.shape} does not match the image {stack.shape[2:]}"
            )
    if kind == "cord":
        return _analyze_cord(stack, cfg, px, roi_mask, say)
    if kind == "muscle":
        return _analyze_muscle(stack, cfg, px, say)
    raise ValueError(f"section must be 'cord' or 'muscle'; got {kind!r}")


# --------------------------------------------------------------------- cord
def on_gfp_cells(labels: np.ndarray, ids, gfp_labels: np.ndarray) -> np.ndarray:
    """Whether each object lies on GFP+ cells (at least half of its pixels).

    An astrocyte on a GFP+ cell is a donor cell that became an astrocyte, not a
    host astrocyte (``gfp_positive`` of astrocytes.csv, ``n_host_astrocytes``).

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Objects (e.g. astrocytes).
    ids : array-like of int
        The labels to test.
    gfp_labels : ndarray of int, shape (Y, X)
        GFP+ cells.

    Returns
    -------
    ndarray of bool, one per id

    Examples
    --------
    >>> astro = np.array([[1, 1, 0, 2, 2]]); gfp = np.array([[5, 5, 0, 0, 6]])
    >>> on_gfp_cells(astro, [1, 2], gfp).tolist()
    [True, True]
    >>> on_gfp_cells(astro, [1, 2], np.array([[5, 0, 0, 0, 0]])).tolist()
    [True, False]
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size == 0:
        return np.zeros(0, bool)
    share = ndi.mean(np.asarray(gfp_labels) > 0, np.asarray(labels), ids)
    return np.asarray(share, dtype=float).reshape(-1) >= 0.5


def relabel_kept(labels: np.ndarray, keep: pd.Series | np.ndarray) -> np.ndarray:
    """Zero out objects whose label is not in ``keep``; labels are not renumbered.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
    keep : array-like of int
        Labels to keep (for example the ``label`` column of a filtered table).

    Returns
    -------
    ndarray
        A new label image of the same dtype.

    Examples
    --------
    >>> relabel_kept(np.array([[1, 2, 3]]), [1, 3]).tolist()
    [[1, 0, 3]]
    """
    keep_arr = np.zeros(int(labels.max(initial=0)) + 1, dtype=bool)
    keep_arr[np.asarray(keep, dtype=np.int64)] = True
    keep_arr[0] = False
    return np.where(keep_arr[labels], labels, 0).astype(labels.dtype)


def _analyze_cord(
    stack: Stack, cfg: Config, px: float, roi: np.ndarray | None, say: Progress
) -> Results:
    from .measure import colocalization as coloc
    from .measure.synapses import perisomatic_puncta
    from .segment.astrocytes import gfap_area_fraction, segment_astrocytes
    from .segment.gfp_cells import gfap_positivity, segment_gfp_cells
    from .segment.motor_neurons import measure_motor_neurons, segment_motor_neurons
    from .segment.puncta import detect_puncta

    present = [m for m in CORD_MARKERS if has_marker(stack, cfg, m)]
    planes = {m: marker_plane(stack, cfg, m) for m in present}
    if has_marker(stack, cfg, "nuclei"):
        planes["nuclei"] = marker_plane(stack, cfg, "nuclei")
    for m, p in planes.items():
        if not np.any(p):
            raise ImageContentError(
                f"{stack.name}: the {m.upper()} channel ({_channel_label(stack, cfg, m)}) is empty "
                "(all zeros); check the file or the channel mapping"
            )

    def reference(exclude: str) -> np.ndarray | None:
        # autofluorescent granules are bright in every channel; with fewer than two other
        # markers (a nuclear stain does not count: every cell has a nucleus) a real object
        # can be too (a GFAP+ donor cell in a GFP+GFAP image), so the test is not made
        others = [p for m, p in planes.items() if m != exclude]
        if sum(m not in (exclude, "nuclei") for m in planes) < GRANULE_MIN_REFERENCES:
            return None
        return np.stack(others)

    summary: dict[str, Any] = dict.fromkeys(CORD_FIGURES)
    tables: dict[str, pd.DataFrame] = {}
    labels: dict[str, np.ndarray] = {}
    extras: dict[str, Any] = {}

    if roi is not None:
        summary["roi_area_um2"] = float(roi.sum()) * px * px
    area_mm2 = (summary["roi_area_um2"] or planes[present[0]].size * px * px) / 1e6

    if "gfp" in planes:
        say("GFP+ cells")
        if cfg.image.mode == "3d" and stack.is_3d:
            from .segment.gfp_cells import segment_gfp_cells_3d

            z = stack.pixel_size_um[0] or cfg.image.z_step_um
            if z is None:
                raise ImageContentError(
                    f"{stack.name}: 3-D mode needs the z step; the file has none: set [image] z_step_um"
                )
            lab3 = segment_gfp_cells_3d(
                np.asarray(stack.channel(cfg.marker("gfp"), cfg.aliases)),
                spacing_zyx=(z, px, px), params=cfg.gfp_cells,
            )
            # each 3-D cell counted once; its footprint is the max projection of its label
            lab = lab3.max(axis=0)
        else:
            lab = segment_gfp_cells(
                planes["gfp"], pixel_size_um=px, params=cfg.gfp_cells, reference=reference("gfp")
            )
        table = object_table(lab, pixel_size_um=px)
        if "gfap" in planes:
            say("GFAP call per GFP+ cell")
            f, g = planes["gfap"], planes["gfp"]
            if stack.is_3d and cfg.image.projection == "max" and cfg.gfap_positivity.cell_planes:
                # each cell read in its own optical sections (gfap_positivity, step 0)
                f, g = (np.asarray(stack.channel(cfg.marker(m), cfg.aliases)) for m in ("gfap", "gfp"))
            pos = gfap_positivity(lab, f, gfp=g, pixel_size_um=px, params=cfg.gfap_positivity)
            table = table.merge(pos, on="label", how="left")
            table["gfap_positive"] = table["gfap_positive"].astype("boolean")
        else:
            table["gfap_positive"] = pd.Series([pd.NA] * len(table), dtype="boolean")
        table = filter_by_roi(table, roi, pixel_size_um=px)
        lab = relabel_kept(lab, table["label"])
        tables["gfp_cells"] = table
        labels["gfp_cells"] = lab

    if "gfp" in planes and "gfap" in planes:
        say("GFP/GFAP colocalization")
        mask = roi if (roi is not None and cfg.colocalization.within_roi) else None
        use_costes = cfg.colocalization.manders_threshold == "costes"
        c = coloc.colocalization(
            planes["gfp"], planes["gfap"], mask=mask,
            costes=cfg.colocalization.costes or use_costes, pvalue=cfg.colocalization.pvalue,
            n_iter=cfg.colocalization.n_iter, pixel_size_um=px,
        )
        c = {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in c.items()}
        summary["pearson_gfp_gfap"] = c.get("pearson")
        if use_costes:
            # Manders above the Costes automatic thresholds (Coloc 2's tM1/tM2):
            # above-zero M1/M2 are ~1 for any image with a non-zero background
            summary["manders_m1_gfp_gfap"] = c.get("tm1")
            summary["manders_m2_gfp_gfap"] = c.get("tm2")
        else:
            summary["manders_m1_gfp_gfap"] = c.get("manders_m1")
            summary["manders_m2_gfp_gfap"] = c.get("manders_m2")
        for k in ("costes_threshold_a", "costes_threshold_b", "pvalue"):
            if c.get(k) is not None:
                extras[f"coloc_{k}_gfp_gfap"] = c[k]

    if "gfap" in planes:
        say("GFAP+ astrocytes")
        lab = segment_astrocytes(planes["gfap"], pixel_size_um=px, params=cfg.astrocytes)
        table = filter_by_roi(object_table(lab, pixel_size_um=px), roi, pixel_size_um=px)
        labels["astrocytes"] = relabel_kept(lab, table["label"])
        if "gfp_cells" in labels:
            table["gfp_positive"] = on_gfp_cells(labels["astrocytes"], table["label"], labels["gfp_cells"])
        tables["astrocytes"] = table
        extras["gfap_area_fraction"] = float(
            gfap_area_fraction(planes["gfap"], pixel_size_um=px, mask=roi)
        )

    neurons = None
    if "chat" in planes:
        say("ChAT+ motor neurons")
        lab = segment_motor_neurons(planes["chat"], pixel_size_um=px, params=cfg.motor_neurons)
        neurons = filter_by_roi(measure_motor_neurons(lab, pixel_size_um=px), roi,
                                pixel_size_um=px)
        lab = relabel_kept(lab, neurons["label"])
        labels["motor_neurons"] = lab

    if "synapse" in planes:
        say("synaptic puncta")
        pts = detect_puncta(
            planes["synapse"], pixel_size_um=px, params=cfg.puncta, reference=reference("synapse")
        )
        pts = filter_by_roi(pts, roi, pixel_size_um=px).reset_index(drop=True)
        pts.insert(0, "label", np.arange(1, len(pts) + 1, dtype=np.int64))
        tables["puncta"] = pts
        if neurons is not None:
            peri = perisomatic_puncta(
                labels["motor_neurons"], pts, pixel_size_um=px, distance_um=cfg.synapses.distance_um,
                inside_um=cfg.synapses.inside_um,
            )
            neurons = neurons.merge(
                peri[["label", "n_puncta", "puncta_per_100um"]], on="label", how="left"
            )
            neurons["n_puncta"] = neurons["n_puncta"].fillna(0).astype("int64")
    if neurons is not None:
        for col in ("n_puncta", "puncta_per_100um"):
            if col not in neurons:
                neurons[col] = pd.Series([pd.NA] * len(neurons), dtype="Float64")
        tables["motor_neurons"] = neurons

    summary.update(cord_counts(tables, area_mm2=area_mm2, gfap_called="gfp" in planes and "gfap" in planes))
    summary.update(extras)
    for kind in ("gfp_cells", "astrocytes", "motor_neurons", "puncta"):
        if kind in tables:
            tables[kind] = order_columns(tables[kind], kind)
    return Results("cord", summary, tables, labels, planes, px, roi)


def order_columns(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The contract's columns for an object ``kind`` first (``TABLE_COLUMNS``), extras after.

    Parameters
    ----------
    df : DataFrame
        An object table.
    kind : str
        A key of ``TABLE_COLUMNS`` (``gfp_cells``, ``fibers``, ...).

    Returns
    -------
    DataFrame
        The same rows, columns reordered (missing contract columns are not added).

    Examples
    --------
    >>> order_columns(pd.DataFrame({"extra": [1], "label": [7]}), "fibers").columns.tolist()
    ['label', 'extra']
    """
    first = [c for c in TABLE_COLUMNS[kind] if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


# ------------------------------------------------------------------- muscle
def _analyze_muscle(stack: Stack, cfg: Config, px: float, say: Progress) -> Results:
    from .measure.morphology import fiber_histogram, fiber_summary, measure_fibers
    from .segment.fibers import segment_fibers

    planes: dict[str, np.ndarray] = {}
    nuclei = None
    if stack.rgb:
        rgb = np.stack([project(stack.data[c], method=cfg.image.projection) for c in range(3)], axis=-1)
        planes["rgb"] = rgb
        say("fibers (H&E)")
        lab = segment_fibers(rgb, pixel_size_um=px, stain="he", params=cfg.fibers)
    else:
        border = marker_plane(stack, cfg, "border")
        if not np.any(border):
            raise ImageContentError(f"{stack.name}: the fiber-border channel is empty (all zeros)")
        planes["border"] = border
        if has_marker(stack, cfg, "nuclei"):
            nuclei = planes["nuclei"] = marker_plane(stack, cfg, "nuclei")
        say("fibers (border stain)")
        lab = segment_fibers(border, pixel_size_um=px, stain="laminin", params=cfg.fibers)
    table = measure_fibers(
        lab, pixel_size_um=px, exclude_border=cfg.muscle.exclude_border, nuclei=nuclei,
        nuclei_kind="intensity",
    )
    lab = relabel_kept(lab, table["label"])
    summ = dict.fromkeys(MUSCLE_FIGURES)
    summ.update(fiber_summary(table, atrophy_threshold_um2=cfg.muscle.atrophy_threshold_um2))
    bins = np.arange(0.0, cfg.muscle.histogram_max_um2 + cfg.muscle.histogram_bin_um2,
                     cfg.muscle.histogram_bin_um2)
    hist = fiber_histogram(table, bins_um2=bins)
    tables = {"fibers": order_columns(table, "fibers"), "fiber_histogram": hist}
    return Results("muscle", summ, tables, {"fibers": lab}, planes, px, None)
