"""QC overlays and the run report: pictures a person checks before trusting numbers."""

from __future__ import annotations

import base64
import html
import io
import json
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from .pipeline import Results

# display colours (RGB 0..1) of each channel in the composite
_CHANNEL_COLOURS = {
    "gfp": (0.1, 1.0, 0.1),
    "gfap": (1.0, 0.15, 0.8),
    "chat": (0.2, 0.5, 1.0),
    "synapse": (1.0, 0.55, 0.1),
    "nuclei": (0.35, 0.35, 0.8),
    "border": (1.0, 1.0, 1.0),
}
# outline colours per object kind
OUTLINE_COLOURS = {
    "gfp_gfap_pos": (1.0, 1.0, 0.0),
    "gfp_gfap_neg": (0.0, 1.0, 1.0),
    "astrocytes": (1.0, 0.5, 0.9),
    "motor_neurons": (1.0, 1.0, 1.0),
    "puncta": (1.0, 0.3, 0.0),
    "fibers": (1.0, 0.9, 0.0),
    "roi": (0.6, 0.6, 0.6),
}


def _stretch(plane: np.ndarray) -> np.ndarray:
    """Percentile stretch to 0..1 for display only (data are never rescaled)."""
    p = np.asarray(plane, dtype=np.float32)
    # percentiles from a regular subsample of about 250k pixels: the same display
    # range as the full image to well within one grey level, at a fraction of the cost
    step = max(1, int(np.sqrt(p.size / 250_000)))
    lo, hi = np.percentile(p[::step, ::step], [0.5, 99.8])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((p - lo) / (hi - lo), 0.0, 1.0)


def composite(res: Results) -> np.ndarray:
    """An RGB float (Y, X, 3) picture of the analysed planes."""
    if "rgb" in res.planes:
        return np.asarray(res.planes["rgb"], dtype=np.float32) / 255.0
    shape = next(iter(res.planes.values())).shape
    img = np.zeros((*shape, 3), np.float32)
    for name, plane in res.planes.items():
        colour = _CHANNEL_COLOURS.get(name, (0.7, 0.7, 0.7))
        weight = 0.45 if name in ("nuclei", "synapse") else 0.8
        grey = _stretch(plane)
        for k, c in enumerate(colour):
            if c:  # most channel colours are pure: skip their empty components
                img[..., k] += np.float32(weight * c) * grey
    return np.clip(img, 0, 1, out=img)


def overlay(res: Results) -> np.ndarray:
    """Composite with every object's outline drawn in its kind's colour, (Y, X, 3) uint8."""
    img = composite(res)

    def draw(mask: np.ndarray, colour: tuple[float, float, float]) -> None:
        img[mask] = colour

    if res.roi_mask is not None:
        draw(find_boundaries(res.roi_mask.astype(np.uint8), mode="inner"), OUTLINE_COLOURS["roi"])
    for kind in ("fibers", "astrocytes", "motor_neurons"):
        lab = res.labels.get(kind)
        if lab is not None and lab.any():
            draw(find_boundaries(lab, mode="inner"), OUTLINE_COLOURS[kind])
    lab = res.labels.get("gfp_cells")
    if lab is not None and lab.any():
        table = res.tables.get("gfp_cells")
        pos = set()
        if table is not None and "gfap_positive" in table:
            pos = set(table.loc[table["gfap_positive"].fillna(False).astype(bool), "label"].tolist())
        bounds = find_boundaries(lab, mode="inner")
        is_pos = np.isin(lab, list(pos)) if pos else np.zeros(lab.shape, bool)
        draw(bounds & is_pos, OUTLINE_COLOURS["gfp_gfap_pos"])
        draw(bounds & ~is_pos, OUTLINE_COLOURS["gfp_gfap_neg"])
    pts = res.tables.get("puncta")
    if pts is not None and len(pts):
        yy = np.clip(np.rint(pts["y_um"].to_numpy() / res.pixel_size_um).astype(int), 0, img.shape[0] - 1)
        xx = np.clip(np.rint(pts["x_um"].to_numpy() / res.pixel_size_um).astype(int), 0, img.shape[1] - 1)
        # a small plus per punctum, visible at full resolution
        for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
            img[np.clip(yy + dy, 0, img.shape[0] - 1), np.clip(xx + dx, 0, img.shape[1] - 1)] = \
                OUTLINE_COLOURS["puncta"]
    return (img * 255).astype(np.uint8)


def _scale_bar_um(width_um: float) -> float:
    target = width_um / 5
    for v in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if v >= target:
            return float(v)
    return 10000.0


