"""Human review of one image's results: recompute after edits, save into a results folder.

Pure logic, no Qt and no napari: the napari plugin (and a notebook) hand in
edited label images, GFAP overrides and edited puncta, and get back new
:class:`~spinalquant.pipeline.Results` whose tables and summary figures are
measured with the library's own functions.

Saving goes through the batch runner's per-image *parts*
(``OUT/.parts/<key>/``): the image's part is replaced with the reviewed rows and
the merged ``summary.csv`` / ``objects/*.csv`` are rebuilt, so every other image
stays exactly as it was. The edits are recorded in ``run.json`` under
``images[<image>]["review"]``.

Examples
--------
>>> import numpy as np
>>> lab = np.zeros((20, 20), np.int32); lab[2:6, 2:6] = 1; lab[10:14, 10:14] = 2
>>> after = lab.copy(); after[after == 2] = 0
>>> [e["action"] for e in label_edits("motor_neurons", lab, after)]
['delete']
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Config
from .errors import SpinalquantError
from .measure.objects import object_table
from .pipeline import Results

__all__ = [
    "config_to_toml",
    "flip_gfap",
    "label_edits",
    "load_image_results",
    "recompute",
    "result_images",
    "results_config",
    "save_review",
]

_META = ("image", "status", "error", "section", "pixel_size_um")


# ------------------------------------------------------------- reading back
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def result_images(out_dir: str | Path) -> list[str]:
    """Images of a results folder, in ``summary.csv`` order.

    Parameters
    ----------
    out_dir : str or Path
        A folder written by ``spinalquant run`` (or by :func:`save_review`).

    Returns
    -------
    list of str
        The ``image`` column of ``summary.csv`` (all statuses); empty when the
        folder has no summary.
    """
    f = Path(out_dir) / "summary.csv"
    if not f.is_file():
        return []
    df = pd.read_csv(f, usecols=["image"], dtype={"image": str})
    return [str(x) for x in df["image"].dropna()]


def results_config(out_dir: str | Path) -> Config:
    """The parameters a results folder was made with (``run.json``), else defaults."""
    run = _read_json(Path(out_dir) / "run.json") or {}
    params = dict(run.get("parameters") or {})
    if not params:
        return Config()
    params = {k: {kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v
              for k, v in params.items()}
    try:
        return Config.from_dict(params, source=f"{out_dir}/run.json")
    except SpinalquantError:
        return Config()


def _coerce_table(kind: str, df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=["image"], errors="ignore")
    if "label" in df:
        df["label"] = df["label"].astype("int64")
    if kind == "gfp_cells" and "gfap_positive" in df:
        df["gfap_positive"] = _as_boolean(df["gfap_positive"])
    return df.reset_index(drop=True)


def _as_boolean(s: pd.Series) -> pd.Series:
    """CSV text/objects/bools -> pandas nullable boolean."""
    if s.dtype == "boolean":
        return s
    mapping = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
    out = [pd.NA if pd.isna(v) else (bool(v) if isinstance(v, bool | np.bool_)
                                     else mapping.get(str(v).strip().lower(), pd.NA))
           for v in s]
    return pd.Series(out, index=s.index, dtype="boolean")


def load_image_results(out_dir: str | Path, image: str) -> Results:
    """One image's results, read back from a results folder.

    Parameters
    ----------
    out_dir : str or Path
        Results folder (``spinalquant run --out``).
    image : str
        The image's name in ``summary.csv``.

    Returns
    -------
    Results
        ``summary``, ``tables`` (without the ``image`` column) and ``labels``
        (from ``labels/<stem>.ome.tif``; empty when labels were not written);
        ``planes`` is empty. ``provenance`` holds ``out_dir``, ``image`` and the
        part's ``done`` record.

    Raises
    ------
    SpinalquantError
        When the folder holds no result for ``image`` or the image failed.
    """
    from .batch import EXTRA_TABLES, OBJECT_TABLES, output_stem, part_key
    from .io import load_labels

    out = Path(out_dir)
    part = out / ".parts" / part_key(image)
    row = _read_json(part / "summary.json")
    if row is None:
        raise SpinalquantError(f"{out}: no results for image {image!r} (no part {part.name})")
    if row.get("status") != "ok":
        raise SpinalquantError(
            f"{out}: image {image!r} failed in the run ({row.get('error') or 'no message'}); "
            "there is nothing to review"
        )
    tables: dict[str, pd.DataFrame] = {}
    for kind in (*OBJECT_TABLES, *EXTRA_TABLES):
        f = part / f"{kind}.csv"
        if f.is_file() and f.stat().st_size > 0:
            tables[kind] = _coerce_table(kind, pd.read_csv(f))
    labels: dict[str, np.ndarray] = {}
    lab_file = out / "labels" / f"{output_stem(image)}.ome.tif"
    if lab_file.is_file():
        labels = {k: np.asarray(v) for k, v in load_labels(lab_file).items()}
    summary = {k: (None if _isnan(v) else v) for k, v in row.items() if k not in _META}
    return Results(
        section=str(row.get("section")), summary=summary, tables=tables, labels=labels,
        planes={}, pixel_size_um=float(row["pixel_size_um"]), roi_mask=None,
        provenance={"out_dir": str(out), "image": image, "done": _read_json(part / "done.json") or {}},
    )


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and not np.isfinite(v) and np.isnan(v)


# -------------------------------------------------------------------- edits
def _ids(lab: np.ndarray | None) -> set[int]:
    if lab is None:
        return set()
    u = np.unique(lab)
    return {int(x) for x in u[u > 0]}


def _changed(before: np.ndarray | None, after: np.ndarray) -> set[int]:
    """Labels whose pixel set differs between two label images."""
    if before is None or before.shape != after.shape:
        return _ids(after)
    diff = before != after
    if not diff.any():
        return set()
    return (_ids(before[diff]) | _ids(after[diff])) - {0}


def label_edits(kind: str, before: np.ndarray | None, after: np.ndarray) -> list[dict[str, Any]]:
    """Describe how a label image was edited, object by object.

    Parameters
    ----------
    kind : str
        Object kind (``"motor_neurons"`` ...), copied into each record.
    before, after : ndarray of int, shape (Y, X)
        The label image as analysed and as edited.

    Returns
    -------
    list of dict
        One record per edited object with ``kind``, ``action`` and ``label``:
        ``delete`` (gone), ``merge`` (gone, its pixels now belong to ``into``),
        ``split`` (new, cut from ``from``), ``add`` (new, painted),
        ``modify`` (outline changed).

    Examples
    --------
    >>> lab = np.zeros((10, 10), np.int32); lab[1:4, 1:4] = 1; lab[1:4, 5:8] = 2
    >>> after = lab.copy(); after[after == 2] = 1
    >>> label_edits("gfp_cells", lab, after)
    [{'kind': 'gfp_cells', 'action': 'merge', 'label': 2, 'into': 1}]
    """
    after = np.asarray(after)
    before_ids, after_ids = _ids(before), _ids(after)
    changed = _changed(before, after)
    out: list[dict[str, Any]] = []
    for lab in sorted(before_ids - after_ids):
        under = after[before == lab]
        under = under[under > 0]
        rec: dict[str, Any] = {"kind": kind, "action": "delete", "label": lab}
        if under.size > 0.5 * np.count_nonzero(before == lab):
            rec = {"kind": kind, "action": "merge", "label": lab,
                   "into": int(np.bincount(under).argmax())}
        out.append(rec)
    for lab in sorted(after_ids - before_ids):
        rec = {"kind": kind, "action": "add", "label": lab}
        if before is not None and before.shape == after.shape:
            was = before[after == lab]
            was = was[was > 0]
            if was.size > 0.5 * np.count_nonzero(after == lab):
                origin = int(np.bincount(was).argmax())
                if origin in after_ids:
                    rec = {"kind": kind, "action": "split", "label": lab, "from": origin}
        out.append(rec)
    merged_into = {r["into"] for r in out if r["action"] == "merge"}
    split_from = {r["from"] for r in out if r["action"] == "split"}
    for lab in sorted((changed & before_ids & after_ids) - merged_into - split_from):
        out.append({"kind": kind, "action": "modify", "label": lab})
    return out


def flip_gfap(table: pd.DataFrame, label: int, overrides: Mapping[int, bool] | None = None
              ) -> dict[int, bool]:
    """GFAP overrides after flipping the call of one GFP+ cell.

    Parameters
    ----------
    table : DataFrame
        The current ``gfp_cells`` table (``label``, ``gfap_positive``).
    label : int
        The cell to flip.
    overrides : mapping of int -> bool, optional
        Overrides so far (not modified).

    Returns
    -------
    dict of int -> bool
        New overrides; the cell's call is the opposite of its current one
        (an unknown call becomes positive).

    Raises
    ------
    KeyError
        When ``label`` is not a cell of the table.

    Examples
    --------
    >>> t = pd.DataFrame({"label": [1, 2], "gfap_positive": [True, False]})
    >>> flip_gfap(t, 2)
    {2: True}
    """
    rows = table.loc[table["label"] == int(label), "gfap_positive"]
    if rows.empty:
        raise KeyError(f"no GFP+ cell with label {label}")
    current = rows.iloc[0]
    new = dict(overrides or {})
    new[int(label)] = True if pd.isna(current) else not bool(current)
    return new


# ---------------------------------------------------------------- recompute
def _keep_inside(table: pd.DataFrame, lab: np.ndarray, roi: np.ndarray | None, px: float
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Apply the ROI rule of the pipeline to (re)measured objects."""
    from .pipeline import relabel_kept
    from .roi import filter_by_roi

    if roi is None or roi.shape != lab.shape:
        return table, lab
    kept = filter_by_roi(table, roi, pixel_size_um=px)
    if len(kept) == len(table):
        return table, lab
    return kept, relabel_kept(lab, kept["label"])


