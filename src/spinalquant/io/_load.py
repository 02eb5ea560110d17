"""``load``: any supported image file -> :class:`~spinalquant.stack.Stack`.

Readers
-------
* ``.tif/.tiff/.ome.tif/.lsm`` — tifffile directly (OME-XML, ImageJ hyperstack,
  LSM and plain TIFF). Fast and independent of bioio's plugin choice.
* ``.czi/.lif/.nd2`` — bioio with the explicit reader plugins
  (``bioio_czi.Reader``, ``bioio_lif.Reader``, ``bioio_nd2.Reader``). The
  physical sizes the reader reports are cross-checked against the vendor
  metadata read here independently (CZI ``Scaling/Items/Distance``, LIF
  ``DimensionDescription``, ND2 ``axesCalibrated``); on disagreement the vendor
  value wins and ``metadata["notes"]`` says so.
* ``.png/.jpg/.jpeg`` — Pillow.

Axis policy
-----------
Data always comes out as ``(C, Z, Y, X)``. A time axis with more than one
point is reduced to its first time point (``metadata["n_timepoints"]``,
``metadata["time_index"] == 0`` and a line in ``metadata["notes"]``); one
scene of a multi-scene file (CZI/LIF/ND2 scenes, the images of a multi-image
OME-TIFF) is read: ``scene=0`` unless asked, with a note when there are more
(``metadata["n_scenes"]`` / ``metadata["n_series"]``). A CZI
mosaic is read stitched (bioio's ``mosaic_dask_data``). Any other axis with
more than one element (e.g. a lambda sweep, a plain multi-page TIFF whose pages
could be Z or C) is refused with a :class:`LoadError` rather than guessed.

A single plane has ``z = None`` whatever the file says (readers default it
to 1.0). Plain TIFF/PNG resolution tags count as a calibration only when
they are in centimetre or inch *and* give a pixel smaller than 20 µm: 72/96/300
dpi are screen/print defaults, not microscope calibrations.

NaN in a floating-point image raises :class:`ImageContentError` from
``load`` (eager data) or from :func:`check_content` (dask data).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import ConfigError, ImageContentError, LoadError, PixelSizeError
from ..stack import Stack
from ._tiff import ome_channel_names, ome_pixel_info, unit_factor
from ._write import INFO_CHANNELS_KEY

#: File endings ``load`` accepts (matched case-insensitively, longest first).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".ome.tiff",
    ".ome.tif",
    ".tiff",
    ".tif",
    ".lsm",
    ".czi",
    ".lif",
    ".nd2",
    ".png",
    ".jpeg",
    ".jpg",
)

_TIFF_EXT = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".lsm")
_BIOIO_EXT = (".czi", ".lif", ".nd2")
_PIL_EXT = (".png", ".jpeg", ".jpg")

#: A resolution tag finer than this (µm per pixel) is taken as a microscope
#: calibration; coarser ones are screen/print defaults (72 dpi = 353 µm).
_MAX_PLAUSIBLE_TAG_UM = 20.0

PixelSizeArg = float | Sequence[float | None] | None


# --------------------------------------------------------------------- names
def _extension(path: str | os.PathLike[str]) -> str | None:
    name = Path(path).name.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def is_supported(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` ends with one of :data:`SUPPORTED_EXTENSIONS`.

    Examples
    --------
    >>> is_supported("L4_s1.OME.TIF"), is_supported("notes.txt")
    (True, False)
    """
    return _extension(path) is not None


def image_stem(path: str | os.PathLike[str]) -> str:
    """File name without its whole image extension.

    Examples
    --------
    >>> image_stem("data/L4_s1.ome.tif"), image_stem("a.b.czi"), image_stem("x.txt")
    ('L4_s1', 'a.b', 'x')
    """
    name = Path(path).name
    ext = _extension(path)
    if ext is not None:
        return name[: -len(ext)]
    return Path(name).stem


# ----------------------------------------------------------- axis handling
def _to_czyx(data: Any, axes: str, path: Path, meta: dict[str, Any]) -> Any:
    """Rearrange ``data`` with tifffile/bioio ``axes`` letters into (C, Z, Y, X)."""
    axes = axes.upper()
    if len(axes) != data.ndim:
        raise LoadError(f"{path}: axes {axes!r} do not match data shape {data.shape}")
    if "Y" not in axes or "X" not in axes:
        raise LoadError(
            f"{path}: image has axes {axes!r} without both Y and X; "
            "resave it as an OME-TIFF or ImageJ hyperstack with YX planes"
        )
    notes: list[str] = meta.setdefault("notes", [])
    index: list[Any] = []
    kept = ""
    for ax, n in zip(axes, data.shape, strict=True):
        if ax == "T":
            meta["n_timepoints"] = int(n)
            meta["time_index"] = 0
            if n > 1:
                notes.append(f"time series with {n} time points: only T=0 was read")
            index.append(0)
        elif ax in "CZYXS":
            if ax in kept:
                raise LoadError(f"{path}: axis {ax!r} appears twice in {axes!r}")
            kept += ax
            index.append(slice(None))
        elif n == 1:
            index.append(0)
        else:
            raise LoadError(
                f"{path}: unsupported axis {ax!r} of length {n} (axes {axes!r}, shape "
                f"{tuple(data.shape)}); spinalquant reads channels (C), z-slices (Z), "
                "time (first point) and YX planes. Pass the axes explicitly "
                "(load(..., axes='ZYX'), config `axes`) or resave the image as an "
                "OME-TIFF / ImageJ hyperstack."
            )
    data = data[tuple(index)]
    if "S" in kept:
        n_s = data.shape[kept.index("S")]
        n_c = data.shape[kept.index("C")] if "C" in kept else 1
        if n_c > 1 and n_s > 1:
            raise LoadError(
                f"{path}: image has both channels and samples per pixel "
                f"(axes {axes!r}); this layout is not supported"
            )
        drop = "S" if n_s == 1 and "C" in kept else ("C" if "C" in kept else "")
        if drop:
            data = data.squeeze(axis=kept.index(drop))
            kept = kept.replace(drop, "")
        kept = kept.replace("S", "C")
    for ax in "CZ":
        if ax not in kept:
            data = data[np.newaxis]
            kept = ax + kept
    order = [kept.index(ax) for ax in "CZYX"]
    return data.transpose(order)


