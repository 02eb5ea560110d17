"""Batch runs: discover images, analyse each (serially or on Dask), never lose a result.

Layout of an output folder (the public part is specified in ``outputs.md``)::

    OUT/summary.csv, OUT/objects/*.csv   merged tables (rewritten atomically)
    OUT/labels/<image>.ome.tif           label images
    OUT/qc/<image>.png                   overlays
    OUT/run.json                         provenance
    OUT/.parts/<key>/                    one folder per image: the source of truth
                                         from which the merged tables are rebuilt

Each image's part is written into a temporary folder and renamed into place
only when complete, so a run killed at any moment leaves either a complete part
or none; a re-run skips images whose part matches the input's content hash and
the parameters, and redoes the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__
from .config import Config
from .errors import ConfigError, LoadError, SpinalquantError
from .pipeline import CORD_FIGURES, MUSCLE_FIGURES, TABLE_COLUMNS, empty_table

SCHEMA_VERSION = 1
OBJECT_TABLES = ("gfp_cells", "astrocytes", "motor_neurons", "puncta", "fibers")
EXTRA_TABLES = ("fiber_histogram",)
SUMMARY_COLUMNS = (
    "image", "status", "error", "section", "pixel_size_um", *CORD_FIGURES, *MUSCLE_FIGURES,
)
PART_FORMAT = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass(frozen=True)
class InputImage:
    """One image to analyse: its path, its scene and its name in the results.

    A file holding several scenes (the series of a Leica ``.lif``, the scenes
    of a CZI or ND2, the images of a multi-image OME-TIFF) is one input per
    scene; its ``image`` names the scene (see :func:`scene_image_names`).
    """

    path: Path
    image: str  # path relative to the INPUT folder it was found in, '/' separators
    scene: int = 0  # as load(path, scene=...) numbers it
    n_scenes: int = 1  # scenes of the file analysed as images


@dataclass
class Outcome:
    """What happened to one image (returned by workers, merged by the runner)."""

    image: str
    status: str  # "ok", "failed" or "skipped" (already complete)
    error: str = ""
    input_hash: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    section: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    tiling: dict[str, Any] | None = None  # tiles, overlap and image-wide values, when tiled
    notes: list[str] = field(default_factory=list)  # things the biologist should know
    scene: int | None = None  # the scene of a multi-scene file (set by the runner)


# ---------------------------------------------------------------- discovery
def discover_inputs(inputs: Sequence[str | Path]) -> list[InputImage]:
    """Expand folders (recursively) and files into the images to analyse.

    Hidden files and folders, and spinalquant output folders, are skipped.
    Order is deterministic (sorted by name within each INPUT).

    Raises
    ------
    FileNotFoundError
        For an INPUT that does not exist.
    ConfigError
        When two images would write the same results (see :func:`check_unique_names`).
    """
    from .io import is_supported

    found: list[InputImage] = []
    seen: set[Path] = set()
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"input not found: {p}")
        if p.is_file():
            items = [(p, p.name)]
        else:
            items = []
            # the INPUT folder itself holds results (--out was the input folder): its
            # label images and QC pictures are not inputs, the images beside them are
            own_outputs = _is_results_folder(p)
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if own_outputs and len(rel.parts) > 1 and rel.parts[0] in ("labels", "qc"):
                    continue
                if any(_is_results_folder(p / Path(*rel.parts[: i + 1]))
                       for i in range(len(rel.parts) - 1)):
                    continue  # inside a results folder
                if f.is_file() and is_supported(f):
                    items.append((f, rel.as_posix()))
        for f, name in items:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                found.append(InputImage(f, name))
    kept = {f for f, _ in _without_later_ome_parts([(i.path, i.image) for i in found])}
    found = [scene for i in found if i.path in kept for scene in _scene_inputs(i)]
    check_unique_names(found)
    return found


def _scene_inputs(item: InputImage) -> list[InputImage]:
    """One input per scene of a file (the file itself when it holds one)."""
    from .io._load import image_scenes

    scenes = image_scenes(item.path)
    if len(scenes) == 1:
        return [InputImage(item.path, item.image, scene=scenes[0][0])]
    names = scene_image_names(item.image, scenes)
    return [InputImage(item.path, name, scene=index, n_scenes=len(scenes))
            for (index, _), name in zip(scenes, names, strict=True)]


def _scene_label(name: str) -> str:
    """A scene's name as written in an image name: one line, no path separators."""
    return "".join("_" if c in "/\\" or not c.isprintable() else c for c in name).strip()


def _safe_suffix(suffix: str) -> str:
    """A scene suffix (`` [Series003]``, `` #2``) as part of a file name on any system."""
    return "".join(c if c.isalnum() or c in " -_.,()[]#+=@" else "_" for c in suffix)