def _header(res: Results, title: str, width: int, height: int = 90) -> np.ndarray:
    """The QC header (title, key figures, legend) rendered as a (height, width, 3) uint8 strip."""
    fig = _header_figure(res, title, width, height)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _fit_left_of(text: Any, right_px: float, renderer: Any, min_size: float = 7.0) -> None:
    """Shrink, then middle-ellipsize, a left-aligned text until it ends before ``right_px``."""
    full = text.get_text()
    while text.get_window_extent(renderer).x1 > right_px and text.get_fontsize() > min_size:
        text.set_fontsize(text.get_fontsize() - 0.5)
    keep = len(full)
    while text.get_window_extent(renderer).x1 > right_px and keep > 4:
        keep -= 1
        head = (keep + 1) // 2
        text.set_text(full[:head] + "…" + full[len(full) - (keep - head):])


def _header_figure(res: Results, title: str, width: int, height: int = 90) -> Any:
    """The QC header as a matplotlib Figure (Agg canvas attached); texts never run into the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    handles = []
    if res.section == "cord":
        names = {
            "gfp_gfap_pos": "GFP+ GFAP+", "gfp_gfap_neg": "GFP+ GFAP−", "astrocytes": "astrocyte",
            "motor_neurons": "motor neuron", "puncta": "punctum", "roi": "ROI",
        }
        present = set(res.labels) | set(res.tables)
        for key, label in names.items():
            base = "gfp_cells" if key.startswith("gfp") else key
            if base in present or (key == "roi" and res.roi_mask is not None):
                handles.append(Patch(color=OUTLINE_COLOURS[key], label=label))
    else:
        handles.append(Patch(color=OUTLINE_COLOURS["fibers"], label="fiber"))
    s = res.summary
    if res.section == "cord":
        bits = []
        if s.get("n_gfp_cells") is not None:
            pct = s.get("pct_gfp_gfap")
            bits.append(f"GFP+ {s['n_gfp_cells']}" + (f" ({pct:.1f}% GFAP+)" if pct is not None else ""))
        if s.get("n_motor_neurons") is not None:
            bits.append(f"MN {s['n_motor_neurons']}")
        if s.get("n_puncta") is not None:
            bits.append(f"puncta {s['n_puncta']}")
        line = " · ".join(bits)
    else:
        line = f"fibers {s.get('n_fibers')} · median CSA {s.get('fiber_csa_median_um2') or 0:.0f} µm²"
    # the title has the top row to itself; the legend sits below it, right of the key figures
    title_text = fig.text(0.01, 0.84, title, fontsize=11, va="center", color="white", weight="bold")
    line_text = fig.text(0.01, 0.38, line, fontsize=10, va="center", color="white")
    renderer = canvas.get_renderer()
    if handles:
        legend = fig.legend(handles=handles, loc="lower right", ncol=min(2, len(handles)),
                            fontsize=9, frameon=False, bbox_to_anchor=(1.0, -0.04),
                            labelcolor="white", handlelength=1.2, columnspacing=1.0,
                            labelspacing=0.25, borderaxespad=0.2)
        box = legend.get_window_extent(renderer)
        for text in (title_text, line_text):
            t = text.get_window_extent(renderer)
            if t.y1 > box.y0 and t.y0 < box.y1:  # on the legend's rows: stop before it
                _fit_left_of(text, box.x0 - 6, renderer)
    for text in (title_text, line_text):  # and never past the right edge
        _fit_left_of(text, width - 4, renderer)
    return fig


def _scale_label(text: str, height: int) -> np.ndarray:
    """White text on black, (height, width) float mask, for the scale bar's label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(1.2, height / dpi), dpi=dpi, facecolor="black")
    canvas = FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, color="white", ha="center", va="center", fontsize=10)
    canvas.draw()
    grey = np.asarray(canvas.buffer_rgba())[..., 0].astype(np.float32) / 255.0
    cols = np.flatnonzero(grey.max(axis=0) > 0)
    return grey[:, cols.min():cols.max() + 1] if cols.size else grey[:, :1]