# ------------------------------------------------------------ pixel sizes
def _tag_pixel_size_um(page: tifffile.TiffPage) -> tuple[float | None, float | None]:
    """(y, x) µm from TIFF resolution tags in cm/inch, if plausibly a calibration."""
    unit = page.tags.valueof(296, default=2)
    factor = {2: 25400.0, 3: 10000.0}.get(int(unit))
    if factor is None or "XResolution" not in page.tags:
        return None, None
    try:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value if "YResolution" in page.tags else xres
        x = factor * xres[1] / xres[0]
        y = factor * yres[1] / yres[0]
    except (ZeroDivisionError, TypeError, IndexError):
        return None, None
    if not (0 < x < _MAX_PLAUSIBLE_TAG_UM and 0 < y < _MAX_PLAUSIBLE_TAG_UM):
        return None, None
    return y, x


#: ImageJ units that are print/screen units: a resolution in them is a calibration
#: only when it is as fine as a microscope's (ImageJ keeps a JPEG's 72 dpi as inch).
_PRINT_UNITS = ("inch", "in", "cm")


def _imagej_pixel_size(
    page: tifffile.TiffPage, ij: dict[str, Any], path: Path, notes: list[str] | None = None
) -> tuple[float | None, float | None, float | None, str | None]:
    """(z, y, x) µm from ImageJ unit/resolution/spacing; also the raw unit.

    In ``inch`` or ``cm`` a pixel coarser than 20 µm (72, 96 or 300 dpi: what
    ImageJ keeps from a JPEG or a screenshot) is not a calibration: all three
    sizes are then None and ``notes`` says why.
    """
    unit = ij.get("unit")
    factor = unit_factor(unit)
    if factor is None:
        return None, None, None, unit
    y = x = None
    if "XResolution" in page.tags:
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value if "YResolution" in page.tags else xres
        if xres[0] > 0 and yres[0] > 0:
            x = factor * xres[1] / xres[0]
            y = factor * yres[1] / yres[0]
    z = None
    spacing = ij.get("spacing")
    if spacing is not None:
        try:
            z = float(spacing) * factor
        except (TypeError, ValueError):
            z = None
    if str(unit).strip().lower() in _PRINT_UNITS and x is not None and y is not None and not (
        x < _MAX_PLAUSIBLE_TAG_UM and y < _MAX_PLAUSIBLE_TAG_UM
    ):
        if notes is not None:
            notes.append(
                f"ImageJ calibration of {25400.0 / x:.0f} pixels per inch ({x:.4g} µm per "
                "pixel) is a screen/print resolution, not a microscope's: ignored"
            )
        return None, None, None, unit
    return z, y, x, unit


def _imagej_channel_names(ij: dict[str, Any], n_c: int, n_z: int) -> list[str] | None:
    info = ij.get("Info")
    if isinstance(info, str):
        for line in info.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == INFO_CHANNELS_KEY:
                import json

                try:
                    names = json.loads(value.strip())
                except ValueError:
                    break
                if isinstance(names, list) and len(names) == n_c:
                    return [str(n) for n in names]
    labels = ij.get("Labels")
    if isinstance(labels, str):  # tifffile gives a one-plane image's label as a string
        labels = [labels]
    # one label per plane, channels fastest (ImageJ's CZT order); a time series
    # has n_c * n_z labels for each of its time points
    if not isinstance(labels, list) or not labels or len(labels) % (n_c * n_z):
        return None
    # the slice labels name the channels only when every plane of a channel carries
    # the same one (otherwise they are per-plane labels such as z positions)
    per_channel = [labels[c] for c in range(n_c)]
    consistent = all(label == per_channel[i % n_c] for i, label in enumerate(labels))
    if consistent and len(set(per_channel)) == n_c and all(str(n).strip() for n in per_channel):
        return [str(n) for n in per_channel]
    return None


#: Bytes per value of each TIFF field type (TIFF 6.0 and BigTIFF).
_TIFF_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4,
                   12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


def _tiff_structure_problem(path: Path, *, max_ifds: int = 1_000_000) -> str | None:
    """Why the TIFF's directory chain points past the end of the file, or None.

    Walks every IFD (image file directory) and checks that it, and each tag value
    stored outside it, lies inside the file. tifffile silently drops a tag or a page
    that does not (it only logs), so a truncated OME-TIFF — whose OME-XML is often
    written at the end of the file — would otherwise open as a one-page plain TIFF
    without channel names or calibration.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return None  # not a TIFF at all: tifffile gives the precise error
        bo = "<" if head[:2] == b"II" else ">"
        version = int.from_bytes(head[2:4], "little" if bo == "<" else "big")
        big = version == 43
        if version not in (42, 43) or (big and len(head) < 16):
            return None

        def uint(raw: bytes) -> int:
            return int.from_bytes(raw, "little" if bo == "<" else "big")

        osz, nsz, esz = (8, 8, 20) if big else (4, 2, 12)
        offset = uint(head[8:16]) if big else uint(head[4:8])
        seen: set[int] = set()
        while offset and len(seen) < max_ifds:
            if offset in seen:
                return "its directory chain loops back on itself"
            seen.add(offset)
            if offset + nsz > size:
                return f"a page directory starts at byte {offset}, beyond the end of the file"
            fh.seek(offset)
            n = uint(fh.read(nsz))
            if offset + nsz + n * esz + osz > size:
                return f"the page directory at byte {offset} is cut off"
            block = fh.read(n * esz + osz)
            if len(block) < n * esz + osz:
                return f"the page directory at byte {offset} is cut off"
            for i in range(n):
                e = block[i * esz:(i + 1) * esz]
                count = uint(e[4:4 + osz])
                nbytes = _TIFF_TYPE_SIZE.get(uint(e[2:4]), 1) * count
                if nbytes > osz and uint(e[4 + osz:4 + 2 * osz]) + nbytes > size:
                    return f"the value of TIFF tag {uint(e[0:2])} lies beyond the end of the file"
            offset = uint(block[n * esz:n * esz + osz])
    return None


def _check_complete(tif: tifffile.TiffFile, series: Any, path: Path) -> None:
    """Raise LoadError when the TIFF is visibly truncated or its metadata broken."""
    size = path.stat().st_size
    declared = "ImageJ" if tif.is_imagej else ("OME" if tif.is_ome else None)
    expected = {"ImageJ": "imagej", "OME": "ome"}.get(declared or "")
    if expected is not None and series.kind.lower() != expected:
        raise LoadError(
            f"{path}: the {declared} metadata does not match the image data in the "
            "file (the file is probably truncated or corrupt); export it again"
        )
    pages = list(series.pages)
    if tif.is_ome and any(page is None for page in pages):
        missing = [f for f in _ome_file_names(tif.ome_metadata) if not (path.parent / f).is_file()]
        raise LoadError(
            f"{path}: {sum(page is None for page in pages)} of the {len(pages)} planes of this "
            "multi-file OME-TIFF lie in files that are missing"
            + (f" ({', '.join(missing)})" if missing else "")
            + "; copy all the files of the dataset into the same folder"
        )
    own = [page for page in pages if page is not None and page.parent is tif]
    offset = getattr(series, "dataoffset", None)
    if offset is not None and len(own) == len(pages) and offset + series.nbytes > size:
        raise LoadError(
            f"{path}: the file is truncated ({size} bytes, the pixel data needs "
            f"{offset + series.nbytes}); copy or export it again"
        )
    for page in pages:
        if page is None or not hasattr(page, "dataoffsets"):
            continue
        # a multi-file OME-TIFF's planes may lie in the other files of the dataset
        fh = page.parent.filehandle
        where, end = (path, size) if page.parent is tif else (Path(fh.path), fh.size)
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False)]
        if ends and max(ends) > end:
            raise LoadError(
                f"{where}: the file is truncated (pixel data of a plane lies beyond its "
                f"end at {end} bytes); copy or export it again"
            )


def _ome_file_names(xml: str | None) -> list[str]:
    """The files a multi-file OME-TIFF's ``TiffData/UUID`` elements name, in order."""
    if not xml:
        return []
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    names: list[str] = []
    for el in root.iter():
        name = el.get("FileName") if el.tag.rsplit("}", 1)[-1] == "UUID" else None
        if name and name not in names:
            names.append(name)
    return names