def _carry(new: pd.DataFrame, old: pd.DataFrame | None, keep: set[int], columns: Iterable[str]
           ) -> pd.DataFrame:
    """Copy ``columns`` of unchanged objects (labels in ``keep``) from ``old`` into ``new``."""
    cols = [c for c in columns if old is not None and c in old.columns]
    if not cols or old is None:
        return new
    src = old[old["label"].isin(keep)].set_index("label")[cols]
    out = new.copy()
    for c in cols:
        mapped = out["label"].map(src[c])
        if c in out.columns:
            out[c] = mapped.where(out["label"].isin(src.index), out[c])
        else:
            out[c] = mapped
    return out


def _area_mm2(summary: Mapping[str, Any], shape: tuple[int, ...], px: float) -> float:
    roi = summary.get("roi_area_um2")
    if roi is None or _isnan(roi):
        roi = float(np.prod(shape)) * px * px
    return float(roi) / 1e6


def recompute(
    results: Results,
    labels: Mapping[str, np.ndarray],
    *,
    puncta: pd.DataFrame | None = None,
    gfap_overrides: Mapping[int, bool] | None = None,
    config: Config | None = None,
    planes: Mapping[str, np.ndarray] | None = None,
) -> Results:
    """Re-measure one image after a human edited its label images.

    Every object table and summary figure that depends on the edited objects
    is measured again with the library's functions (``object_table``,
    ``measure_motor_neurons``, ``perisomatic_puncta``, ``measure_fibers``,
    ``fiber_summary``); pixel colocalization figures do not depend on labels
    and are kept. Objects whose pixels did not change keep their GFAP call and
    other per-object values that need the image (so deleting one cell never
    flips its neighbour); changed or new GFP+ cells are called again when the
    GFAP plane is available (``planes`` or ``results.planes``, with the
    bleed-through coefficient of the analysis), else they keep their old call
    (new cells: unknown). ``gfap_overrides`` are applied last.

    Parameters
    ----------
    results : Results
        The analysis (from :func:`~spinalquant.pipeline.analyze` or
        :func:`load_image_results`).
    labels : mapping of str -> ndarray (Y, X)
        Edited label images by kind; kinds not given are taken from ``results``.
    puncta : DataFrame, optional
        Edited puncta (``y_um``, ``x_um`` in µm from the top-left corner, any
        other columns kept); default: the analysed ones.
    gfap_overrides : mapping of int -> bool, optional
        Manual GFAP call per GFP+ cell label.
    config : Config, optional
        Parameters (synapse distance, muscle options); default ``Config()``.
    planes : mapping of str -> ndarray (Y, X), optional
        Image planes (``gfap``, ``gfp``, ``nuclei``) for re-measuring changed objects.

    Returns
    -------
    Results
        With the new tables, labels and summary; ``provenance["edits"]`` lists
        the label edits (see :func:`label_edits`) and GFAP flips.

    Examples
    --------
    >>> lab = np.zeros((40, 40), np.int32); lab[5:15, 5:15] = 1; lab[20:30, 20:30] = 2
    >>> t = object_table(lab, pixel_size_um=1.0)
    >>> t["gfap_positive"] = pd.array([True, False], dtype="boolean")
    >>> res = Results("cord", {"n_gfp_cells": 2}, {"gfp_cells": t}, {"gfp_cells": lab}, {}, 1.0)
    >>> new = recompute(res, {}, gfap_overrides={2: True})
    >>> new.summary["n_gfp_gfap_cells"], new.summary["pct_gfp_gfap"]
    (2, 100.0)
    """
    cfg = config or Config()
    px = float(results.pixel_size_um)
    planes = dict(results.planes) | dict(planes or {})
    new_labels = {k: np.asarray(v) for k, v in results.labels.items()}
    for k, v in labels.items():
        v = np.asarray(v)
        if k in new_labels and v.shape != new_labels[k].shape:
            raise ValueError(f"edited {k} labels have shape {v.shape}; the image is {new_labels[k].shape}")
        if not np.issubdtype(v.dtype, np.integer):
            raise ValueError(f"edited {k} labels must be integers; got {v.dtype}")
        new_labels[k] = v
    edits: list[dict[str, Any]] = []
    for k in labels:
        edits += label_edits(k, results.labels.get(k), new_labels[k])
    tables = dict(results.tables)
    summary = dict(results.summary)
    roi = results.roi_mask

    if results.section == "muscle":
        _recompute_muscle(results, new_labels, tables, summary, cfg, planes, px)
    else:
        _recompute_cord(results, new_labels, tables, summary, cfg, planes, px, roi, puncta,
                        dict(gfap_overrides or {}), edits)
    prov = dict(results.provenance)
    prov["edits"] = edits
    return replace(results, summary=summary, tables=tables, labels=new_labels, provenance=prov)


