"""Publication-style figures of a study: one point per animal over group box plots.

Every function builds a :class:`matplotlib.figure.Figure` directly (no
``pyplot``, no global state, Agg canvas), so it works headless, in notebooks
and in worker processes. :func:`save_figure` writes PNG (300 dpi) and SVG with
editable text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "GROUP_COLORS",
    "group_colors",
    "plot_distribution",
    "plot_measure",
    "plot_study",
    "save_figure",
]

#: Okabe–Ito colour-blind-safe palette, in group order.
GROUP_COLORS = (
    "#7f7f7f",
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
)

_RC = {
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "xtick.major.width": 0.8,
    "ytick.major.width": 0.8,
    "svg.fonttype": "none",
    "svg.hashsalt": "spinalquant",
}


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """A colour per group (stable for a given order).

    Examples
    --------
    >>> group_colors(["vehicle", "Muse"])
    {'vehicle': '#7f7f7f', 'Muse': '#0072B2'}
    """
    return {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(groups)}


def _new_figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _p_text(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _order(values: pd.Series, order: Sequence[str] | None) -> list[str]:
    present = list(pd.unique(values.astype(str)))
    if order is None:
        return present
    return [g for g in order if g in present]


def plot_measure(
    per_animal: pd.DataFrame,
    measure: str,
    *,
    label: str | None = None,
    group_col: str = "group",
    order: Sequence[str] | None = None,
    stats: pd.DataFrame | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    size: tuple[float, float] = (2.8, 3.2),
) -> Figure:
    """Box plot per group with one point per animal, n per group and significant pairs.

    Parameters
    ----------
    per_animal : DataFrame
        One row per animal (:func:`spinalquant.stats.aggregate_per_animal`).
    measure : str
        Column to plot.
    label : str, optional
        y-axis label (with units); default the column name.
    order : sequence of str, optional
        Groups from left to right.
    stats : DataFrame, optional
        Output of :func:`spinalquant.stats.compare_groups` (or ``stats.csv``);
        its omnibus ANOVA / Kruskal–Wallis p-values go in the title and pairs
        with Tukey p < ``alpha`` get a bracket.
    seed : int
        Seed of the horizontal jitter of the points.

    Returns
    -------
    Figure

    Examples
    --------
    >>> df = pd.DataFrame({"group": ["a", "a", "b", "b"], "v": [1.0, 2.0, 4.0, 5.0]})
    >>> fig = plot_measure(df, "v")
    >>> len(fig.axes)
    1
    """
    if measure not in per_animal.columns:
        raise KeyError(f"'{measure}' is not a column of the per-animal table")
    vals = pd.to_numeric(per_animal[measure], errors="coerce")
    groups = per_animal[group_col].astype(str)
    names = _order(groups[vals.notna()], order)
    colors = group_colors(_order(groups, order))
    data = [vals[(groups == g) & vals.notna()].to_numpy(float) for g in names]
    rng = np.random.default_rng(seed)

    with rc_context(_RC):
        fig = _new_figure(size)
        ax = fig.add_subplot()
        pos = np.arange(1, len(names) + 1)
        if names:
            bp = ax.boxplot(
                data,
                positions=pos,
                widths=0.55,
                showfliers=False,
                patch_artist=True,
                medianprops={"color": "black", "linewidth": 1.2},
                whiskerprops={"linewidth": 0.8},
                capprops={"linewidth": 0.8},
                boxprops={"linewidth": 0.8},
            )
            for patch, g in zip(bp["boxes"], names, strict=True):
                patch.set_facecolor(colors[g])
                patch.set_alpha(0.25)
            for x0, g, y in zip(pos, names, data, strict=True):
                jitter = rng.uniform(-0.12, 0.12, len(y))
                ax.scatter(
                    x0 + jitter,
                    y,
                    s=22,
                    color=colors[g],
                    edgecolor="black",
                    linewidth=0.5,
                    zorder=3,
                )
        ax.set_xticks(pos, [f"{g}\nn = {len(y)}" for g, y in zip(names, data, strict=True)])
        ax.set_xlim(0.4, len(names) + 0.6)
        ax.set_ylabel(label or measure)
        ymax = max((float(np.max(y)) for y in data if len(y)), default=1.0)
        ymin = min((float(np.min(y)) for y in data if len(y)), default=0.0)
        if ymin >= 0:
            ax.set_ylim(bottom=0)
        span = (ymax - min(ymin, 0.0)) or 1.0
        title = measure
        if stats is not None and len(stats):
            st = stats[stats["measure"] == measure]
            omni = st[st["comparison"] == "all groups"]
            if len(omni):
                o = omni.iloc[0]
                err = o.get("error")
                if isinstance(err, str) and err:
                    title = "not tested (see stats.csv)"
                else:
                    title = (
                        f"ANOVA {_p_text(float(o['anova_p']))}\n"
                        f"Kruskal–Wallis {_p_text(float(o['kruskal_p']))}"
                    )
            level = 0
            for _, r in st[st["comparison"] != "all groups"].iterrows():
                p = pd.to_numeric(r.get("tukey_p"), errors="coerce")
                if (
                    pd.isna(p)
                    or p >= alpha
                    or r["group_a"] not in names
                    or r["group_b"] not in names
                ):
                    continue
                xa = names.index(r["group_a"]) + 1
                xb = names.index(r["group_b"]) + 1
                y = ymax + span * (0.08 + 0.12 * level)
                ax.plot(
                    [xa, xa, xb, xb],
                    [y - span * 0.02, y, y, y - span * 0.02],
                    color="black",
                    linewidth=0.8,
                )
                ax.text(
                    (xa + xb) / 2,
                    y + span * 0.01,
                    f"Tukey {_p_text(float(p))}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
                level += 1
            if level:
                ax.set_ylim(top=ymax + span * (0.12 + 0.12 * level))
        ax.set_title(title, fontsize=8)
    return fig


def plot_distribution(
    objects: pd.DataFrame,
    column: str,
    *,
    group_col: str = "group",
    animal_col: str = "animal",
    order: Sequence[str] | None = None,
    label: str | None = None,
    bins: int | Sequence[float] = 30,
    size: tuple[float, float] = (6.4, 3.0),
) -> Figure:
    """Per-group distributions of an object measure: violins and density histograms.

    Parameters
    ----------
    objects : DataFrame
        One row per object (e.g. fibers) with ``column``, ``group`` and
        optionally ``animal`` (animal medians are drawn on the violins).
    column : str
        Measure, e.g. ``"area_um2"``.
    bins : int or sequence of float
        Histogram bins (shared by all groups).

    Returns
    -------
    Figure
        Left: violins (pooled objects) with each animal's median as a dot;
        right: step histograms normalised to density.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"group": ["a"] * 50 + ["b"] * 50, "area_um2": rng.gamma(9, 200, 100)})
    >>> len(plot_distribution(df, "area_um2").axes)
    2
    """
    if column not in objects.columns:
        raise KeyError(f"'{column}' is not a column of the object table")
    vals = pd.to_numeric(objects[column], errors="coerce")
    groups = objects[group_col].astype(str)
    names = _order(groups[vals.notna()], order)
    colors = group_colors(_order(groups, order))
    data = [vals[(groups == g) & vals.notna()].to_numpy(float) for g in names]
    with rc_context(_RC):
        fig = _new_figure(size)
        ax_v, ax_h = fig.subplots(1, 2, width_ratios=(1, 1.2))
        pos = np.arange(1, len(names) + 1)
        usable = [i for i, d in enumerate(data) if len(d) >= 2]
        if usable:
            parts = ax_v.violinplot(
                [data[i] for i in usable],
                positions=pos[usable],
                widths=0.8,
                showextrema=False,
                showmedians=True,
            )
            for body, i in zip(parts["bodies"], usable, strict=True):
                body.set_facecolor(colors[names[i]])
                body.set_edgecolor("black")
                body.set_linewidth(0.5)
                body.set_alpha(0.45)
            parts["cmedians"].set_color("black")
        if animal_col in objects.columns:
            med = (
                pd.DataFrame({"g": groups, "a": objects[animal_col].astype(str), "v": vals})
                .dropna()
                .groupby(["g", "a"])["v"]
                .median()
            )
            for x0, g in zip(pos, names, strict=True):
                if g in med.index.get_level_values(0):
                    y = med.loc[g].to_numpy(float)
                    ax_v.scatter(
                        np.full(len(y), x0),
                        y,
                        s=14,
                        color=colors[g],
                        edgecolor="black",
                        linewidth=0.5,
                        zorder=3,
                    )
        # n here counts objects (fibers, cells), not animals as in the other plots: say both
        per_group = {}
        if animal_col in objects.columns:
            per_group = objects[animal_col].astype(str).groupby(groups).nunique().to_dict()
        ax_v.set_xticks(pos, [f"{g}\n{len(d)} objects" + (f"\n{per_group[g]} animals" if g in per_group else "")
                              for g, d in zip(names, data, strict=True)])
        ax_v.set_title("dots: median of each animal", fontsize=7)
        ax_v.set_ylabel(label or column)
        ax_v.set_ylim(bottom=0)
        allv = np.concatenate(data) if data else np.array([])
        if isinstance(bins, int) and allv.size:
            edges = np.linspace(0.0, float(np.quantile(allv, 0.995)) * 1.05 or 1.0, bins + 1)
        else:
            edges = np.asarray(bins, float) if not isinstance(bins, int) else np.linspace(0, 1, 2)
        for g, d in zip(names, data, strict=True):
            if len(d):
                ax_h.hist(
                    d,
                    bins=edges,
                    density=True,
                    histtype="step",
                    linewidth=1.4,
                    color=colors[g],
                    label=f"{g} (median {np.median(d):.0f})",
                )
        ax_h.set_xlabel(label or column)
        ax_h.set_ylabel("density")
        if names:
            ax_h.legend(frameon=False, fontsize=7)
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 300) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.svg`` (suffix of ``path`` ignored).

    Returns
    -------
    list of Path
        The PNG and SVG files.
    """
    base = Path(path)
    if base.suffix.lower() in (".png", ".svg", ".pdf"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with rc_context(_RC):
        for ext in ("png", "svg"):
            f = base.with_name(f"{base.name}.{ext}")
            meta: dict[str, Any] = {"Date": None} if ext == "svg" else {}
            fig.savefig(f, dpi=dpi, metadata=meta)
            out.append(f)
    return out


#: Measures drawn by :func:`plot_study` when present, with their axis labels.
STUDY_PLOTS = (
    "n_motor_neurons",
    "puncta_per_100um",
    "pct_gfp_gfap",
    "puncta_per_motor_neuron",
    "n_gfp_cells",
    "fiber_csa_mean_um2",
)


def plot_study(
    per_animal: pd.DataFrame,
    out_dir: str | Path,
    *,
    stats: pd.DataFrame | None = None,
    objects: Mapping[str, pd.DataFrame] | None = None,
    samples: pd.DataFrame | None = None,
    order: Sequence[str] | None = None,
    measures: Sequence[Any] | None = None,
) -> list[Path]:
    """Write the study's figures (PNG + SVG) into ``out_dir``.

    One box-and-points figure per measure present (motor neurons per ventral
    horn, puncta per 100 µm, % GFP+ that are GFAP+, ...) and, when fibers and a
    sample sheet are given, the fiber CSA and min-Feret distributions per group.

    Parameters
    ----------
    per_animal : DataFrame
    out_dir : path
    stats : DataFrame, optional
        ``stats.csv`` content, for p-values on the figures.
    objects : dict of str -> DataFrame, optional
        Object tables with an ``image`` column (for distributions).
    samples : DataFrame, optional
        Sample sheet (``image``, ``animal``, ``group``) with image names as in
        the results.
    order : sequence of str, optional
    measures : sequence of spinalquant.stats.Measure, optional
        Labels to use; default :data:`spinalquant.stats.DEFAULT_MEASURES`.

    Returns
    -------
    list of Path
    """
    from .stats import DEFAULT_MEASURES

    out = Path(out_dir)
    labels = {m.name: m.label for m in DEFAULT_MEASURES.values()}
    for m in measures or ():
        if hasattr(m, "name"):
            labels[m.name] = m.label
    wanted = list(STUDY_PLOTS) + [
        m
        for m in labels
        if m not in STUDY_PLOTS and m not in ("fiber_area_um2", "fiber_min_feret_um")
    ]
    files: list[Path] = []
    for name in wanted:
        if (
            name not in per_animal.columns
            or pd.to_numeric(per_animal[name], errors="coerce").isna().all()
        ):
            continue
        fig = plot_measure(per_animal, name, label=labels.get(name), order=order, stats=stats)
        files += save_figure(fig, out / name)
    fibers = (objects or {}).get("fibers")
    if fibers is not None and samples is not None and len(fibers) and "image" in fibers.columns:
        f = fibers.merge(samples[["image", "animal", "group"]], on="image", how="inner")
        for col, stem, lab in (
            ("area_um2", "fiber_csa_distribution", "fiber CSA (µm²)"),
            ("min_feret_um", "fiber_min_feret_distribution", "fiber minimum Feret diameter (µm)"),
        ):
            if col in f.columns and len(f):
                fig = plot_distribution(f, col, order=order, label=lab)
                files += save_figure(fig, out / stem)
    return files