def ome_dataset_first_file(path: str | os.PathLike[str]) -> Path | None:
    """The first file of the multi-file OME-TIFF dataset that ``path`` is a later part of.

    Micro-Manager and Bio-Formats split large acquisitions over several
    ``.ome.tif`` files; opening any of them reads the whole dataset. Returns the
    dataset's first file when it exists beside ``path`` and is another file,
    else None (a single-file image, a first file, or not an OME-TIFF).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib, tifffile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "one.ome.tif"
    >>> tifffile.imwrite(f, np.zeros((8, 8), np.uint8), ome=True)
    >>> ome_dataset_first_file(f) is None
    True
    """
    p = Path(path)
    xml = _first_description(p)
    if "<OME" not in (xml or "")[:4096]:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "BinaryOnly":  # the metadata lie in another file
            master = p.parent / (el.get("MetadataFile") or "")
            if master.is_file() and master.name.lower().endswith((".tif", ".tiff")) and master != p:
                return master
            names = _ome_file_names(_read_text(master)) if master.is_file() else []
            break
    else:
        names = _ome_file_names(xml)
    if len(names) > 1 and names[0] != p.name and (p.parent / names[0]).is_file():
        return p.parent / names[0]
    return None


def ome_dataset_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of the multi-file OME-TIFF dataset whose first file is ``path``.

    ``[path]`` for a single-file image (or when the metadata cannot be read);
    files named by the metadata but absent are left out.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib, tifffile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "one.ome.tif"
    >>> tifffile.imwrite(f, np.zeros((8, 8), np.uint8), ome=True)
    >>> [p.name for p in ome_dataset_files(f)]
    ['one.ome.tif']
    """
    p = Path(path)
    xml = _first_description(p)
    others = [p.parent / n for n in _ome_file_names(xml if "<OME" in (xml or "")[:4096] else None)
              if n != p.name]
    return [p, *(f for f in others if f.is_file())]


def _first_description(path: Path) -> str | None:
    """The first page's ImageDescription of a TIFF, or None when it cannot be read."""
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages.first.description if tif.pages else None
    except Exception:  # tifffile raises many types on a corrupt file; loading reports it
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _series_note(tif: tifffile.TiffFile, index: int, path: Path) -> str | None:
    """The note for a TIFF holding more than one image series, or None.

    Series at most half as large in Y and X as the one read (a thumbnail, or a
    resolution level stored as its own image by older pyramid writers) are not
    other images.
    """
    n = len(tif.series)
    if n <= 1:
        return None
    ref = _series_yx(tif.series[index])
    others = sum(not _is_reduced(_series_yx(s), ref)
                 for i, s in enumerate(tif.series) if i != index)
    if not others:
        return None
    names = [getattr(s, "name", "") or "" for s in tif.series]
    what = "images" if tif.is_ome else "image series"
    label = f" {names[index]!r}" if names[index] else ""
    return (
        f"{n} {what} in the file: only number {index}{label} "
        f"(shape {tuple(int(v) for v in tif.series[index].shape)}) was read, the others "
        "were not analysed; read another with load(..., scene=i) (`spinalquant run` "
        "analyses every image)"
    )


def _is_reduced(yx: tuple[int, int], ref: tuple[int, int]) -> bool:
    """Whether an image of ``yx`` pixels is at most half of ``ref`` in Y and X."""
    return 2 * yx[0] <= ref[0] and 2 * yx[1] <= ref[1]


def _series_yx(series: Any) -> tuple[int, int]:
    yx = series.shape[-3:-1] if series.axes.endswith("S") else series.shape[-2:]
    return int(yx[0]), int(yx[1])