def _recompute_cord(res: Results, labels: dict[str, np.ndarray], tables: dict[str, pd.DataFrame],
                    summary: dict[str, Any], cfg: Config, planes: Mapping[str, np.ndarray],
                    px: float, roi: np.ndarray | None, puncta: pd.DataFrame | None,
                    overrides: dict[int, bool], edits: list[dict[str, Any]]) -> None:
    from .pipeline import cord_counts, on_gfp_cells, order_columns

    shape = next(iter(labels.values())).shape if labels else (0, 0)
    area_mm2 = _area_mm2(summary, shape, px)

    if "gfp_cells" in labels:
        lab = labels["gfp_cells"]
        old = res.tables.get("gfp_cells")
        changed = _changed(res.labels.get("gfp_cells"), lab)
        table = object_table(lab, pixel_size_um=px)
        table, lab = _keep_inside(table, lab, roi, px)
        labels["gfp_cells"] = lab
        unchanged = set(table["label"].tolist()) - changed
        extra = [c for c in (old.columns if old is not None else []) if c not in table.columns]
        if "gfap" in planes:
            from .segment.gfp_cells import gfap_positivity

            params = cfg.gfap_positivity
            if old is not None and "bleed_coefficient" in old and old["bleed_coefficient"].notna().any():
                params = replace(params, bleed_coefficient=float(old["bleed_coefficient"].dropna().iloc[0]))
            fresh = gfap_positivity(lab, planes["gfap"], gfp=planes.get("gfp"), pixel_size_um=px,
                                    params=params)
            table = table.merge(fresh, on="label", how="left")
        table = _carry(table, old, unchanged if "gfap" in planes else set(table["label"]), extra)
        if "gfap_positive" not in table:
            table["gfap_positive"] = pd.Series([pd.NA] * len(table), dtype="boolean")
        table["gfap_positive"] = _as_boolean(table["gfap_positive"])
        for lab_id, value in sorted(overrides.items()):
            hit = table["label"] == int(lab_id)
            if hit.any():
                table.loc[hit, "gfap_positive"] = bool(value)
                edits.append({"kind": "gfp_cells", "action": "flip_gfap", "label": int(lab_id),
                              "gfap_positive": bool(value)})
        table = order_columns(table.reset_index(drop=True), "gfp_cells")
        tables["gfp_cells"] = table

    if "astrocytes" in labels:
        lab = labels["astrocytes"]
        table, lab = _keep_inside(object_table(lab, pixel_size_um=px), lab, roi, px)
        old = res.tables.get("astrocytes")
        extra = [c for c in (old.columns if old is not None else []) if c not in table.columns]
        unchanged = set(table["label"].tolist()) - _changed(res.labels.get("astrocytes"), lab)
        table = _carry(table, old, unchanged, extra)
        if "gfp_cells" in labels:  # the GFP+ cells may have been edited too
            table["gfp_positive"] = on_gfp_cells(lab, table["label"], labels["gfp_cells"])
        labels["astrocytes"] = lab
        tables["astrocytes"] = order_columns(table, "astrocytes")

    if puncta is not None:
        pts = pd.DataFrame(puncta).drop(columns=["label", "image"], errors="ignore")
        pts = pts.dropna(subset=["y_um", "x_um"]).reset_index(drop=True)
        pts.insert(0, "label", np.arange(1, len(pts) + 1, dtype=np.int64))
        tables["puncta"] = order_columns(pts, "puncta")

    if "motor_neurons" in labels:
        from .segment.motor_neurons import measure_motor_neurons

        lab = labels["motor_neurons"]
        neurons = measure_motor_neurons(lab, pixel_size_um=px)
        neurons, lab = _keep_inside(neurons, lab, roi, px)
        labels["motor_neurons"] = lab
        old = res.tables.get("motor_neurons")
        neurons = neurons.drop(columns=["n_puncta", "puncta_per_100um"], errors="ignore")
        extra = [c for c in (old.columns if old is not None else [])
                 if c not in neurons.columns and c not in ("n_puncta", "puncta_per_100um")]
        unchanged = set(neurons["label"].tolist()) - _changed(res.labels.get("motor_neurons"), lab)
        neurons = _carry(neurons, old, unchanged, extra)
        if "puncta" in tables:
            from .measure.synapses import perisomatic_puncta

            peri = perisomatic_puncta(lab, tables["puncta"], pixel_size_um=px,
                                      distance_um=cfg.synapses.distance_um,
                                      inside_um=cfg.synapses.inside_um)
            neurons = neurons.merge(peri[["label", "n_puncta", "puncta_per_100um"]], on="label",
                                    how="left")
            neurons["n_puncta"] = neurons["n_puncta"].fillna(0).astype("int64")
        for col in ("n_puncta", "puncta_per_100um"):
            if col not in neurons:
                neurons[col] = pd.Series([pd.NA] * len(neurons), dtype="Float64")
        tables["motor_neurons"] = order_columns(neurons.reset_index(drop=True), "motor_neurons")

    gfp = tables.get("gfp_cells")
    called = summary.get("n_gfp_gfap_cells") is not None or (
        gfp is not None and "gfap_positive" in gfp and gfp["gfap_positive"].notna().any())
    summary.update(cord_counts(tables, area_mm2=area_mm2, gfap_called=called))


