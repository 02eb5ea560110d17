"""Group statistics for a study: from ``summary.csv`` + a sample sheet to tests.

The unit of replication is the **animal**, not the section: every image's
figures are first averaged per animal (sections of one animal are technical
replicates), object-level measures (puncta per 100 µm of soma outline, fiber
areas) are pooled over the animal's objects and averaged, and only then are
groups compared.

For each measure, :func:`compare_groups` reports

* an omnibus one-way ANOVA (effect size eta²) and a Kruskal–Wallis test
  (effect size epsilon²);
* every pair of groups with Tukey's HSD (simultaneous 95 % CI of the
  difference of means), Dunn's rank test (Holm- or Bonferroni-adjusted) and
  Hedges' g (small-sample corrected standardised difference, with an
  approximate 95 % CI);
* n, mean, SD and a t-based 95 % CI of the mean of every group.

Everything here is pure (DataFrames in, DataFrames out) except the two edges
:func:`read_sample_sheet` and :func:`run_stats`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import SpinalquantError

__all__ = [
    "DEFAULT_MEASURES",
    "Measure",
    "SampleSheetError",
    "StatsReport",
    "aggregate_per_animal",
    "compare_groups",
    "describe_groups",
    "dunn_test",
    "hedges_g",
    "match_images",
    "read_sample_sheet",
    "run_stats",
]

REQUIRED_SHEET_COLUMNS = ("image", "animal", "group")


class SampleSheetError(SpinalquantError, ValueError):
    """The sample sheet is unusable, or does not fit the results."""


class GroupSizeError(SpinalquantError, ValueError):
    """A measure cannot be tested with the animals available."""


@dataclass(frozen=True)
class Measure:
    """Where a per-animal measure comes from.

    Attributes
    ----------
    name : str
        Column name in the per-animal table.
    source : str
        ``"summary"`` (a column of summary.csv, averaged over the animal's
        images) or an object table name (``"motor_neurons"``, ``"fibers"`` ...;
        its objects are pooled over the animal's images and averaged).
    column : str
        Column of that table.
    label : str
        Axis label for plots, with units.
    """

    name: str
    source: str
    column: str
    label: str


DEFAULT_MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            # per analysed image: the ventral horn only when an ROI was given
            "n_motor_neurons", "summary", "n_motor_neurons", "ChAT+ motor neurons per section"
        ),
        Measure(
            "puncta_per_100um",
            "motor_neurons",
            "puncta_per_100um",
            "perisomatic puncta per 100 µm of soma outline",
        ),
        Measure(
            "puncta_per_motor_neuron",
            "summary",
            "puncta_per_motor_neuron",
            "perisomatic puncta per motor neuron",
        ),
        Measure("n_gfp_cells", "summary", "n_gfp_cells", "GFP+ donor cells per section"),
        Measure("pct_gfp_gfap", "summary", "pct_gfp_gfap", "GFAP+ among GFP+ cells (%)"),
        Measure("n_astrocytes", "summary", "n_astrocytes", "GFAP+ astrocytes per section"),
        Measure(
            "fiber_csa_mean_um2",
            "summary",
            "fiber_csa_mean_um2",
            "mean fiber cross-sectional area (µm²)",
        ),
        Measure("fiber_area_um2", "fibers", "area_um2", "fiber cross-sectional area (µm²)"),
        Measure(
            "fiber_min_feret_um", "fibers", "min_feret_um", "fiber minimum Feret diameter (µm)"
        ),
    )
}


# ------------------------------------------------------------- sample sheet
def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a sample sheet (CSV) mapping images to animals and groups.

    Parameters
    ----------
    path : path
        CSV with columns ``image`` (as in ``summary.csv``, or just its file
        name), ``animal``, ``group`` and any further factors (sex, time point...).

    Returns
    -------
    DataFrame
        One row per image; ``image``, ``animal`` and ``group`` as strings with
        surrounding spaces removed.

    Raises
    ------
    SampleSheetError
        Missing file or columns, empty cells, duplicated images, or an animal
        listed under two groups.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "samples.csv"
    >>> _ = p.write_text("image,animal,group\\na.tif,m1,vehicle\\nb.tif,m2,Muse\\n")
    >>> read_sample_sheet(p)["group"].tolist()
    ['vehicle', 'Muse']
    """
    p = Path(path)
    if not p.is_file():
        raise SampleSheetError(f"sample sheet not found: {p}")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SampleSheetError(f"{p}: not a readable CSV file ({exc})") from None
    return validate_sample_sheet(df, source=str(p))


def validate_sample_sheet(df: pd.DataFrame, *, source: str = "sample sheet") -> pd.DataFrame:
    """Check a sample-sheet DataFrame; see :func:`read_sample_sheet`. Returns a clean copy."""
    out = df.copy()
    out.columns = [str(c).strip() for c in out.columns]
    lower = {c.lower(): c for c in out.columns}
    rename = {lower[c]: c for c in REQUIRED_SHEET_COLUMNS if c in lower and lower[c] != c}
    out = out.rename(columns=rename)
    missing = [c for c in REQUIRED_SHEET_COLUMNS if c not in out.columns]
    if missing:
        raise SampleSheetError(
            f"{source}: missing column(s) {', '.join(missing)}; found {list(out.columns)}. "
            "A sample sheet needs one row per image with columns image, animal, group "
            "(e.g. 'L4_m1_s1.ome.tif,m1,vehicle')."
        )
    for c in REQUIRED_SHEET_COLUMNS:
        out[c] = out[c].astype(str).str.strip()
    out = out[~(out[list(REQUIRED_SHEET_COLUMNS)] == "").all(axis=1)].reset_index(drop=True)
    if out.empty:
        raise SampleSheetError(f"{source}: the sample sheet has no rows")
    for c in REQUIRED_SHEET_COLUMNS:
        blank = out.index[out[c].isin(["", "nan", "NaN", "None"])]
        if len(blank):
            rows = ", ".join(str(i + 2) for i in blank[:10])
            raise SampleSheetError(f"{source}: empty '{c}' on line(s) {rows}")
    dup = out["image"][out["image"].duplicated(keep=False)]
    if len(dup):
        raise SampleSheetError(
            f"{source}: image(s) listed more than once: {', '.join(sorted(set(dup)))}"
        )
    groups_per_animal = out.groupby("animal", sort=False)["group"].nunique()
    bad = groups_per_animal[groups_per_animal > 1]
    if len(bad):
        detail = "; ".join(
            f"{a}: {', '.join(sorted(set(out.loc[out['animal'] == a, 'group'])))}"
            for a in bad.index
        )
        raise SampleSheetError(f"{source}: animal(s) listed under more than one group: {detail}")
    return out


def match_images(results_images: Sequence[str], sheet_images: Sequence[str]) -> dict[str, str]:
    """Map each sample-sheet entry to an image name of the results.

    An entry matches a result exactly, else by file name, else by file name
    without its image extension (``m1_s1`` matches ``cord/m1_s1.ome.tif``).
    Entries that match nothing are left out; an ambiguous entry raises.

    Returns
    -------
    dict
        sheet image -> results image.
    """
    from .io import image_stem

    res = list(dict.fromkeys(str(r) for r in results_images))
    exact = set(res)
    by_name: dict[str, list[str]] = {}
    by_stem: dict[str, list[str]] = {}
    for r in res:
        name = r.rsplit("/", 1)[-1]
        by_name.setdefault(name, []).append(r)
        by_stem.setdefault(image_stem(name), []).append(r)
    out: dict[str, str] = {}
    for s in sheet_images:
        key = str(s).replace("\\", "/").strip()
        if key in exact:
            out[s] = key
            continue
        name = key.rsplit("/", 1)[-1]
        for table, k in ((by_name, name), (by_stem, image_stem(name))):
            hits = table.get(k, [])
            if len(hits) == 1:
                out[s] = hits[0]
                break
            if len(hits) > 1:
                raise SampleSheetError(
                    f"sample sheet image '{s}' matches several results ({', '.join(hits)}); "
                    "write its path as in summary.csv"
                )
    taken: dict[str, list[str]] = {}
    for s, r in out.items():
        taken.setdefault(r, []).append(s)
    clash = {r: ss for r, ss in taken.items() if len(ss) > 1}
    if clash:
        detail = "; ".join(f"{r} <- {', '.join(ss)}" for r, ss in clash.items())
        raise SampleSheetError(f"several sample-sheet rows name the same result image: {detail}")
    return out


# ------------------------------------------------------------- aggregation
def _resolve_measures(measures: Sequence[str | Measure] | None) -> list[Measure]:
    if measures is None:
        return list(DEFAULT_MEASURES.values())
    out = []
    for m in measures:
        if isinstance(m, Measure):
            out.append(m)
        elif m in DEFAULT_MEASURES:
            out.append(DEFAULT_MEASURES[m])
        elif "." in m:
            table, col = m.split(".", 1)
            out.append(Measure(f"{table}_{col}", table, col, f"{col} ({table})"))
        else:
            out.append(Measure(m, "summary", m, m))
    return out


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def aggregate_per_animal(
    summary_df: pd.DataFrame,
    objects: Mapping[str, pd.DataFrame] | None,
    samples_df: pd.DataFrame,
    *,
    measures: Sequence[str | Measure] | None = None,
) -> pd.DataFrame:
    """Average every measure per animal (sections are not independent replicates).

    Parameters
    ----------
    summary_df : DataFrame
        ``summary.csv``: one row per image with ``image``, ``status`` and figures.
        Images whose status is not ``ok`` are left out.
    objects : dict of str -> DataFrame
        Object tables (``motor_neurons``, ``fibers`` ...) with an ``image`` column.
    samples_df : DataFrame
        Validated sample sheet (``image``, ``animal``, ``group``, factors) whose
        ``image`` values name results images exactly (see :func:`match_images`).
    measures : sequence of str or Measure, optional
        Names from :data:`DEFAULT_MEASURES`, summary columns, or
        ``"table.column"`` for an object-table column. Default: every default
        measure; measures with no data at all are dropped.

    Returns
    -------
    DataFrame
        One row per animal: ``animal``, ``group``, the factors that are constant
        within each animal, ``n_images``, one column per measure and, for
        object-level measures, ``n_objects_<measure>``.

    Examples
    --------
    >>> summ = pd.DataFrame({"image": ["a", "b", "c"], "status": "ok",
    ...                      "n_motor_neurons": [10, 12, 7]})
    >>> sheet = pd.DataFrame({"image": ["a", "b", "c"], "animal": ["m1", "m1", "m2"],
    ...                       "group": ["Muse", "Muse", "vehicle"]})
    >>> aggregate_per_animal(summ, {}, sheet, measures=["n_motor_neurons"])["n_motor_neurons"].tolist()
    [11.0, 7.0]
    """
    sheet = samples_df.copy()
    ms = _resolve_measures(measures)
    summ = summary_df.copy()
    if "status" in summ.columns:
        summ = summ[summ["status"].astype(str) == "ok"]
    summ = summ[summ["image"].isin(set(sheet["image"]))]
    sheet = sheet[sheet["image"].isin(set(summ["image"]))]
    animal_of = dict(zip(sheet["image"], sheet["animal"], strict=True))

    animals = sheet.drop_duplicates("animal")[["animal", "group"]].reset_index(drop=True)
    factors = [c for c in sheet.columns if c not in ("image", "animal", "group")]
    for f in factors:
        if (sheet.groupby("animal")[f].nunique(dropna=False) <= 1).all():
            animals[f] = animals["animal"].map(
                sheet.drop_duplicates("animal").set_index("animal")[f]
            )
    animals["n_images"] = animals["animal"].map(sheet.groupby("animal").size()).astype("int64")

    objects = objects or {}
    for m in ms:
        if m.source == "summary":
            if m.column not in summ.columns:
                continue
            vals = pd.DataFrame(
                {"animal": summ["image"].map(animal_of), "v": _numeric(summ[m.column])}
            )
            per = vals.groupby("animal")["v"].mean()
            animals[m.name] = animals["animal"].map(per).astype("float64")
        else:
            table = objects.get(m.source)
            if table is None or m.column not in table.columns or "image" not in table.columns:
                continue
            t = table[table["image"].isin(set(animal_of))]
            vals = pd.DataFrame({"animal": t["image"].map(animal_of), "v": _numeric(t[m.column])})
            vals = vals.dropna()
            per = vals.groupby("animal")["v"]
            animals[m.name] = animals["animal"].map(per.mean()).astype("float64")
            animals[f"n_objects_{m.name}"] = (
                animals["animal"].map(per.size()).fillna(0).astype("int64")
            )
        if animals[m.name].isna().all():
            animals = animals.drop(
                columns=[c for c in (m.name, f"n_objects_{m.name}") if c in animals]
            )
    return animals


# ------------------------------------------------------------------- tests
def _ci_mean(x: np.ndarray, confidence: float) -> tuple[float, float]:
    n = len(x)
    if n < 2:
        return (math.nan, math.nan)
    m = float(np.mean(x))
    se = float(np.std(x, ddof=1)) / math.sqrt(n)
    t = float(sps.t.ppf(0.5 + confidence / 2, n - 1))
    return (m - t * se, m + t * se)


def describe_groups(
    animal_df: pd.DataFrame,
    measure: str,
    *,
    group_col: str = "group",
    order: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """n, mean, SD, SEM and a t-based CI of the mean of every group.

    Animals with no value for ``measure`` are not counted.

    Examples
    --------
    >>> df = pd.DataFrame({"group": ["a", "a", "b", "b"], "v": [1.0, 3.0, 5.0, 7.0]})
    >>> describe_groups(df, "v")[["group", "n", "mean"]].values.tolist()
    [['a', 2, 2.0], ['b', 2, 6.0]]
    """
    data = _group_values(animal_df, measure, group_col=group_col, order=order)
    rows = []
    for g, x in data.items():
        n = len(x)
        lo, hi = _ci_mean(x, confidence)
        rows.append(
            {
                "measure": measure,
                "group": g,
                "n": n,
                "mean": float(np.mean(x)) if n else math.nan,
                "sd": float(np.std(x, ddof=1)) if n > 1 else math.nan,
                "sem": float(np.std(x, ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                "median": float(np.median(x)) if n else math.nan,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(rows)


def _group_values(
    animal_df: pd.DataFrame, measure: str, *, group_col: str, order: Sequence[str] | None
) -> dict[str, np.ndarray]:
    for c in (measure, group_col):
        if c not in animal_df.columns:
            raise KeyError(
                f"column '{c}' not in the per-animal table (columns: {list(animal_df.columns)})"
            )
    groups = [
        str(g)
        for g in (order if order is not None else pd.unique(animal_df[group_col].astype(str)))
    ]
    col = _numeric(animal_df[measure])
    gcol = animal_df[group_col].astype(str)
    return {g: col[(gcol == g) & col.notna()].to_numpy(dtype=float) for g in groups}


def hedges_g(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Hedges' g of ``mean(a) - mean(b)`` with an approximate CI.

    ``g = J * (mean_a - mean_b) / s_pooled`` with ``J = 1 - 3 / (4 (n_a + n_b) - 9)``;
    the CI is ``g ± z * sqrt((n_a + n_b) / (n_a n_b) + g² / (2 (n_a + n_b)))``
    (Hedges & Olkin 1985). NaN when a group has fewer than 2 values or both
    have no spread.

    Returns
    -------
    (g, ci_low, ci_high)

    Examples
    --------
    >>> round(hedges_g([1, 2, 3], [2, 3, 4])[0], 3)
    -0.8
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return (math.nan, math.nan, math.nan)
    sp = math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2))
    if sp == 0:
        return (math.nan, math.nan, math.nan)
    j = 1 - 3 / (4 * (na + nb) - 9)
    g = j * (a.mean() - b.mean()) / sp
    se = math.sqrt((na + nb) / (na * nb) + g * g / (2 * (na + nb)))
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    return (float(g), float(g - z * se), float(g + z * se))


def _adjust(p: np.ndarray, method: str) -> np.ndarray:
    p = np.asarray(p, float)
    m = len(p)
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "holm":
        order = np.argsort(p, kind="stable")
        adj = np.empty(m)
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, (m - rank) * p[i])
            adj[i] = min(running, 1.0)
        return adj
    raise ValueError(f"p-value adjustment must be 'holm', 'bonferroni' or 'none'; got {method!r}")


def dunn_test(samples: Mapping[str, Sequence[float]], *, adjust: str = "holm") -> pd.DataFrame:
    """Dunn's (1964) pairwise rank test after Kruskal–Wallis.

    All values are ranked together (ties get their average rank). For groups
    i, j with mean ranks R_i, R_j::

        z = (R_i - R_j) / sqrt((N (N + 1) / 12 - T / (12 (N - 1))) (1 / n_i + 1 / n_j))

    where ``T = sum(t**3 - t)`` over tied groups of size t; the two-sided p
    from the normal distribution is adjusted over all pairs (Holm or
    Bonferroni).

    Parameters
    ----------
    samples : dict of str -> sequence of float
        Values per group (in the order pairs are reported).
    adjust : {"holm", "bonferroni", "none"}

    Returns
    -------
    DataFrame
        One row per pair: ``group_a``, ``group_b``, ``mean_rank_a``,
        ``mean_rank_b``, ``z``, ``p``, ``p_adj``.

    Examples
    --------
    >>> d = dunn_test({"a": [1, 2, 3], "b": [4, 5, 6]}, adjust="none")
    >>> round(float(d["z"].iloc[0]), 4)
    -1.964
    """
    names = list(samples)
    arrays = [np.asarray(samples[k], float) for k in names]
    allv = np.concatenate(arrays) if arrays else np.array([])
    n_total = len(allv)
    ranks = sps.rankdata(allv)
    _, counts = np.unique(allv, return_counts=True)
    ties = float(np.sum(counts.astype(float) ** 3 - counts))
    var0 = n_total * (n_total + 1) / 12.0 - (ties / (12.0 * (n_total - 1)) if n_total > 1 else 0.0)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    mean_rank = {
        k: float(ranks[bounds[i] : bounds[i + 1]].mean()) if len(arrays[i]) else math.nan
        for i, k in enumerate(names)
    }
    rows = []
    for a, b in combinations(names, 2):
        na, nb = len(samples[a]), len(samples[b])
        se = math.sqrt(var0 * (1 / na + 1 / nb)) if na and nb and var0 > 0 else math.nan
        z = (mean_rank[a] - mean_rank[b]) / se if se and not math.isnan(se) else math.nan
        p = float(2 * sps.norm.sf(abs(z))) if not math.isnan(z) else math.nan
        rows.append(
            {
                "group_a": a,
                "group_b": b,
                "mean_rank_a": mean_rank[a],
                "mean_rank_b": mean_rank[b],
                "z": z,
                "p": p,
            }
        )
    out = pd.DataFrame(
        rows, columns=["group_a", "group_b", "mean_rank_a", "mean_rank_b", "z", "p"]
    )
    ok = out["p"].notna().to_numpy()
    adj = np.full(len(out), math.nan)
    adj[ok] = _adjust(out["p"].to_numpy()[ok], adjust)
    out["p_adj"] = adj
    return out


STATS_COLUMNS = (
    "measure",
    "comparison",
    "group_a",
    "group_b",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "ci_low_a",
    "ci_high_a",
    "ci_low_b",
    "ci_high_b",
    "anova_f",
    "anova_p",
    "eta_squared",
    "kruskal_h",
    "kruskal_p",
    "epsilon_squared",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "tukey_p",
    "hedges_g",
    "hedges_g_ci_low",
    "hedges_g_ci_high",
    "dunn_z",
    "dunn_p",
    "dunn_p_adj",
    "p_adjust",
    "n_groups",
    "n_animals",
    "note",
    "error",
)


def compare_groups(
    animal_df: pd.DataFrame,
    measure: str,
    *,
    group_col: str = "group",
    order: Sequence[str] | None = None,
    adjust: str = "holm",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Compare a per-animal measure between groups (parametric and rank-based).

    Parameters
    ----------
    animal_df : DataFrame
        One row per animal (from :func:`aggregate_per_animal`).
    measure : str
        Column to compare; animals without a value are left out.
    group_col : str
        Column holding the group of each animal.
    order : sequence of str, optional
        Group order (pairs are reported as ``order[i] vs order[j]``, i < j,
        differences as ``mean_a - mean_b``). Default: order of appearance.
    adjust : {"holm", "bonferroni", "none"}
        Multiplicity adjustment of Dunn's p-values (Tukey's HSD is adjusted by
        construction).
    confidence : float
        Level of every confidence interval.

    Returns
    -------
    DataFrame
        Columns :data:`STATS_COLUMNS`. The first row (``comparison`` = "all
        groups") holds the omnibus ANOVA (F, p, eta²) and Kruskal–Wallis (H, p,
        epsilon² = H / (N - 1)); one row per pair follows with Tukey's HSD
        (difference, simultaneous CI, p), Hedges' g and Dunn's z and p.

    Raises
    ------
    GroupSizeError
        Fewer than two groups with data, or a group with fewer than two
        animals (no within-group variance: no test can be made); the message
        names the group and its animals.

    Examples
    --------
    >>> df = pd.DataFrame({"group": ["a"] * 4 + ["b"] * 4,
    ...                    "v": [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0]})
    >>> res = compare_groups(df, "v")
    >>> round(float(res.loc[1, "diff"]), 3)
    -5.0
    """
    data = _group_values(animal_df, measure, group_col=group_col, order=order)
    empty = [g for g, x in data.items() if len(x) == 0]
    data = {g: x for g, x in data.items() if len(x)}
    if len(data) < 2:
        raise GroupSizeError(
            f"{measure}: need at least two groups with values to compare; "
            f"found {list(data) or 'none'}"
            + (f" (no values for {', '.join(empty)})" if empty else "")
        )
    small = {g: x for g, x in data.items() if len(x) < 2}
    if small:

        def who(g: str) -> str:
            sel = (animal_df[group_col].astype(str) == g) & _numeric(animal_df[measure]).notna()
            return (
                ", ".join(animal_df.loc[sel, "animal"].astype(str))
                if "animal" in animal_df
                else "?"
            )

        detail = "; ".join(f"group '{g}' has {len(x)} animal ({who(g)})" for g, x in small.items())
        raise GroupSizeError(
            f"{measure}: {detail}. A group needs at least 2 animals with a value: "
            "the spread between animals is what the tests compare against. "
            "Add animals, merge groups, or drop that group from the sample sheet."
        )
    names = list(data)
    arrays = [data[g] for g in names]
    n_all = int(sum(len(x) for x in arrays))
    notes: list[str] = []
    if empty:
        notes.append(f"no values for group(s) {', '.join(empty)}")

    allv = np.concatenate(arrays)
    grand = allv.mean()
    ss_total = float(np.sum((allv - grand) ** 2))
    ss_between = float(sum(len(x) * (x.mean() - grand) ** 2 for x in arrays))
    ss_within = ss_total - ss_between
    if ss_total == 0:
        f_stat, f_p, eta2 = math.nan, math.nan, math.nan
        notes.append("all animals have the same value")
    elif ss_within <= 1e-12 * ss_total:
        f_stat, f_p, eta2 = math.inf, 0.0, 1.0
        notes.append("no spread within groups: ANOVA degenerate")
    else:
        f_res = sps.f_oneway(*arrays)
        f_stat, f_p = float(f_res.statistic), float(f_res.pvalue)
        eta2 = ss_between / ss_total
    if ss_total == 0:
        h_stat, h_p, eps2 = math.nan, math.nan, math.nan
    else:
        k_res = sps.kruskal(*arrays)
        h_stat, h_p = float(k_res.statistic), float(k_res.pvalue)
        eps2 = h_stat / (n_all - 1)

    tukey = None
    tukey_ci = None
    if ss_within > 1e-12 * ss_total:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tukey = sps.tukey_hsd(*arrays)
            tukey_ci = tukey.confidence_interval(confidence_level=confidence)
    dunn = (
        dunn_test(dict(zip(names, arrays, strict=True)), adjust=adjust) if ss_total > 0 else None
    )

    ci = {g: _ci_mean(x, confidence) for g, x in data.items()}
    base = {"measure": measure, "p_adjust": adjust, "n_groups": len(names), "n_animals": n_all}
    rows: list[dict[str, Any]] = [
        {
            **base,
            "comparison": "all groups",
            "anova_f": f_stat,
            "anova_p": f_p,
            "eta_squared": eta2,
            "kruskal_h": h_stat,
            "kruskal_p": h_p,
            "epsilon_squared": eps2,
            "note": "; ".join(notes),
        }
    ]
    for k, (i, j) in enumerate(combinations(range(len(names)), 2)):
        a, b = names[i], names[j]
        xa, xb = data[a], data[b]
        g, g_lo, g_hi = hedges_g(xa, xb, confidence=confidence)
        row: dict[str, Any] = {
            **base,
            "comparison": f"{a} vs {b}",
            "group_a": a,
            "group_b": b,
            "n_a": len(xa),
            "n_b": len(xb),
            "mean_a": float(xa.mean()),
            "mean_b": float(xb.mean()),
            "ci_low_a": ci[a][0],
            "ci_high_a": ci[a][1],
            "ci_low_b": ci[b][0],
            "ci_high_b": ci[b][1],
            "diff": float(xa.mean() - xb.mean()),
            "hedges_g": g,
            "hedges_g_ci_low": g_lo,
            "hedges_g_ci_high": g_hi,
        }
        if tukey is not None:
            row.update(
                diff_ci_low=float(tukey_ci.low[i, j]),
                diff_ci_high=float(tukey_ci.high[i, j]),
                tukey_p=float(tukey.pvalue[i, j]),
            )
        if dunn is not None:
            d = dunn.iloc[k]
            row.update(dunn_z=float(d["z"]), dunn_p=float(d["p"]), dunn_p_adj=float(d["p_adj"]))
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in STATS_COLUMNS:
        if c not in out.columns:
            out[c] = math.nan
    for c in ("n_a", "n_b"):
        out[c] = out[c].astype("Int64")
    return out[list(STATS_COLUMNS)]


# ------------------------------------------------------------------ run it
@dataclass
class StatsReport:
    """What :func:`run_stats` computed and wrote."""

    per_animal: pd.DataFrame
    stats: pd.DataFrame
    groups: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)


def read_results(results_dir: str | Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Read ``summary.csv`` and ``objects/*.csv`` of a ``spinalquant run`` folder.

    Raises
    ------
    FileNotFoundError
        When ``summary.csv`` is missing (not a results folder).
    """
    res = Path(results_dir)
    f = res / "summary.csv"
    if not f.is_file():
        raise FileNotFoundError(
            f"{res} is not a spinalquant results folder (no summary.csv); "
            "run 'spinalquant run IMAGES --out RESULTS' first"
        )
    summary = pd.read_csv(
        f, dtype={"image": str, "status": str, "error": str, "section": str}, keep_default_na=True
    )
    objects: dict[str, pd.DataFrame] = {}
    obj_dir = res / "objects"
    if obj_dir.is_dir():
        for p in sorted(obj_dir.glob("*.csv")):
            objects[p.stem] = pd.read_csv(p, dtype={"image": str})
    return summary, objects


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(path)
    return path


def run_stats(
    results_dir: str | Path,
    samples_csv: str | Path,
    out_dir: str | Path | None = None,
    *,
    measures: Sequence[str | Measure] | None = None,
    group_order: Sequence[str] | None = None,
    adjust: str = "holm",
    plots: bool = True,
) -> StatsReport:
    """Per-animal aggregation, group tests and plots for a results folder.

    Parameters
    ----------
    results_dir : path
        Output of ``spinalquant run``.
    samples_csv : path
        Sample sheet (see :func:`read_sample_sheet`).
    out_dir : path, optional
        Where to write; default ``results_dir / "stats"``.
    measures : sequence, optional
        See :func:`aggregate_per_animal`.
    group_order : sequence of str, optional
        Order of groups in tables and plots; default: order in the sheet.
    adjust : {"holm", "bonferroni", "none"}
        Adjustment of Dunn's p-values.
    plots : bool
        Also write PNG + SVG figures (:func:`spinalquant.plots.plot_study`).

    Returns
    -------
    StatsReport

    Files written to ``out_dir``: ``stats.csv`` (one row per measure ×
    comparison; a measure that cannot be tested has one row whose ``error``
    says why), ``per_animal.csv``, ``groups.csv`` (n, mean, SD, CI per group
    and measure), ``excluded.csv`` (failed images and sheet entries without
    results, with the reason), ``notes.txt`` and ``plots/``.

    Raises
    ------
    SampleSheetError
        Bad sample sheet, or analysed images that the sheet does not list (all
        are named: add them to the sheet, or move them out of the results).
    FileNotFoundError
        ``results_dir`` has no ``summary.csv``.
    """
    res_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else res_dir / "stats"
    summary, objects = read_results(res_dir)
    sheet = read_sample_sheet(samples_csv)

    notes: list[str] = []
    mapping = match_images(summary["image"].astype(str).tolist(), sheet["image"].tolist())
    is_ok = (
        summary["status"].astype(str) == "ok"
        if "status" in summary
        else pd.Series(True, summary.index)
    )
    unlisted = sorted(set(summary.loc[is_ok, "image"].astype(str)) - set(mapping.values()))
    if unlisted:
        shown = ", ".join(unlisted[:20]) + (
            f" ... ({len(unlisted)} in all)" if len(unlisted) > 20 else ""
        )
        raise SampleSheetError(
            f"{len(unlisted)} analysed image(s) are not in the sample sheet {samples_csv}: {shown}. "
            "Add a row (image, animal, group) for each, or remove them from the results."
        )
    excluded_rows: list[dict[str, str]] = []
    missing = [s for s in sheet["image"] if s not in mapping]
    for s in missing:
        excluded_rows.append({"image": s, "reason": "in the sample sheet but not in the results"})
    if missing:
        notes.append(
            f"warning: {len(missing)} sample-sheet image(s) have no results and are "
            f"ignored: {', '.join(missing[:20])}"
        )
    sheet = sheet[sheet["image"].isin(set(mapping))].copy()
    sheet["image"] = sheet["image"].map(mapping)

    failed = summary[~is_ok]
    for _, r in failed.iterrows():
        err = r.get("error")
        excluded_rows.append(
            {
                "image": str(r["image"]),
                "reason": f"analysis failed: {err if isinstance(err, str) else 'unknown'}",
            }
        )
    if len(failed):
        notes.append(
            f"warning: {len(failed)} failed image(s) excluded: "
            + ", ".join(failed["image"].astype(str).tolist()[:20])
        )

    order = list(group_order) if group_order is not None else list(pd.unique(sheet["group"]))
    per_animal = aggregate_per_animal(summary, objects, sheet, measures=measures)
    if per_animal.empty:
        raise SampleSheetError(
            f"no successfully analysed image of the sample sheet in {res_dir}: nothing to compare"
            + (f" ({len(failed)} failed; see summary.csv)" if len(failed) else "")
        )
    if group_order is not None:
        unknown = sorted(set(per_animal["group"]) - set(order))
        if unknown:
            raise SampleSheetError(f"group_order lacks group(s) {', '.join(unknown)}")
        key = per_animal["group"].map({g: i for i, g in enumerate(order)})
        per_animal = (
            per_animal.assign(_k=key)
            .sort_values(["_k", "animal"], kind="stable")
            .drop(columns="_k")
        )
    order = [g for g in order if g in set(per_animal["group"])]
    no_data = sorted(set(sheet["group"]) - set(per_animal["group"]))
    if no_data:
        notes.append(f"warning: group(s) with no analysed image: {', '.join(no_data)}")

    ms = [m for m in _resolve_measures(measures) if m.name in per_animal.columns]
    skipped = [m.name for m in _resolve_measures(measures) if m.name not in per_animal.columns]
    if skipped:
        notes.append(f"measures without data (not tested): {', '.join(skipped)}")
    tables, groups = [], []
    for m in ms:
        groups.append(describe_groups(per_animal, m.name, order=order))
        try:
            tables.append(compare_groups(per_animal, m.name, order=order, adjust=adjust))
        except GroupSizeError as exc:
            row = dict.fromkeys(STATS_COLUMNS, math.nan)
            row.update(measure=m.name, comparison="all groups", error=str(exc), p_adjust=adjust)
            tables.append(pd.DataFrame([row]))
            notes.append(f"error: {exc}")
    frames = [t.dropna(axis=1, how="all") for t in tables]
    stats_df = (
        pd.concat(frames, ignore_index=True).reindex(columns=list(STATS_COLUMNS))
        if frames
        else pd.DataFrame(columns=list(STATS_COLUMNS))
    )
    groups_df = pd.concat(groups, ignore_index=True) if groups else pd.DataFrame()
    excluded = pd.DataFrame(excluded_rows, columns=["image", "reason"])
    notes.append(
        "tests are per measure; p-values are not adjusted across measures. "
        "Unit of replication: the animal (images averaged per animal first)."
    )

    out.mkdir(parents=True, exist_ok=True)
    files = [
        _write_csv(stats_df, out / "stats.csv"),
        _write_csv(per_animal, out / "per_animal.csv"),
        _write_csv(groups_df, out / "groups.csv"),
        _write_csv(excluded, out / "excluded.csv"),
    ]
    (out / "notes.txt").write_text("\n".join(notes) + "\n", encoding="utf-8")
    files.append(out / "notes.txt")
    report = StatsReport(per_animal, stats_df, groups_df, out, files, notes, excluded)
    if plots:
        from .plots import plot_study

        files.extend(
            plot_study(
                per_animal,
                out / "plots",
                stats=stats_df,
                objects=objects,
                samples=sheet,
                order=order,
                measures=ms,
            )
        )
    return report