def image_scenes(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """The scenes of a file that are images to analyse, as ``(index, name)`` pairs.

    CZI/LIF/ND2 scenes and the image series of a TIFF (the images of a
    multi-image OME-TIFF), numbered as ``load(path, scene=index)`` reads them;
    ``name`` is the scene's name in the file ("" when it has none). A TIFF
    series at most half as large in Y and X as the file's largest one (a
    thumbnail, or a resolution level stored as its own image) is not a scene.
    A file that cannot be opened gives ``[(0, "")]``: :func:`load` then says
    what is wrong with it.

    Parameters
    ----------
    path : path
        An image file spinalquant reads.

    Returns
    -------
    list of (int, str)
        At least one pair.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib, tifffile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "two.ome.tif"
    >>> with tifffile.TiffWriter(f, ome=True) as tw:
    ...     for name in ("left", "right"):
    ...         tw.write(np.zeros((8, 8), np.uint8), metadata={"Name": name})
    >>> image_scenes(f)
    [(0, 'left'), (1, 'right')]
    """
    p = Path(path)
    ext = _extension(p)
    try:
        if ext in _TIFF_EXT:
            with tifffile.TiffFile(p) as tif:
                series = list(tif.series)
                if len(series) <= 1:
                    return [(0, "")]
                sizes = [_series_yx(s) for s in series]
                largest = max(sizes, key=lambda yx: yx[0] * yx[1])
                return [(i, str(getattr(s, "name", "") or "")) for i, (s, yx)
                        in enumerate(zip(series, sizes, strict=True))
                        if not _is_reduced(yx, largest)] or [(0, "")]
        if ext in _BIOIO_EXT:
            Reader = _reader_class(ext, p)
            scenes = tuple(Reader(p).scenes)
            return [(i, str(name)) for i, name in enumerate(scenes)] or [(0, "")]
    except Exception:  # a file that cannot be read fails when it is loaded, with its reason
        return [(0, "")]
    return [(0, "")]


def _scene_index(scene: int, n: int, path: Path, what: str) -> int:
    """Validate a scene/series number against the ``n`` the file holds."""
    if isinstance(scene, bool) or not isinstance(scene, int | np.integer):
        raise ConfigError(f"{path}: scene must be an integer index, got {scene!r}")
    if not 0 <= int(scene) < n:
        raise LoadError(
            f"{path}: scene={scene} asked for, but the file holds {n} {what} "
            f"(numbered 0 to {n - 1})"
        )
    return int(scene)


def _read_tiff(path: Path, threshold: int, scene: int = 0) -> dict[str, Any]:
    # LSM files over 4 GB store wrapped 32-bit offsets that tifffile repairs: not walked
    problem = None if path.suffix.lower() == ".lsm" else _tiff_structure_problem(path)
    if problem is not None:
        raise LoadError(
            f"{path}: the file is truncated or corrupt ({problem}, "
            f"{path.stat().st_size} bytes); copy or export it again"
        )
    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise LoadError(
            f"{path}: not a readable TIFF file ({exc}); check that the file is a "
            "complete image export (it may be truncated, or another file type renamed .tif)"
        ) from exc
    with tif:
        if not tif.series:
            raise LoadError(f"{path}: TIFF file contains no image")
        index = _scene_index(scene, len(tif.series), path, "image series")
        series = tif.series[index]
        _check_complete(tif, series, path)
        page = series.keyframe
        axes = series.axes
        meta: dict[str, Any] = {
            "reader": "tifffile",
            "axes": axes,
            "shape": tuple(int(s) for s in series.shape),
            "dtype": str(series.dtype),
            "n_series": len(tif.series),
            "scene_index": index,
            "notes": [],
        }
        note = _series_note(tif, index, path)
        if note is not None and scene == 0:
            meta["notes"].append(note)
            meta["scene_note"] = note  # a batch that analyses every scene drops it
        ps = {"z": None, "y": None, "x": None}
        names: list[str] | None = None
        if tif.is_ome:
            meta["format"] = "ome-tiff"
            meta["ome_xml"] = tif.ome_metadata
            info = ome_pixel_info(tif.ome_metadata, index)
            ps.update({k: info.get(k) for k in "zyx"})
            names = ome_channel_names(tif.ome_metadata, index)
        elif tif.is_imagej:
            meta["format"] = "imagej-tiff"
            ij = dict(tif.imagej_metadata or {})
            meta["imagej"] = ij
            z, y, x, unit = _imagej_pixel_size(page, ij, path, meta["notes"])
            ps.update(z=z, y=y, x=x)
            if unit is not None and unit_factor(unit) is None:
                meta["notes"].append(f"ImageJ unit {unit!r} is not a length: uncalibrated")
        elif tif.is_lsm:
            meta["format"] = "lsm"
            lsm = tif.lsm_metadata or {}
            for key, k in (("VoxelSizeX", "x"), ("VoxelSizeY", "y"), ("VoxelSizeZ", "z")):
                value = lsm.get(key)
                if value:
                    ps[k] = float(value) * 1e6  # metres
        else:
            meta["format"] = "tiff"
            ps["y"], ps["x"] = _tag_pixel_size_um(page)
        rgb = page.photometric == tifffile.PHOTOMETRIC.RGB and "S" in axes
        nbytes = math.prod(series.shape) * series.dtype.itemsize
        try:
            if nbytes > threshold:
                import dask.array as da
                import zarr

                # the store opens its own file handle, independent of ``tif``
                store = tifffile.imread(path, aszarr=True, series=index, level=0)
                data = da.from_zarr(zarr.open(store, mode="r"))
                meta["lazy"] = True
            else:
                data = series.asarray()
        except Exception as exc:  # codecs raise their own error types
            raise LoadError(
                f"{path}: pixel data cannot be read ({type(exc).__name__}: {exc}); the "
                "file is probably truncated or corrupt — export it again"
            ) from exc
    if ps["x"] is None and ps["y"] is not None:
        ps["x"] = ps["y"]
    if ps["y"] is None and ps["x"] is not None:
        ps["y"] = ps["x"]
    return {"data": data, "axes": axes, "names": names, "ps": ps, "meta": meta, "rgb": rgb}


# ------------------------------------------------------------------- bioio
def _reader_class(ext: str, path: Path) -> Any:
    try:
        if ext == ".czi":
            from bioio_czi import Reader
        elif ext == ".lif":
            from bioio_lif import Reader
        else:
            from bioio_nd2 import Reader
    except ImportError as exc:
        raise LoadError(
            f"{path}: reading {ext} files needs the optional reader plugin "
            f"({exc.name}); install it with `pip install spinalquant[vendor]`"
        ) from exc
    return Reader


def _lif_vendor_sizes(metadata: Any, scene: int, scene_name: str) -> dict[str, float]:
    """µm per pixel for X/Y/Z of one LIF image, from its DimensionDescription."""
    if not isinstance(metadata, ET.Element):
        return {}
    images = [el for el in metadata.iter("Element") if el.find("./Data/Image") is not None]
    if scene >= len(images):
        return {}
    el = images[scene]
    if el.get("Name") not in (None, scene_name) and scene_name not in el.get("Name", ""):
        return {}
    out: dict[str, float] = {}
    for dim in el.iter("DimensionDescription"):
        key = {"1": "x", "2": "y", "3": "z"}.get(dim.get("DimID", ""))
        try:
            n = int(dim.get("NumberOfElements", "0"))
            length = float(dim.get("Length", "nan"))
        except ValueError:
            continue
        unit = dim.get("Unit", "")
        factor = 1e6 if unit == "m" else unit_factor(unit)
        if key is None or n < 2 or factor is None or not length > 0:
            continue
        out[key] = abs(length) * factor / (n - 1)
    return out


def _czi_vendor_sizes(metadata: Any) -> dict[str, float]:
    """µm per pixel from CZI ``Scaling/Items/Distance`` (values in metres)."""
    if not isinstance(metadata, ET.Element):
        return {}
    out: dict[str, float] = {}
    for dist in metadata.iter("Distance"):
        key = (dist.get("Id") or "").lower()
        value = dist.find("Value")
        if key in ("x", "y", "z") and value is not None and value.text:
            try:
                v = float(value.text) * 1e6
            except ValueError:
                continue
            if v > 0:
                out[key] = v
    return out


def _czi_subblock_scenes(path: Path) -> int:
    """Scenes with image data in a CZI's subblock directory (0 if unknown)."""
    try:
        from pylibCZIrw import czi as pyczi

        with pyczi.open_czi(str(path)) as f:
            return len(f.scenes_bounding_rectangle)
    except Exception:  # a failed cross-check must not block loading
        return 0


def _nd2_calibrated(path: Path) -> tuple[bool, bool] | None:
    """(xy calibrated, z calibrated) from the ND2 metadata, or None if unknown."""
    try:
        import nd2

        with nd2.ND2File(path) as f:
            channels = f.metadata.channels or []
            if not channels or channels[0].volume is None:
                return None
            cal = channels[0].volume.axesCalibrated
            return bool(cal[0] and cal[1]), bool(cal[2])
    except Exception:  # a failed vendor check must not block loading
        return None


def _close(a: float | None, b: float | None, rtol: float = 0.01) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def _read_bioio(path: Path, ext: str, threshold: int, scene: int = 0) -> dict[str, Any]:
    Reader = _reader_class(ext, path)
    try:
        reader = Reader(path)
        scenes = tuple(reader.scenes)
        index = _scene_index(scene, max(len(scenes), 1), path, "scenes")
        reader.set_scene(index)
        dims = reader.dims
        meta: dict[str, Any] = {
            "reader": f"{Reader.__module__}.Reader",
            "format": ext.lstrip("."),
            "n_scenes": len(scenes),
            "scene": str(scenes[index]) if scenes else None,
            "scene_index": index,
            "notes": [],
        }
        if ext == ".czi":
            n_blocks = _czi_subblock_scenes(path)
            if n_blocks > max(len(scenes), 1):
                meta["notes"].append(
                    f"the CZI holds image data of {n_blocks} scenes but its metadata lists "
                    f"{len(scenes)}: only {str(scenes[index]) if scenes else 'one'!r} was read; "
                    "export each scene as its own file in ZEN"
                )
        if len(scenes) > 1 and scene == 0:
            meta["scene_note"] = (
                f"{len(scenes)} scenes in the file: only scene 0 {str(scenes[0])!r} was read, "
                "the others were not analysed; read another with load(..., scene=i) "
                "(`spinalquant run` analyses every scene)"
            )
            meta["notes"].append(meta["scene_note"])
        order = dims.order
        if "M" in order and dims.M > 1 and hasattr(reader, "mosaic_xarray_dask_data"):
            xdata = reader.mosaic_xarray_dask_data
            data = xdata.data
            axes = "".join(str(d) for d in xdata.dims)
            meta["mosaic"] = f"stitched from {dims.M} tiles"
        else:
            data = reader.dask_data
            axes = order
        if ext == ".czi" and "S" in axes and data.shape[axes.index("S")] > 1:
            # bioio-czi's lazy colour data repeats the first (blue) sample in every
            # sample; its eager read is right
            nbytes = math.prod(data.shape) * data.dtype.itemsize
            if nbytes > threshold:
                raise LoadError(
                    f"{path}: a colour CZI of {nbytes / 2**30:.1f} GiB is larger than the "
                    "memory budget, and colour CZIs can only be read whole; export it as "
                    "OME-TIFF or raise [image] memory_budget_mb"
                )
            data = reader.mosaic_data if "mosaic" in meta else reader.data
        names = [str(n) for n in reader.channel_names] if reader.channel_names else None
        pps = reader.physical_pixel_sizes
        raw_meta = reader.metadata
    except (LoadError, ConfigError):
        raise
    except Exception as exc:  # vendor readers raise anything
        raise LoadError(
            f"{path}: the {ext} reader failed ({type(exc).__name__}: {exc}); check that "
            "the file opens in the vendor software and is not truncated"
        ) from exc
    meta["axes"] = axes
    meta["shape"] = tuple(int(s) for s in data.shape)
    meta["dtype"] = str(data.dtype)
    meta["reader_pixel_sizes_um"] = {"z": pps.Z, "y": pps.Y, "x": pps.X}
    if isinstance(raw_meta, ET.Element):
        meta["vendor_xml"] = ET.tostring(raw_meta, encoding="unicode")
    ps: dict[str, float | None] = {"z": pps.Z, "y": pps.Y, "x": pps.X}

    # cross-check against the vendor metadata read independently
    vendor: dict[str, float] = {}
    if ext == ".lif":
        vendor = _lif_vendor_sizes(raw_meta, index, meta["scene"] or "")
    elif ext == ".czi":
        vendor = _czi_vendor_sizes(raw_meta)
    elif ext == ".nd2":
        cal = _nd2_calibrated(path)
        if cal is not None:
            xy_ok, z_ok = cal
            if not xy_ok:
                ps["x"] = ps["y"] = None
                meta["notes"].append("ND2 XY calibration flag is off: pixel size unknown")
            if not z_ok:
                ps["z"] = None
    for k, v in vendor.items():
        if not _close(ps.get(k), v):
            meta["notes"].append(
                f"reader pixel size {k}={ps.get(k)} µm disagrees with vendor metadata "
                f"{v} µm; the vendor value is used"
            )
            ps[k] = v
    # a z-size with no z-calibration in the vendor metadata is a reader default
    if ext in (".czi", ".lif") and vendor and "z" not in vendor:
        ps["z"] = None

    if ext == ".lif":
        data, axes = _lif_pixels(path, data, axes, dims, meta, index)
    data, rgb = _colour_samples(data, axes, ext, meta)
    return {"data": data, "axes": axes, "names": names, "ps": ps, "meta": meta, "rgb": rgb}


def _colour_samples(data: Any, axes: str, ext: str, meta: dict[str, Any]) -> tuple[Any, bool]:
    """A colour (brightfield) image's samples in R, G, B order, and whether it is one.

    CZI stores colour pixels as B, G, R (pixel types Bgr24/Bgr48, Bgra32) and the
    readers return them so; ND2 and LIF give R, G, B. An alpha sample is dropped.
    """
    if "S" not in axes:
        return data, False
    ax = axes.index("S")
    n = int(data.shape[ax])
    if n not in (3, 4):
        return data, False
    order = [2, 1, 0] if ext == ".czi" else [0, 1, 2]
    if ext == ".czi":
        meta["notes"].append("colour image: the CZI's B, G, R samples were put in R, G, B order")
    if n == 4:
        meta["notes"].append("alpha sample of the colour image dropped")
    index: list[Any] = [slice(None)] * data.ndim
    index[ax] = order
    return data[tuple(index)], True


def _lif_pixels(path: Path, data: Any, axes: str, dims: Any, meta: dict[str, Any],
                scene: int = 0):
    """One scene's pixels of a LIF file with the axes liffile (bioio-lif's backend) reports.

    bioio-lif 2.0 cannot read XZ scans or volumes stored as XZ frames (its dask
    graph fails) and reports lambda sweeps as C=1, Z=1; liffile gives the true
    dimensions. bioio's lazy
    array is kept when both agree on an ordinary XY image.
    """
    import liffile

    try:
        with liffile.LifFile(path) as lif:
            image = lif.images[scene]
            lif_dims = tuple(str(d) for d in image.dims)
            lif_sizes = {str(k): int(v) for k, v in image.sizes.items()}
            agree = set(lif_dims) <= set("TCZYX") and all(
                lif_sizes.get(ax, 1) == int(getattr(dims, ax)) for ax in axes
            )
            # bioio-lif reads XY frames only: an XZ-frame volume (dims Y, C, Z, X) too
            if agree and lif_dims[-2:] == ("Y", "X"):
                return data, axes
            pixels = image.asarray()
    except (liffile.LifFileError, OSError, ValueError, IndexError, KeyError) as exc:
        raise LoadError(f"{path}: LIF pixel data cannot be read ({exc})") from exc
    lif_axes = "".join(lif_dims)
    if "Y" not in lif_axes and "Z" in lif_axes and "X" in lif_axes:
        pixels = pixels[..., np.newaxis, :] if lif_axes.endswith("X") else pixels
        lif_axes = lif_axes[:-1] + "YX" if lif_axes.endswith("X") else lif_axes
        meta["xz_scan"] = True
        meta["notes"].append("XZ scan: the image has Z and X, Y has length 1")
    meta["axes"] = lif_axes
    return pixels, lif_axes


# --------------------------------------------------------------------- PIL
def _read_pil(path: Path) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode = img.mode
            dpi = img.info.get("dpi")
            meta: dict[str, Any] = {
                "reader": "pillow",
                "format": img.format,
                "mode": mode,
                "notes": [],
            }
            if mode in ("P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "1"):
                target = "L" if mode in ("LA", "1") else "RGB"
                if mode in ("RGBA", "LA", "PA"):
                    meta["notes"].append(f"alpha channel of mode {mode} dropped")
                img = img.convert(target)
            data = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LoadError(
            f"{path}: not a readable image ({exc}); check the file is complete and of "
            "the type its name says"
        ) from exc
    ps: dict[str, float | None] = {"z": None, "y": None, "x": None}
    if dpi:
        try:
            x, y = 25400.0 / float(dpi[0]), 25400.0 / float(dpi[1])
        except (ZeroDivisionError, TypeError, ValueError, IndexError):
            x = y = math.inf
        if 0 < x < _MAX_PLAUSIBLE_TAG_UM and 0 < y < _MAX_PLAUSIBLE_TAG_UM:
            ps.update(y=y, x=x)
    rgb = data.ndim == 3
    axes = "YXS" if rgb else "YX"
    meta["axes"] = axes
    return {"data": data, "axes": axes, "names": None, "ps": ps, "meta": meta, "rgb": rgb}


# -------------------------------------------------------------------- load
def _resolve_pixel_size(
    file_ps: dict[str, float | None], override: PixelSizeArg, path: Path
) -> tuple[float | None, float | None, float | None]:
    z, y, x = file_ps["z"], file_ps["y"], file_ps["x"]
    if override is None:
        return z, y, x
    if isinstance(override, int | float | np.integer | np.floating):
        value = float(override)
        return z, value, value
    values = tuple(override)
    if len(values) == 2:
        values = (None, *values)
    if len(values) != 3:
        raise ConfigError(
            f"{path}: pixel_size_um must be a number (y = x) or a (z, y, x) tuple; "
            f"got {override!r}"
        )
    oz, oy, ox = (None if v is None else float(v) for v in values)
    return (z if oz is None else oz, y if oy is None else oy, x if ox is None else ox)


def _validate_path(path: Path) -> str:
    ext = _extension(path)
    if ext is None:
        raise LoadError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
            f"spinalquant reads {', '.join(SUPPORTED_EXTENSIONS)}. Export the image as "
            "OME-TIFF if your format is not listed."
        )
    if not path.exists():
        raise LoadError(f"{path}: file not found; check the path and the input folder")
    if path.is_dir():
        raise LoadError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise LoadError(
            f"{path}: file is empty (0 bytes); the export or copy probably failed — "
            "copy or export it again"
        )
    return ext


def load(
    path: str | os.PathLike[str],
    *,
    pixel_size_um: PixelSizeArg = None,
    channel_names: Sequence[str] | None = None,
    require_pixel_size: bool = True,
    dask_threshold_bytes: int = 2**31,
    axes: str | None = None,
    scene: int = 0,
) -> Stack:
    """Read an image file into a :class:`Stack` with data ``(C, Z, Y, X)``.

    Parameters
    ----------
    path : str or PathLike
        An OME-TIFF, ImageJ TIFF, plain TIFF, LSM, CZI, LIF, ND2, PNG or JPEG file
        (see :data:`SUPPORTED_EXTENSIONS`). Non-ASCII paths are fine.
    pixel_size_um : float or (z, y, x) tuple, optional
        Overrides the file's calibration. A float sets y = x (z from the file);
        ``None`` entries in a tuple keep the file's value.
    channel_names : sequence of str, optional
        Overrides the channel names of the file (must match the channel count).
        Files without names get ``"C0", "C1", ...``; RGB files ``"R", "G", "B"``.
    require_pixel_size : bool
        If True (default) a file without y/x calibration and no override raises
        :class:`PixelSizeError`; if False, ``pixel_size_um`` holds ``None``.
    dask_threshold_bytes : int
        Above this uncompressed size (after dropping time points and scenes)
        the data is a lazy dask array.
    axes : str, optional
        The file's axes when its metadata does not give them, e.g. ``"ZYX"``
        for a plain multi-page TIFF (tifffile letters; ``S`` = RGB samples).
    scene : int
        Which scene (CZI/LIF/ND2) or image series (a multi-image OME-TIFF) to
        read, from 0. Reading scene 0 of a file holding several says so in
        ``metadata["notes"]``; ``metadata["n_scenes"]`` / ``["n_series"]``
        count them.

    Returns
    -------
    Stack
        ``metadata`` holds ``reader``, ``format``, original ``axes``/``shape``,
        ``notes`` (time points or scenes dropped, corrected pixel sizes) and the raw
        OME-XML / ImageJ dict / vendor XML.

    Raises
    ------
    LoadError
        Missing, empty, truncated, corrupt or unsupported file; unsupported axes.
    PixelSizeError
        No calibration in the file, none given and ``require_pixel_size``.
    ImageContentError
        Floating-point data containing NaN.
    ConfigError
        ``channel_names`` or ``pixel_size_um`` of the wrong length.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from spinalquant.io import save_stack
    >>> s = Stack(np.ones((2, 1, 8, 8), np.uint16), ("DAPI", "GFP"), (None, 0.5, 0.5))
    >>> out = save_stack(s, pathlib.Path(tempfile.mkdtemp()) / "a.ome.tif")
    >>> t = load(out)
    >>> t.shape, t.channel_names, t.pixel_size_um
    ((2, 1, 8, 8), ('DAPI', 'GFP'), (None, 0.5, 0.5))
    """
    p = Path(path)
    ext = _validate_path(p)
    try:
        if ext in _TIFF_EXT:
            raw = _read_tiff(p, dask_threshold_bytes, scene)
        elif ext in _BIOIO_EXT:
            raw = _read_bioio(p, ext, dask_threshold_bytes, scene)
        else:
            _scene_index(scene, 1, p, "image")
            raw = _read_pil(p)
    except OSError as exc:
        raise LoadError(f"{p}: cannot read file ({exc})") from exc
    meta = raw["meta"]
    meta["path"] = str(p)
    file_axes = raw["axes"]
    if axes is not None:
        if len(axes) != raw["data"].ndim:
            raise ConfigError(
                f"{p}: axes={axes!r} has {len(axes)} letters but the image has "
                f"{raw['data'].ndim} dimensions {tuple(raw['data'].shape)} (file axes "
                f"{file_axes!r})"
            )
        file_axes = axes
        meta["axes_override"] = axes
    data = _to_czyx(raw["data"], file_axes, p, meta)
    if not isinstance(data, np.ndarray):
        n_bytes = math.prod(data.shape) * data.dtype.itemsize
        if n_bytes <= dask_threshold_bytes:
            try:
                data = np.asarray(data.compute())
            except Exception as exc:
                raise LoadError(
                    f"{p}: pixel data cannot be read ({type(exc).__name__}: {exc}); the "
                    "file is probably truncated or corrupt — export it again"
                ) from exc
            meta["lazy"] = False
    n_c, n_z = int(data.shape[0]), int(data.shape[1])
    rgb = bool(raw["rgb"]) and n_c == 3

    # channel names
    names = raw["names"]
    if raw["names"] is None and meta.get("format") == "imagej-tiff":
        names = _imagej_channel_names(meta.get("imagej", {}), n_c, n_z)
    if channel_names is not None:
        names = [str(n) for n in channel_names]
        if len(names) != n_c:
            raise ConfigError(
                f"{p}: {len(names)} channel names given ({names}) but the file has "
                f"{n_c} channels; list exactly one name per channel in the config"
            )
    elif names is None or len(names) != n_c:
        names = ["R", "G", "B"] if rgb else [f"C{i}" for i in range(n_c)]
    if len(set(names)) != len(names):  # duplicate names from the file
        names = [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]

    # pixel sizes
    file_ps = dict(raw["ps"])
    if n_z == 1:
        file_ps["z"] = None
    for k, v in list(file_ps.items()):
        if v is not None and not (math.isfinite(v) and v > 0):
            meta["notes"].append(f"invalid pixel size {k}={v} in the file ignored")
            file_ps[k] = None
    meta["file_pixel_size_um"] = (file_ps["z"], file_ps["y"], file_ps["x"])
    ps = _resolve_pixel_size(file_ps, pixel_size_um, p)
    if require_pixel_size and (ps[1] is None or ps[2] is None):
        if meta.get("xz_scan"):
            raise PixelSizeError(
                f"{p}: this is an XZ scan (Y has length 1), it has no Y pixel size and "
                "cannot be quantified as an XY section; load it with "
                "require_pixel_size=False to inspect it"
            )
        why = "; ".join(n for n in meta["notes"] if "calibrat" in n or "pixel size" in n)
        raise PixelSizeError(
            f"{p}: the file has no physical pixel size (no calibration in its metadata"
            f"{': ' + why if why else ''}). Set it in the config, e.g. `pixel_size_um = 0.31` (µm per pixel; a "
            "(z, y, x) list for stacks), or pass pixel_size_um= to load()."
        )
    if n_z == 1 and ps[0] is not None and pixel_size_um is None:
        ps = (None, ps[1], ps[2])
    if ps[1] is not None and ps[2] is not None and not _close(ps[1], ps[2]):
        meta["notes"].append(
            f"pixels are not square (y {ps[1]:.4g} µm, x {ps[2]:.4g} µm): the analysis uses "
            f"their mean, {(ps[1] + ps[2]) / 2:.4g} µm, so areas and lengths are off by up to "
            f"{100 * abs(ps[1] - ps[2]) / (ps[1] + ps[2]):.0f} %; resample the image to square "
            "pixels for exact figures"
        )

    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
        if data.dtype.kind == "f" and np.isnan(data).any():
            raise ImageContentError(
                f"{p}: the image contains NaN pixels; replace them (e.g. by 0 in "
                "ImageJ: Process > Math > Remove NaNs) and save again"
            )
    try:
        return Stack(data, tuple(names), ps, path=p, metadata=meta, rgb=rgb)
    except PixelSizeError as exc:
        raise PixelSizeError(f"{p}: {exc}") from exc


def check_content(stack: Stack, *, channels: Sequence[str | int] | None = None) -> None:
    """Refuse pixel data that cannot be analysed.

    Cheap on lazy (dask) data: integer images are scanned chunk by chunk, in
    batches spread over the image, and the scan stops as soon as the image
    (and every requested channel) is known to have two different values, so
    a real image costs the read of a few chunks; only a constant image is
    read whole. Floating-point images must be read whole to rule out NaN:
    their finiteness, per-channel minima and maxima are reduced in a single
    pass over the chunks.

    Parameters
    ----------
    stack : Stack
        The loaded image (numpy or dask data).
    channels : sequence of str or int, optional
        Markers / names / indices that must each contain signal; by default
        only the image as a whole is checked.

    Raises
    ------
    ImageContentError
        NaN or infinite values; an image (or a requested channel) that is
        constant, e.g. all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> check_content(Stack(np.arange(64, dtype=np.uint8).reshape(1, 1, 8, 8), ("C0",), (None, 1, 1)))
    >>> check_content(Stack(np.zeros((1, 1, 8, 8), np.uint8), ("C0",), (None, 1, 1)))
    Traceback (most recent call last):
    ...
    spinalquant.errors.ImageContentError: <array>: the image is all zeros (every pixel is 0); ...
    """
    data = stack.data
    wanted = sorted({stack.channel_index(m) for m in channels or ()})
    if isinstance(data, np.ndarray) or data.dtype.kind not in "ui":
        finite, lo, hi = _full_scan(data)
        seen = np.ones(lo.shape, bool)
    else:
        finite = True
        lo, hi, seen = _chunk_scan(data, wanted)
    if not finite:
        raise ImageContentError(
            f"{stack.name}: the image contains NaN or infinite pixels; replace them "
            "and save the image again"
        )
    glo, ghi = lo[seen].min(), hi[seen].max()
    if glo == ghi:
        what = "all zeros (every pixel is 0)" if glo == 0 else f"constant (every pixel is {glo})"
        raise ImageContentError(
            f"{stack.name}: the image is {what}; the acquisition or export failed — "
            "check the file in ImageJ/Fiji"
        )
    for idx in wanted:
        if lo[idx] == hi[idx]:
            raise ImageContentError(
                f"{stack.name}: channel {stack.channel_names[idx]!r} is constant "
                f"(every pixel is {lo[idx]}); it carries no signal to analyse"
            )


def _full_scan(data: Any) -> tuple[bool, np.ndarray, np.ndarray]:
    """(all finite, per-channel min, per-channel max) of (C, ...) data; one pass over dask chunks.

    The extremes are only meaningful when the data is finite.
    """
    axes = tuple(range(1, data.ndim))
    if isinstance(data, np.ndarray):
        finite = data.dtype.kind != "f" or bool(np.isfinite(data).all())
        if not finite:
            return False, np.zeros(0), np.zeros(0)
        return True, data.min(axis=axes), data.max(axis=axes)
    import dask
    import dask.array as da

    parts = [data.min(axis=axes), data.max(axis=axes)]
    if data.dtype.kind in "fc":
        parts.append(da.isfinite(data).all())
    out = dask.compute(*parts)  # one graph: every chunk is read once
    finite = bool(out[2]) if len(out) > 2 else True
    return finite, np.asarray(out[0]), np.asarray(out[1])


def _chunk_scan(data: Any, wanted: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel (min, max, reached) of lazy integer data, from as few chunks as settle the checks.

    Chunks are read in batches (4, 8, 16, ... at most 256 at once) in a fixed
    pseudo-random order that spreads them over the image, so that blank
    borders of a mosaic do not delay the answer. The scan stops once the
    image holds two different values and every channel in ``wanted`` does
    too; the extremes then cover the chunks read (``reached`` marks the
    channels with at least one chunk read). A constant image is read whole.
    """
    import dask

    n_c = int(data.shape[0])
    lo = np.zeros(n_c, dtype=data.dtype)
    hi = np.zeros(n_c, dtype=data.dtype)
    seen = np.zeros(n_c, bool)
    c_start = np.concatenate([[0], np.cumsum(data.chunks[0])]).astype(int)
    blocks = list(np.ndindex(*data.numblocks))
    order = np.random.default_rng(0).permutation(len(blocks))
    axes = tuple(range(1, data.ndim))
    pos, batch = 0, 4
    while pos < len(order):
        part = [blocks[i] for i in order[pos:pos + batch]]
        pos += batch
        batch = min(2 * batch, 256)
        stats = dask.compute(*[(data.blocks[b].min(axis=axes), data.blocks[b].max(axis=axes)) for b in part])
        for b, (blo, bhi) in zip(part, stats, strict=True):
            sl = slice(c_start[b[0]], c_start[b[0] + 1])
            first = ~seen[sl]
            lo[sl] = np.where(first, blo, np.minimum(lo[sl], blo))
            hi[sl] = np.where(first, bhi, np.maximum(hi[sl], bhi))
            seen[sl] = True
        if lo[seen].min() != hi[seen].max() and all(seen[c] and lo[c] != hi[c] for c in wanted):
            break
    return lo, hi, seen


def _compute(value: Any) -> Any:
    return value.compute() if hasattr(value, "compute") else value