def qc_image(res: Results, *, title: str = "", max_px: int = 1600) -> np.ndarray:
    """The QC picture: overlay, scale bar, title, key figures and legend.

    The overlay (:func:`overlay`, decimated to at most ``max_px`` a side) with
    a scale bar drawn into it, under a 90-pixel header with the title, the
    image's key figures and the colour legend. Only the small header and the
    scale-bar label are rendered with matplotlib; the picture itself is never
    resampled.

    Parameters
    ----------
    res : Results
        One image's analysis (:func:`spinalquant.analyze`).
    title : str
        Printed in the header (the batch uses the image's name).
    max_px : int
        Longest side of the picture; larger images are decimated by an integer step.

    Returns
    -------
    ndarray of uint8, shape (H + 90, max(W, 480), 3)
        RGB; write it with any image library (:func:`save_qc_png` uses Pillow).

    Examples
    --------
    >>> from spinalquant.synthetic import make_muscle_section
    >>> from spinalquant import analyze
    >>> res = analyze(make_muscle_section(seed=0, shape=(256, 256)).stack)
    >>> qc_image(res, title="demo").shape
    (346, 480, 3)
    """
    rgb = overlay(res)
    step = max(1, int(np.ceil(max(rgb.shape[:2]) / max_px)))
    rgb = np.ascontiguousarray(rgb[::step, ::step])
    h, w = rgb.shape[:2]
    px = res.pixel_size_um * step
    bar = _scale_bar_um(w * px)
    bar_px = max(1, round(bar / px))
    thick = max(3, round(h / 150))
    x1 = round(w - 0.04 * w)
    y1 = round(h - 0.05 * h)
    rgb[max(0, y1 - thick):y1, max(0, x1 - bar_px):x1] = 255
    label = _scale_label(f"{bar:g} µm", 18)
    lh, lw = label.shape
    top = y1 - thick - 2 - lh
    left = round(x1 - bar_px / 2 - lw / 2)
    if top >= 0 and left >= 0 and left + lw <= w:
        region = rgb[top:top + lh, left:left + lw].astype(np.float32)
        region = region * (1 - label[..., None]) + 255.0 * label[..., None]
        rgb[top:top + lh, left:left + lw] = region.astype(np.uint8)
    width = max(w, 480)  # room for the header text on small images
    picture = np.zeros((h, width, 3), np.uint8)
    picture[:, :w] = rgb
    return np.concatenate([_header(res, title, width), picture], axis=0)


def save_qc_png(path: str | Path, res: Results, *, title: str = "") -> Path:
    """Write the QC overlay PNG (:func:`qc_image`) atomically."""
    from PIL import Image

    from .batch import atomic_write_bytes

    buf = io.BytesIO()
    # a fast zlib level: the QC picture is written for every image of every run
    Image.fromarray(qc_image(res, title=title)).save(buf, format="PNG", compress_level=3)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ------------------------------------------------------------------ report
def format_number(v: float) -> str:
    """A table value with 4 significant digits, never in scientific notation.

    Parameters
    ----------
    v : float
        The value; NaN gives an empty string.

    Returns
    -------
    str

    Examples
    --------
    >>> [format_number(v) for v in (34219.288, 0.0776397, 82.3529, 7.0, float("nan"))]
    ['34219', '0.07764', '82.35', '7', '']
    """
    if v is None or np.isnan(v):
        return ""
    if not np.isfinite(v):
        return str(v)
    if abs(v) >= 1e4:
        return f"{v:.0f}"
    txt = f"{v:.4g}"
    if "e" in txt:  # tiny values: plain decimals, 4 significant digits
        digits = 3 - int(np.floor(np.log10(abs(v))))
        txt = f"{v:.{digits}f}"
    return txt


def _notes_html(run: dict[str, Any]) -> list[str]:
    """Per-image notes and review marks from run.json, as HTML (nothing when there are none)."""
    items = []
    for image, entry in (run.get("images") or {}).items():
        if not isinstance(entry, dict):
            continue
        for note in entry.get("notes") or []:
            items.append(f"<li><b>{html.escape(str(image))}</b>: {html.escape(str(note))}</li>")
        review = entry.get("review") or {}
        if review.get("reviewed"):
            n = len(review.get("edits") or [])
            items.append(
                f"<li><b>{html.escape(str(image))}</b>: reviewed by hand in napari "
                f"({n} edit(s), last saved {html.escape(str(review.get('time', '')))} by "
                f"{html.escape(str(review.get('user', '')))}); its numbers include those edits</li>"
            )
    if not items:
        return []
    return ["<h2>Notes</h2><ul>", *items, "</ul>"]


def _plot_png(draw) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    ax = fig.add_subplot(111)
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _thumb(path: Path, max_px: int = 220) -> str | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        return None
    try:
        with Image.open(path) as im:
            im.thumbnail((max_px, max_px))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=80)
    except OSError:
        return None
    return base64.b64encode(buf.getvalue()).decode()