def scene_image_names(image: str, scenes: Sequence[tuple[int, str]]) -> list[str]:
    """Names in the results for the scenes of one file.

    A scene is ``"<image> [<scene name>]"``, or ``"<image> #<index>"`` when it
    has no name (``index`` as ``load(path, scene=index)`` numbers it, from 0);
    a name shared by several scenes of the file gets both, ``"<image> [<name>]
    #<index>"``. A file with one scene keeps its plain name.

    Parameters
    ----------
    image : str
        The file's name in the results (path relative to the input folder).
    scenes : sequence of (int, str)
        Its scenes' indices and names (``io._load.image_scenes``).

    Returns
    -------
    list of str
        One unique name per scene, in order.

    Examples
    --------
    >>> scene_image_names("sc/L4.lif", [(0, "Series001"), (1, "Series002")])
    ['sc/L4.lif [Series001]', 'sc/L4.lif [Series002]']
    >>> scene_image_names("two.ome.tif", [(0, ""), (2, "")])
    ['two.ome.tif #0', 'two.ome.tif #2']
    >>> scene_image_names("a.tif", [(0, "")])
    ['a.tif']
    """
    if len(scenes) == 1:
        return [image]
    labels = [_scene_label(name) for _, name in scenes]
    # unique after cleaning for a file name too, so their labels/ and qc/ files differ
    keys = [_safe_suffix(label).casefold() for label in labels]
    out = []
    for (index, _), label, key in zip(scenes, labels, keys, strict=True):
        if label and keys.count(key) == 1:
            out.append(f"{image} [{label}]")
        elif label:
            out.append(f"{image} [{label}] #{index}")
        else:
            out.append(f"{image} #{index}")
    return out


_SCENE_SUFFIX = re.compile(r" \[[^/]*\](?: #\d+)?| #\d+")


def split_scene(image: str) -> tuple[str, str]:
    """``"sub/L4.lif [Series003]"`` -> ``("sub/L4.lif", " [Series003]")``.

    The second part is "" for the name of a whole file.

    Examples
    --------
    >>> split_scene("sub/L4.lif [Series003]"), split_scene("a [1].tif"), split_scene("b.czi #2")
    (('sub/L4.lif', ' [Series003]'), ('a [1].tif', ''), ('b.czi', ' #2'))
    """
    from .io import is_supported

    # the longest file name that is an image file: a file may have brackets in its name
    parent, _, name = image.rpartition("/")
    for m in re.finditer(r" \[| #\d+$", name):
        file, suffix = name[: m.start()], name[m.start():]
        if is_supported(file) and _SCENE_SUFFIX.fullmatch(suffix):
            return (f"{parent}/{file}" if parent else file), suffix
    return image, ""


#: Microscopy and picture formats spinalquant does not read (``io.SUPPORTED_EXTENSIONS``
#: does): files of these types in an input folder are named, not skipped silently.
UNREAD_IMAGE_EXTENSIONS = (
    ".oib", ".oif", ".oir", ".ims", ".vsi", ".ets", ".svs", ".ndpi", ".scn", ".mrxs",
    ".zvi", ".lei", ".sld", ".dv", ".r3d", ".ics", ".ids", ".stk", ".btf", ".tf2", ".tf8",
    ".bmp", ".gif", ".jp2", ".webp", ".h5", ".hdf5", ".nrrd", ".mha", ".klb", ".zarr",
)


def unread_images(inputs: Sequence[str | Path]) -> dict[str, int]:
    """Count the image files of unsupported types in the INPUT folders, by extension.

    A folder walk (like :func:`discover_inputs`, hidden files and results
    folders left out) that finds the microscope files spinalquant would pass
    over, e.g. Olympus ``.oib`` beside TIFFs.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.oib").write_bytes(b"x"), (d / "b.tif").write_bytes(b"x"), (d / "n.txt").write_text("")
    >>> unread_images([d])
    {'.oib': 1}
    """
    counts: dict[str, int] = {}
    for raw in inputs:
        p = Path(raw)
        if not p.is_dir():
            continue
        for f in p.rglob("*"):
            rel = f.relative_to(p)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if any(_is_results_folder(p / Path(*rel.parts[: i + 1])) for i in range(len(rel.parts) - 1)):
                continue
            ext = f.suffix.lower()
            if ext in UNREAD_IMAGE_EXTENSIONS and (f.is_file() or ext == ".zarr"):
                counts[ext] = counts.get(ext, 0) + 1
    return dict(sorted(counts.items()))