def _recompute_muscle(res: Results, labels: dict[str, np.ndarray], tables: dict[str, pd.DataFrame],
                      summary: dict[str, Any], cfg: Config, planes: Mapping[str, np.ndarray],
                      px: float) -> None:
    from .measure.morphology import fiber_histogram, fiber_summary, measure_fibers
    from .pipeline import order_columns, relabel_kept

    if "fibers" not in labels:
        return
    lab = labels["fibers"]
    nuclei = planes.get("nuclei")
    table = measure_fibers(lab, pixel_size_um=px, exclude_border=cfg.muscle.exclude_border,
                           nuclei=nuclei, nuclei_kind="intensity")  # as the pipeline does
    lab = relabel_kept(lab, table["label"])
    labels["fibers"] = lab
    old = res.tables.get("fibers")
    extra = [c for c in (old.columns if old is not None else []) if c not in table.columns]
    unchanged = set(table["label"].tolist()) - _changed(res.labels.get("fibers"), lab)
    table = _carry(table, old, unchanged, extra)
    tables["fibers"] = order_columns(table, "fibers")
    summary.update(fiber_summary(table, atrophy_threshold_um2=cfg.muscle.atrophy_threshold_um2))
    bins = np.arange(0.0, cfg.muscle.histogram_max_um2 + cfg.muscle.histogram_bin_um2,
                     cfg.muscle.histogram_bin_um2)
    tables["fiber_histogram"] = fiber_histogram(table, bins_um2=bins)