def write_report(out_dir: str | Path) -> Path:
    """Write ``report.html``: one self-contained offline page about a run."""
    from .batch import atomic_write_text, output_stem

    out = Path(out_dir)
    summary = pd.read_csv(out / "summary.csv")
    run: dict[str, Any] = {}
    try:
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    ok = summary[summary["status"] == "ok"]
    plots: list[tuple[str, str]] = []
    cord = ok[ok["section"] == "cord"]
    if len(cord):
        cols = [c for c in ("n_gfp_cells", "n_motor_neurons", "n_astrocytes") if cord[c].notna().any()]
        if cols:
            def counts(ax):
                x = np.arange(len(cord))
                wdt = 0.8 / len(cols)
                for i, c in enumerate(cols):
                    ax.bar(x + i * wdt, cord[c].fillna(0), wdt, label=c)
                ax.set_xticks(x + 0.4 - wdt / 2, cord["image"], rotation=30, ha="right", fontsize=7)
                ax.set_ylabel("count")
                ax.legend(fontsize=8)
            plots.append(("Per-image counts", _plot_png(counts)))
        if cord["pct_gfp_gfap"].notna().any():
            def pct(ax):
                bars = ax.bar(np.arange(len(cord)), cord["pct_gfp_gfap"].fillna(0), color="#6a6")
                labels = [
                    "" if pd.isna(n) or pd.isna(k) else f"{int(k)}/{int(n)}"
                    for k, n in zip(cord["n_gfp_gfap_cells"], cord["n_gfp_cells"], strict=True)
                ]
                ax.bar_label(bars, labels=labels, fontsize=8)
                ax.set_xticks(np.arange(len(cord)), cord["image"], rotation=30, ha="right", fontsize=7)
                ax.set_ylabel("% of GFP+ cells GFAP+")
                ax.set_ylim(0, 100)
            plots.append(("GFP/GFAP colocalization", _plot_png(pct)))
    fib_path = out / "objects" / "fibers.csv"
    if fib_path.is_file():
        fib = pd.read_csv(fib_path)
        if len(fib):
            # one set of bin edges for every image, so the curves can be compared
            edges = np.histogram_bin_edges(fib["area_um2"].dropna(), bins=30)

            def hist(ax):
                for name, g in fib.groupby("image"):
                    ax.hist(g["area_um2"], bins=edges, histtype="step", label=str(name))
                ax.set_xlabel("fiber CSA (µm²)")
                ax.set_ylabel("fibers")
                ax.legend(fontsize=7)
            plots.append(("Fiber cross-sectional area", _plot_png(hist)))
    n_failed = int((summary["status"] == "failed").sum())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>spinalquant report</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#eee}td.l{text-align:left}.failed{background:#fdd}.thumbs a{display:inline-block;"
        "margin:4px;text-align:center;font-size:11px;color:#333}img{border:1px solid #999}</style></head><body>",
        f"<h1>spinalquant run</h1><p>{len(summary)} images: {len(ok)} analysed, {n_failed} failed. "
        f"spinalquant {html.escape(str(run.get('spinalquant_version', '')))}, finished "
        f"{html.escape(str(run.get('finished', '')))}.</p>",
    ]
    for title, b64 in plots:
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{b64}'>")
    parts.append("<h2>Summary</h2><div style='overflow-x:auto'><table><tr>")
    show = [c for c in summary.columns if summary[c].notna().any() or c in ("image", "status")]
    parts += [f"<th>{html.escape(c)}</th>" for c in show]
    parts.append("</tr>")
    for _, r in summary.iterrows():
        cls = " class='failed'" if r["status"] == "failed" else ""
        parts.append(f"<tr{cls}>")
        for c in show:
            v = r[c]
            if isinstance(v, float):
                txt = format_number(v)
            else:
                txt = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            left = " class='l'" if c in ("image", "status", "error", "section") else ""
            parts.append(f"<td{left}>{html.escape(txt)}</td>")
        parts.append("</tr>")
    parts.append("</table></div>")
    parts += _notes_html(run)
    parts.append("<h2>QC overlays</h2><div class='thumbs'>")
    for _, r in ok.iterrows():
        rel = f"qc/{output_stem(str(r['image']))}.png"
        b64 = _thumb(out / rel)
        if b64:
            parts.append(f"<a href='{html.escape(urllib.parse.quote(rel))}'><img src='data:image/jpeg;base64,{b64}'>"
                         f"<br>{html.escape(str(r['image']))}</a>")
    parts.append("</div></body></html>")
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