def _without_later_ome_parts(items: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Drop the later files of multi-file OME-TIFF datasets whose first file is listed.

    Opening any file of such a dataset (Micro-Manager, Bio-Formats) reads all of it,
    so each later file would be analysed again as a copy of the first.
    """
    from .io._load import ome_dataset_first_file

    listed = {f.resolve() for f, _ in items}
    keep = []
    for f, name in items:
        first = ome_dataset_first_file(f) if name.lower().endswith((".ome.tif", ".ome.tiff")) else None
        if first is None or first.resolve() not in listed:
            keep.append((f, name))
    return keep


def _is_results_folder(folder: Path) -> bool:
    # run.json is written when a run ends; .parts/ from its start (check_output_dir),
    # so the labels/ and qc/ images of a run that was killed are not taken as inputs
    return (folder / "run.json").is_file() or (folder / ".parts").is_dir()


def check_unique_names(items: Sequence[InputImage]) -> None:
    """Refuse images whose results would overwrite each other's.

    Two images with the same ``image`` name (the same relative path found under two
    INPUT folders) would share one row of every table; two with the same output
    stem (``a.tif`` and ``a.ome.tif`` in one folder) would share ``labels/a.ome.tif``
    and ``qc/a.png``.

    Raises
    ------
    ConfigError
        Naming the clashing files and how to resolve the clash.

    Examples
    --------
    >>> check_unique_names([InputImage(Path("A/s.tif"), "s.tif")])
    >>> check_unique_names([InputImage(Path("A/s.tif"), "s.tif"),
    ...                     InputImage(Path("B/s.tif"), "s.tif")])
    Traceback (most recent call last):
    ...
    spinalquant.errors.ConfigError: two inputs get the same image name 's.tif' ...
    """
    by_name: dict[str, list[InputImage]] = {}
    by_stem: dict[str, list[InputImage]] = {}
    for it in items:
        by_name.setdefault(it.image, []).append(it)
        by_stem.setdefault(output_stem(it.image), []).append(it)
    for name, group in by_name.items():
        if len(group) > 1:
            raise ConfigError(
                f"two inputs get the same image name {name!r} "
                f"({', '.join(str(g.path) for g in group)}), so their results would "
                "overwrite each other; give their common parent folder as the input "
                "instead (image names are paths relative to the input folder), or rename one"
            )
    for stem, group in by_stem.items():
        if len(group) > 1:
            raise ConfigError(
                f"{' and '.join(repr(g.image) for g in group)} would write the same "
                f"labels/{stem}.ome.tif and qc/{stem}.png; rename one of them or move it "
                "to another folder"
            )


def file_hash(path: Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def input_hash(path: Path) -> str:
    """:func:`file_hash` of an image; of all its files for a multi-file OME-TIFF.

    A re-run then redoes a Micro-Manager-style dataset when any of its files
    changed, not only the first one (a single file's hash is unchanged).
    """
    from .io._load import ome_dataset_files

    files = ome_dataset_files(path) if path.name.lower().endswith((".ome.tif", ".ome.tiff")) else []
    if len(files) <= 1:
        return file_hash(path)
    h = hashlib.sha256()
    for f in files:
        h.update(file_hash(f).encode())
    return h.hexdigest()


def params_hash(config: Config) -> str:
    """A short hash of every resolved parameter plus the package version."""
    blob = json.dumps({"v": __version__, "cfg": config.to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def part_key(image: str) -> str:
    """A file-system-safe, unique folder name for an image's part."""
    digest = hashlib.sha1(image.encode("utf-8")).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in image)[-80:]
    return f"{safe}-{digest}"


def output_stem(image: str) -> str:
    """``sub/L4_s1.ome.tif`` -> ``sub/L4_s1`` (name under labels/ and qc/).

    A scene keeps its suffix: ``L4.lif [Series003]`` -> ``L4 [Series003]``,
    characters that are not safe in a file name replaced by ``_``.

    Examples
    --------
    >>> output_stem("sub/L4_s1.ome.tif"), output_stem("L4.czi [Image:1]"), output_stem("t.ome.tif #2")
    ('sub/L4_s1', 'L4 [Image_1]', 't #2')
    """
    from .io import image_stem

    file, suffix = split_scene(image)
    parent, _, name = file.rpartition("/")
    stem = image_stem(name) + _safe_suffix(suffix)
    return f"{parent}/{stem}" if parent else stem


# ------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for sharing
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


# ---------------------------------------------------------- one image (worker)
def process_image(
    item: InputImage, config: Config, out_dir: str | Path, *, force: bool = False,
    known_hash: str | None = None,
) -> Outcome:
    """Analyse one image and write its part; never raises for a bad image.

    Runs in a worker process (Dask) or in the caller. Returns an
    :class:`Outcome`; the image's failure, if any, is in ``error`` with a
    message meant for a biologist. ``known_hash`` is the file's
    :func:`input_hash` when the caller has it (the runner hashes a
    multi-scene file once for all its scenes).
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        digest = known_hash or input_hash(item.path)
    except OSError as exc:
        return _fail(item, out, config, "", f"cannot read the file: {exc.strerror or exc}", timings)
    timings["hash_s"] = time.perf_counter() - t0
    part = out / ".parts" / part_key(item.image)
    phash = params_hash(config)
    if not force:
        done = _read_done(part)
        if done and done.get("input_hash") == digest and done.get("params_hash") == phash \
                and done.get("status") == "ok":
            return Outcome(item.image, "skipped", input_hash=digest,
                           timings=done.get("timings", {}), section=done.get("section", ""),
                           tiling=done.get("tiling"), notes=done.get("notes", []))
    try:
        return _analyse_and_write(item, config, out, digest, phash, timings)
    except SpinalquantError as exc:
        return _fail(item, out, config, digest, str(exc), timings)
    except MemoryError:
        return _fail(item, out, config, digest,
                     "ran out of memory; analyse it with fewer --workers or as tiles", timings)
    except OSError as exc:
        if getattr(exc, "errno", None) in (27, 28):  # EFBIG, ENOSPC
            msg = ("could not write this image's results: the disk is full (or a file-size "
                   "limit was reached); free space in the output folder and re-run — "
                   "results already written are intact")
        else:
            msg = f"{type(exc).__name__}: {exc}"
        return _fail(item, out, config, digest, msg, timings)
    except Exception as exc:  # an unexpected bug must not stop the batch
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _fail(item, out, config, digest, f"internal error ({tb}); please report it", timings)


def _read_done(part: Path) -> dict[str, Any] | None:
    try:
        return json.loads((part / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _analyse_and_write(
    item: InputImage, cfg: Config, out: Path, digest: str, phash: str, timings: dict[str, float]
) -> Outcome:
    from .io import check_content, load, save_labels
    from .pipeline import analyze
    from .roi import find_sidecar_roi, roi_mask

    t = time.perf_counter()
    budget = int(cfg.image.memory_budget_mb * 2**20)
    # the pixel size (file, config fallback or override) is resolved by analyze(),
    # which fails with a clear PixelSizeError when neither the file nor the config has one
    stack = load(item.path, require_pixel_size=False, dask_threshold_bytes=budget // 2,
                 scene=item.scene)
    if stack.metadata.get("xz_scan"):
        raise LoadError(
            f"{item.path}: this is an XZ scan (a side view: the image has Z and X, Y has "
            "length 1); it cannot be quantified as a tissue section"
        )
    # every marker channel the analysis will use must carry signal: a constant one
    # (detector off: every pixel at the offset; or saturated) would give 0 % GFAP+ or
    # no cells without a word
    check_content(stack, channels=marker_channels(stack, cfg))
    timings["load_s"] = time.perf_counter() - t

    roi = None
    roi_files: list[str] = []
    roi_notes: list[str] = []
    if cfg.roi.use_sidecar:
        paths = find_sidecar_roi(sidecar_key(item))
        if paths:
            roi = roi_mask(paths, shape_yx=stack.shape[2:])
            roi_files = [p.name for p in paths]
        elif item.n_scenes > 1 and (whole := find_sidecar_roi(item.path)):
            roi_notes.append(
                f"the ROI file {whole[0].name} names the whole file, not "
                f"this scene, and was not applied; name it {sidecar_key(item).stem}.roi (.zip, "
                ".geojson) to outline this scene"
            )

    from .tiling import analyze_tiled, decimated, needs_tiling

    t = time.perf_counter()
    tiled = needs_tiling(stack, memory_budget_bytes=budget)
    if tiled:
        res = analyze_tiled(stack, cfg, roi_mask=roi, tile_um=cfg.image.tile_um)
    else:
        res = analyze(stack, cfg, roi_mask=roi)
    timings["analyze_s"] = time.perf_counter() - t
    # what the loader left out or corrected (time points, other scenes, a print
    # resolution ignored...), then unrecognised channels
    # (every scene of a multi-scene file is an input of its own: no "only scene 0" note)
    skip = stack.metadata.get("scene_note") if item.n_scenes > 1 else None
    notes = [str(n) for n in stack.metadata.get("notes", []) if n != skip] \
        + roi_notes + channel_notes(stack, cfg, res.section)
    # images analysed in tiles: labels and QC written downsampled (<= 4096 px a side);
    # the tables are always full resolution
    picture = decimated(res) if tiled else res

    t = time.perf_counter()
    labels_file, qc_file = _picture_files(out, item.image)
    if cfg.output.labels and picture.labels:
        labels_file.parent.mkdir(parents=True, exist_ok=True)
        save_labels(labels_file, picture.labels, pixel_size_um=picture.pixel_size_um)
    else:  # not a left-over of an earlier analysis of this image
        labels_file.unlink(missing_ok=True)
    if cfg.output.qc:
        from .report import save_qc_png

        qc_file.parent.mkdir(parents=True, exist_ok=True)
        save_qc_png(qc_file, picture, title=item.image)
    else:
        qc_file.unlink(missing_ok=True)
    timings["write_s"] = time.perf_counter() - t

    row = {"image": item.image, "status": "ok", "error": "", "section": res.section,
           "pixel_size_um": res.pixel_size_um, **res.summary}
    tables = {k: v for k, v in res.tables.items()}
    tiling = res.provenance.get("tiling") if tiled else None
    write_part(out, item.image, row, tables, {
        "status": "ok", "input_hash": digest, "params_hash": phash, "section": res.section,
        "timings": timings, "roi_files": roi_files, "version": __version__, "format": PART_FORMAT,
        "tiled": tiled, "tiling": tiling, "notes": notes, **_scene_entry(item),
    })
    counts = {k: row.get(k) for k in ("n_gfp_cells", "n_motor_neurons", "n_fibers") if row.get(k) is not None}
    return Outcome(item.image, "ok", input_hash=digest, timings=timings, section=res.section,
                   counts=counts, tiling=tiling, notes=notes)


def sidecar_key(item: InputImage) -> Path:
    """The path whose sidecar ROI files outline ``item`` (for ``roi.find_sidecar_roi``).

    The file itself; for a scene of a multi-scene file, a name beside it
    made of the scene's output stem, so ``L4 [Series003].roi`` outlines
    scene ``Series003`` of ``L4.lif``.

    Examples
    --------
    >>> sidecar_key(InputImage(Path("d/L4.lif"), "L4.lif [S3]", scene=2, n_scenes=4)).as_posix()
    'd/L4 [S3].tif'
    """
    if item.n_scenes <= 1:
        return item.path
    return item.path.with_name(f"{output_stem(item.image).rpartition('/')[2]}.tif")


def marker_channels(stack: Any, cfg: Config) -> list[int]:
    """Indices of the channels that a cord or muscle marker maps to (none for RGB).

    The nuclear stain is left out: it is auxiliary (a muscle section's fibers are
    measured without it).

    Examples
    --------
    >>> import numpy as np
    >>> from spinalquant.stack import Stack
    >>> st = Stack(np.zeros((3, 1, 4, 4), np.uint16), ("DAPI", "NeuN", "GFAP"), (None, 1, 1))
    >>> marker_channels(st, Config())
    [2]
    """
    from .pipeline import CORD_MARKERS, MUSCLE_MARKERS, has_marker

    if stack.rgb:
        return []
    found: set[int] = set()
    for marker in (*CORD_MARKERS, *MUSCLE_MARKERS):
        try:
            if has_marker(stack, cfg, marker):
                found.add(stack.channel_index(cfg.marker(marker), cfg.aliases))
        except SpinalquantError:  # an ambiguous name: analyze() reports it
            continue
    return sorted(found)


_MARKER_NAMES = {"gfp": "GFP", "gfap": "GFAP", "chat": "ChAT", "synapse": "synaptic-marker"}


def channel_notes(stack: Any, cfg: Config, section: str) -> list[str]:
    """A note when a cord marker was not found but some channels matched nothing.

    A channel named after its dye only (``"Alexa Fluor 488"`` for GFP) is not
    recognised, and its analysis would silently be left out; the note names the
    unrecognised channels and the config line that maps one.

    Examples
    --------
    >>> import numpy as np
    >>> from spinalquant.stack import Stack
    >>> st = Stack(np.zeros((2, 1, 4, 4), np.uint16), ("Alexa Fluor 488", "ChAT"), (None, 1, 1))
    >>> channel_notes(st, Config(), "cord")[0][:60]
    "channel(s) ['Alexa Fluor 488'] match no marker and were not "
    """
    from .pipeline import CORD_MARKERS, MUSCLE_MARKERS, has_marker

    if section != "cord" or stack.rgb:
        return []
    used: set[int] = set()
    missing: list[str] = []
    for marker in (*CORD_MARKERS, *MUSCLE_MARKERS, "nuclei"):
        key = cfg.marker(marker)
        try:
            if has_marker(stack, cfg, marker):
                used.add(key if isinstance(key, int) else stack.channel_index(key, cfg.aliases))
            elif marker in CORD_MARKERS:
                missing.append(marker)
        except SpinalquantError:  # an ambiguous name: analyze() reports it
            return []
    unused = [n for i, n in enumerate(stack.channel_names) if i not in used]
    if not (unused and missing):
        return []
    what = ", ".join(_MARKER_NAMES.get(m, m) for m in missing)
    return [
        f"channel(s) {unused} match no marker and were not analysed, and no {what} channel "
        f"was found, so those results are empty; if one of them is that marker, map it in "
        f"the config, e.g. [channels] {missing[0]} = \"{unused[0]}\""
    ]


def _picture_files(out: Path, image: str) -> tuple[Path, Path]:
    """An image's label file and QC picture under ``out``."""
    stem = output_stem(image)
    return out / "labels" / f"{stem}.ome.tif", out / "qc" / f"{stem}.png"


def _scene_entry(item: InputImage) -> dict[str, int]:
    """``{"scene": i}`` for a scene of a multi-scene file (provenance), else nothing."""
    return {"scene": item.scene} if item.n_scenes > 1 or item.scene else {}


def _fail(item: InputImage, out: Path, cfg: Config, digest: str, msg: str,
          timings: dict[str, float]) -> Outcome:
    # the loader names the file by the path it was given (relative to wherever the
    # run started, or absolute): the results name it by its image name, as elsewhere
    # (the analysis names a scene's file by its file name: the scene is named instead)
    prefixes = [f"{item.path}: ", f"{item.path.resolve()}: "]
    if item.n_scenes > 1:
        prefixes.append(f"{item.path.name}: ")
    for prefix in prefixes:
        if msg.startswith(prefix):
            msg = f"{item.image}: {msg[len(prefix):]}"
            break
    row = {"image": item.image, "status": "failed", "error": msg}
    try:
        # the label image and QC overlay of an earlier analysis would show objects
        # that the tables (now a failure row) no longer have
        for f in _picture_files(out, item.image):
            f.unlink(missing_ok=True)
        write_part(out, item.image, row, {}, {
            "status": "failed", "input_hash": digest, "params_hash": params_hash(cfg),
            "error": msg, "timings": timings, "version": __version__, "format": PART_FORMAT,
            **_scene_entry(item),
        })
    except OSError:
        pass  # the output folder itself is broken; the runner reports the outcome
    return Outcome(item.image, "failed", error=msg, input_hash=digest, timings=timings)


def write_part(out_dir: str | Path, image: str, row: dict[str, Any],
               tables: Mapping[str, pd.DataFrame], done: dict[str, Any]) -> Path:
    """Write one image's results as a complete part, atomically.

    The part (``OUT/.parts/<key>/``: ``summary.json``, one CSV per object
    table and ``done.json`` last) is assembled in a temporary folder and
    renamed into place, so a reader sees the old part or the new one, never
    half of either. :func:`merge_results` builds the run's tables from parts.

    Parameters
    ----------
    out_dir : path
        The results folder.
    image : str
        The image's name as in ``summary.csv`` (its path relative to the input folder).
    row : dict
        Its ``summary.csv`` row.
    tables : mapping of str to DataFrame
        Its object tables by kind (``gfp_cells``, ``fibers``, ...).
    done : dict
        Provenance written to ``done.json`` (status, hashes, timings...).

    Returns
    -------
    Path
        The part's folder.
    """
    out = Path(out_dir)
    parts = out / ".parts"
    parts.mkdir(parents=True, exist_ok=True)
    final = parts / part_key(image)
    tmp = Path(tempfile.mkdtemp(dir=parts, prefix=".tmp-"))
    try:
        (tmp / "summary.json").write_text(json.dumps(row, default=json_default), encoding="utf-8")
        for name, df in tables.items():
            (tmp / f"{name}.csv").write_text(_csv_text(df), encoding="utf-8")
        (tmp / "done.json").write_text(json.dumps({"image": image, **done}, default=json_default),
                                       encoding="utf-8")
        if final.exists():
            trash = parts / f".old-{final.name}-{os.getpid()}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def json_default(o: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars as Python numbers, ``pd.NA`` as null, else str.

    Parameters
    ----------
    o : object
        A value ``json`` cannot encode by itself.

    Returns
    -------
    object
        Something it can.

    Examples
    --------
    >>> import numpy as np
    >>> json.dumps({"n": np.int64(3), "x": pd.NA}, default=json_default)
    '{"n": 3, "x": null}'
    """
    if hasattr(o, "item"):
        return o.item()
    if o is pd.NA:
        return None
    return str(o)


# ------------------------------------------------------------------ merging
def merge_results(out_dir: str | Path, images: Sequence[str]) -> pd.DataFrame:
    """Rebuild ``summary.csv`` and ``objects/*.csv`` from the per-image parts.

    Rows follow the order of ``images``; images without a part are left out.
    Every file is replaced atomically. Returns the summary table.
    """
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    tables: dict[str, list[pd.DataFrame]] = {k: [] for k in (*OBJECT_TABLES, *EXTRA_TABLES)}
    for image in images:
        part = out / ".parts" / part_key(image)
        try:
            row = json.loads((part / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rows.append(row)
        if row.get("status") != "ok":
            continue
        for name in tables:
            f = part / f"{name}.csv"
            if f.is_file() and f.stat().st_size > 0:
                df = pd.read_csv(f)
                df.insert(0, "image", image)
                tables[name].append(df)
    summary = pd.DataFrame(rows)
    for c in SUMMARY_COLUMNS:
        if c not in summary.columns:
            summary[c] = pd.Series(dtype="object")
    summary = summary[list(SUMMARY_COLUMNS) + [c for c in summary.columns if c not in SUMMARY_COLUMNS]]
    for c in summary.columns:
        if c.startswith("n_"):  # counts stay integers (empty where they do not apply)
            summary[c] = pd.to_numeric(summary[c], errors="coerce").round().astype("Int64")
    atomic_write_text(out / "summary.csv", _csv_text(summary))
    for name, frames in tables.items():
        frames = [f for f in frames if len(f)]
        if frames:
            df = pd.concat(frames, ignore_index=True)
        elif name in TABLE_COLUMNS:
            df = empty_table(name)
            df.insert(0, "image", pd.Series(dtype="object"))
        else:
            if not (out / "objects" / f"{name}.csv").exists():
                continue
            df = pd.DataFrame({"image": pd.Series(dtype="object")})
        atomic_write_text(out / "objects" / f"{name}.csv", _csv_text(df))
        if _has_pyarrow():
            buf = df.to_parquet(index=False)
            atomic_write_bytes(out / "objects" / f"{name}.parquet", buf)
    if _has_pyarrow():
        atomic_write_bytes(out / "summary.parquet", summary.to_parquet(index=False))
    return summary


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------- runner
@dataclass
class RunReport:
    """What a run did, for the CLI's closing summary."""

    out_dir: Path
    outcomes: list[Outcome]
    elapsed_s: float
    #: images analysed by earlier runs into the same folder, not among this run's
    #: inputs, whose results stay in the tables
    earlier: list[str] = field(default_factory=list)

    @property
    def n_ok(self) -> int:
        return sum(o.status in ("ok", "skipped") for o in self.outcomes)

    @property
    def n_failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)

    @property
    def n_skipped(self) -> int:
        return sum(o.status == "skipped" for o in self.outcomes)


def check_output_dir(out_dir: Path) -> None:
    """Create the output folder and prove it is writable (clear error if not).

    A folder that spinalquant did not write (no ``run.json`` nor ``.parts``) but
    that already holds a ``summary.csv``, ``objects/``, ``labels/``, ``qc/`` or
    ``report.html`` is refused: the run would overwrite someone's files.
    """
    if out_dir.is_dir() and not _is_results_folder(out_dir):
        clash = [n for n in ("summary.csv", "objects", "labels", "qc", "report.html")
                 if (out_dir / n).exists()]
        if clash:
            raise SpinalquantError(
                f"the output folder {out_dir} already holds {', '.join(clash)} that "
                "spinalquant did not write, and the run would overwrite them; choose "
                "another --out folder"
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ".parts").mkdir(exist_ok=True)  # marks a results folder from the start
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise SpinalquantError(
            f"cannot write to the output folder {out_dir}: {exc.strerror or exc}. "
            "Choose another --out folder or fix its permissions."
        ) from exc


def run_batch(
    items: Sequence[InputImage],
    out_dir: str | Path,
    config: Config | None = None,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    on_result: Callable[[Outcome, int, int], None] | None = None,
    config_source: str | None = None,
) -> RunReport:
    """Analyse ``items`` and write results into ``out_dir``.

    Parameters
    ----------
    items : sequence of InputImage
        From :func:`discover_inputs`.
    out_dir : path
        Results folder (created; must be writable).
    config : Config, optional
    workers : int
        Images analysed in parallel on this machine. 1 runs in this process;
        more start a local Dask cluster of processes.
    scheduler : str, optional
        Address of an existing ``dask.distributed`` scheduler; the same
        tasks are sent there instead.
    force : bool
        Redo images even when their results are complete and unchanged.
    on_result : callable, optional
        Called as ``on_result(outcome, n_done, n_total)`` after each image.
    """
    cfg = config or Config()
    check_unique_names(items)
    out = Path(out_dir)
    check_output_dir(out)
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    names = [i.image for i in items]
    outcomes: dict[str, Outcome] = {}
    last_merge, merge_every = 0.0, 15.0

    def done(o: Outcome) -> None:
        nonlocal last_merge, merge_every
        outcomes[o.image] = o
        now = time.perf_counter()
        if now - last_merge > merge_every:
            # parts are the truth; the merged tables are refreshed for people watching.
            # Merging reads every part, so on big runs it is spaced out to stay under
            # ~5 % of this process's time (it shares the cores with the workers).
            merge_results(out, names)
            last_merge = time.perf_counter()
            merge_every = max(15.0, 20.0 * (last_merge - now))
        if on_result:
            on_result(o, len(outcomes), len(items))

    paths = {i.image: str(i.path.resolve()) for i in items}
    scenes = {i.image: _scene_entry(i).get("scene") for i in items}
    earlier, superseded = earlier_images(
        out, names, set(paths.values()),
        scenes={(paths[image], scene) for image, scene in scenes.items() if scene is not None})
    check_no_clash_with_earlier(items, earlier)
    names = [*earlier, *names]
    for o in _execute(items, cfg, out, workers=workers, scheduler=scheduler, force=force):
        o.path = paths.get(o.image, "")
        o.scene = scenes.get(o.image)
        done(o)
    merge_results(out, names)
    ordered = [outcomes[n] for n in names if n in outcomes]
    elapsed = time.perf_counter() - t0
    _write_run_json(out, cfg, ordered, started, elapsed, workers, scheduler, config_source,
                    drop=superseded)
    remove_superseded(out, superseded, names)
    if cfg.output.report:
        from .report import write_report

        try:
            write_report(out)
        except Exception as exc:  # the report is a convenience; results stay
            print(f"warning: report.html could not be written: {exc}", file=sys.stderr)
    return RunReport(out, ordered, elapsed, earlier)


def earlier_images(out_dir: str | Path, names: Sequence[str], paths: set[str], *,
                   scenes: set[tuple[str, int]] | None = None) -> tuple[list[str], list[str]]:
    """Images of earlier runs into ``out_dir`` that this run does not analyse again.

    An earlier run's results stay in the merged tables (``summary.csv`` and
    ``objects/``) and in ``run.json``, ``labels/`` and ``qc/``: running other
    images into the same folder adds to it. That holds too when an earlier
    image's file cannot be found now (deleted, or on a share that is not
    mounted): results are never dropped because an input is out of reach.
    Superseded are earlier images whose file is among this run's inputs under
    another name (the input folder was given differently): they are not listed
    twice. Nothing is changed on disk here; :func:`remove_superseded` clears
    their parts and pictures once the run has finished.

    Parameters
    ----------
    out_dir : path
        The results folder.
    names : sequence of str
        This run's image names.
    paths : set of str
        This run's resolved input paths.
    scenes : set of (str, int), optional
        This run's scenes of multi-scene files, as (resolved path, scene). An
        earlier scene of such a file is superseded only by the same scene (a
        run of some scenes keeps the others' results); without ``scenes``,
        by any input of its file.

    Returns
    -------
    (kept, superseded) : (list of str, list of str)
        Earlier image names kept in the tables, in their ``run.json`` order, and
        those superseded.

    Examples
    --------
    >>> import tempfile
    >>> earlier_images(tempfile.mkdtemp(), ["a.tif"], set())
    ([], [])
    """
    out = Path(out_dir)
    try:
        previous = json.loads((out / "run.json").read_text(encoding="utf-8")).get("images", {})
    except (OSError, ValueError, AttributeError):
        return [], []
    current = set(names)
    kept: list[str] = []
    superseded: list[str] = []
    for image, entry in previous.items():
        if image in current or not (out / ".parts" / part_key(image) / "summary.json").is_file():
            continue
        path = entry.get("path") if isinstance(entry, dict) else None
        scene = entry.get("scene") if isinstance(entry, dict) else None
        if path and path in paths and (scenes is None or scene is None or (path, scene) in scenes):
            superseded.append(image)
        else:
            kept.append(image)
    return kept, superseded


def remove_superseded(out_dir: str | Path, superseded: Sequence[str], names: Sequence[str]) -> None:
    """Delete the parts, label images and QC overlays of superseded earlier images.

    Called after a run has finished, so a run that is stopped halfway leaves
    them, and the earlier ``run.json`` that lists them, as they were. Pictures
    whose file names an image of this run (``names``) has taken over are kept.
    """
    out = Path(out_dir)
    stems = {output_stem(n) for n in names}
    for image in superseded:
        shutil.rmtree(out / ".parts" / part_key(image), ignore_errors=True)
        if output_stem(image) not in stems:
            for f in _picture_files(out, image):
                f.unlink(missing_ok=True)


def check_no_clash_with_earlier(items: Sequence[InputImage], earlier: Sequence[str]) -> None:
    """Refuse images whose pictures would overwrite those of earlier images kept in the folder.

    Raises
    ------
    ConfigError
        When an image of this run and an earlier one with another name share an
        output stem (``s.tif`` now, ``s.ome.tif`` before: ``labels/s.ome.tif``
        and ``qc/s.png``).

    Examples
    --------
    >>> check_no_clash_with_earlier([InputImage(Path("s.tif"), "s.tif")], ["t.tif"])
    """
    stems = {output_stem(e): e for e in earlier}
    for it in items:
        other = stems.get(output_stem(it.image))
        if other is not None and other != it.image:
            stem = output_stem(it.image)
            raise ConfigError(
                f"{it.image!r} would write the same labels/{stem}.ome.tif and qc/{stem}.png as "
                f"{other!r}, whose results from an earlier run are in this folder; rename one, "
                "or write this run to another --out folder"
            )


def _execute(items: Sequence[InputImage], cfg: Config, out: Path, *, workers: int,
             scheduler: str | None, force: bool) -> Iterable[Outcome]:
    hashes: dict[Path, str | None] = {}

    def known(item: InputImage) -> str | None:
        # the scenes of one file share its hash: the file is read once, not once per scene
        if item.n_scenes <= 1:
            return None
        if item.path not in hashes:
            try:
                hashes[item.path] = input_hash(item.path)
            except OSError:
                hashes[item.path] = None  # process_image reports it
        return hashes[item.path]

    if scheduler is None and workers <= 1:
        for item in items:
            yield process_image(item, cfg, out, force=force, known_hash=known(item))
        return
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        # Dask's nannies set MALLOC_TRIM_THRESHOLD_ in every worker to hand memory
        # back to the OS eagerly; with glibc that also freezes the mmap threshold, so
        # each large numpy temporary is a fresh mmap and page-faulted in: measured
        # 1.2-1.4x slower image analysis. Our workers run one image at a time and
        # free it, so they keep glibc's adaptive default (single-thread BLAS/OpenMP
        # settings are kept).
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=40)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = {
            client.submit(process_image, item, cfg, str(out), force=force,
                          known_hash=known(item), pure=False): item
            for item in items
        }
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # a worker died (e.g. killed by the OOM killer)
                yield Outcome(item.image, "failed",
                              error=f"the worker analysing it crashed ({type(exc).__name__}: {exc})")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _write_run_json(out: Path, cfg: Config, outcomes: Sequence[Outcome], started: str,
                    elapsed: float, workers: int, scheduler: str | None,
                    config_source: str | None, drop: Sequence[str] = ()) -> None:
    import numpy
    import scipy
    import skimage

    previous: dict[str, Any] = {}
    try:
        previous = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    images = {k: v for k, v in dict(previous.get("images", {})).items() if k not in set(drop)}
    for o in outcomes:
        entry = {"status": "ok" if o.status == "skipped" else o.status, "error": o.error,
                 "path": o.path, **({"scene": o.scene} if o.scene is not None else {}),
                 "input_hash": o.input_hash, "timings": o.timings, "section": o.section,
                 "skipped_unchanged": o.status == "skipped"}
        if o.notes:
            entry["notes"] = list(o.notes)
        if o.tiling:
            entry["tiling"] = o.tiling
        old = images.get(o.image, {})
        if "review" in old:
            entry["review"] = old["review"]
        images[o.image] = entry
    doc = {
        "schema_version": SCHEMA_VERSION,
        "spinalquant_version": __version__,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(elapsed, 3),
        "workers": workers,
        "scheduler": scheduler,
        "config_file": config_source,
        "parameters": cfg.to_dict(),
        "params_hash": params_hash(cfg),
        "images": images,
        "platform": {
            "python": sys.version.split()[0],
            "system": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "packages": {"numpy": numpy.__version__, "scipy": scipy.__version__,
                         "scikit-image": skimage.__version__, "pandas": pd.__version__},
        },
    }
    atomic_write_text(out / "run.json", json.dumps(doc, indent=2, default=json_default))