# --------------------------------------------------------------------- save
def _run_order(out: Path, image: str) -> list[str]:
    order = result_images(out)
    if image not in order:
        order.append(image)
    return order


def save_review(
    out_dir: str | Path,
    image: str,
    results: Results,
    *,
    edits: Sequence[Mapping[str, Any]] = (),
    config: Config | None = None,
    source_path: str | Path | None = None,
    write_labels: bool = True,
    write_qc: bool = True,
) -> pd.DataFrame:
    """Write one image's reviewed results into a results folder.

    The image's part (``OUT/.parts/<key>/``) is replaced with the reviewed
    summary row and tables, ``labels/<stem>.ome.tif`` (and the QC overlay, when
    the image planes are known) are rewritten, then ``summary.csv`` and
    ``objects/*.csv`` are rebuilt from all parts (other images untouched) and
    ``run.json`` records ``images[image]["review"]`` = ``{"reviewed": true,
    "time", "user", "n_saves", "edits"}`` (edits accumulate over saves). A
    folder without results yet is created, so an image analysed in napari can
    be saved like a batch result; a later ``spinalquant run`` with the same
    parameters on the unchanged file keeps the reviewed part.

    Parameters
    ----------
    out_dir : str or Path
        Results folder.
    image : str
        The image's name in the results (``summary.csv`` ``image`` column).
    results : Results
        Reviewed results (from :func:`recompute`).
    edits : sequence of dict
        What the reviewer changed (see :func:`label_edits`); default:
        ``results.provenance["edits"]``.
    config : Config, optional
        Parameters of the analysis (used for a new part's parameter hash).
    source_path : str or Path, optional
        The image file (its content hash is stored for a new part).
    write_labels, write_qc : bool
        Rewrite the label OME-TIFF / the QC overlay.

    Returns
    -------
    DataFrame
        The rebuilt ``summary.csv`` table.
    """
    from . import __version__
    from .batch import (
        PART_FORMAT,
        atomic_write_text,
        check_output_dir,
        input_hash,
        json_default,
        merge_results,
        output_stem,
        params_hash,
        part_key,
        write_part,
    )

    out = Path(out_dir)
    check_output_dir(out)
    cfg = config or Config()
    edits = list(edits) if edits else list(results.provenance.get("edits", []))
    done = _read_json(out / ".parts" / part_key(image) / "done.json")
    if not done or done.get("status") != "ok":
        digest = ""
        if source_path is not None and Path(source_path).is_file():
            digest = input_hash(Path(source_path))
        done = {"status": "ok", "input_hash": digest, "params_hash": params_hash(cfg),
                "section": results.section, "timings": {}, "roi_files": [],
                "version": __version__, "format": PART_FORMAT}
    done = {k: v for k, v in done.items() if k != "image"}
    done["reviewed"] = True
    done["section"] = results.section
    row = {"image": image, "status": "ok", "error": "", "section": results.section,
           "pixel_size_um": results.pixel_size_um, **results.summary}
    stem = output_stem(image)
    if write_labels and results.labels:
        from .io import save_labels

        (out / "labels" / stem).parent.mkdir(parents=True, exist_ok=True)
        save_labels(out / "labels" / f"{stem}.ome.tif", results.labels,
                    pixel_size_um=results.pixel_size_um)
    if write_qc and results.planes:
        from .report import save_qc_png

        save_qc_png(out / "qc" / f"{stem}.png", results, title=f"{image} (reviewed)")
    write_part(out, image, row, dict(results.tables), done)
    summary = merge_results(out, _run_order(out, image))

    run = _read_json(out / "run.json") or {
        "schema_version": 1, "spinalquant_version": __version__,
        "parameters": cfg.to_dict(), "params_hash": params_hash(cfg), "images": {},
    }
    images = run.setdefault("images", {})
    entry = images.setdefault(image, {
        "status": "ok", "error": "", "input_hash": done.get("input_hash", ""), "timings": {},
        "section": results.section, "skipped_unchanged": False, "source": "napari",
    })
    previous = entry.get("review") or {}
    entry["review"] = {
        "reviewed": True,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "user": _user(),
        "n_saves": int(previous.get("n_saves", 0)) + 1,
        "edits": [*previous.get("edits", []), *[dict(e) for e in edits]],
    }
    atomic_write_text(out / "run.json", json.dumps(run, indent=2, default=json_default))
    return summary


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


# ------------------------------------------------------------ config file
def _toml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_scalar(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def config_to_toml(config: Config) -> str:
    """A TOML document that :func:`~spinalquant.config.load_config` reads back to ``config``.

    Unset (None) parameters are left out, so they keep their defaults.

    Examples
    --------
    >>> import tomllib
    >>> cfg = Config.from_dict({"motor_neurons": {"min_area_um2": 250}, "channels": {"gfp": "C1"}})
    >>> Config.from_dict(tomllib.loads(config_to_toml(cfg))).motor_neurons.min_area_um2
    250.0
    """
    lines: list[str] = ["# spinalquant parameters (written by the napari plugin)"]
    for section, values in config.to_dict().items():
        lines += ["", f"[{section}]"]
        for key, v in values.items():
            if v is None:
                continue
            name = key if key.replace("_", "").isalnum() and key.isascii() else json.dumps(key)
            lines.append(f"{name} = {_toml_scalar(v)}")
    return "\n".join(lines) + "\n"
