"""napari readers: image files spinalquant loads, and spinalquant results folders.

* An image file (OME-TIFF, ImageJ/plain TIFF, LSM, CZI, LIF, ND2, PNG/JPG) opens
  as one image layer per channel, named and coloured by marker and scaled in µm
  (RGB H&E as one RGB layer); a sidecar ROI beside it opens as a Shapes layer.
* A results folder (``spinalquant run --out``) opens each analysed image's label
  images (``labels/<stem>.ome.tif``) as Labels layers whose ``features`` are the
  image's rows of ``objects/*.csv``, and its puncta as a Points layer.
* A label file inside a results folder (``OUT/labels/<stem>.ome.tif``) opens that
  one image's results the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._layers import LayerData, result_layers, roi_layer, stack_layers

ReaderFunction = Callable[[Any], list[LayerData]]


def _results_root(path: Path) -> Path | None:
    """The results folder ``path`` is, or whose ``labels/`` it lies in."""
    if path.is_dir():
        return path if (path / "summary.csv").is_file() and (path / ".parts").is_dir() else None
    for parent in list(path.parents)[:6]:
        if parent.name == "labels" and (parent.parent / "summary.csv").is_file():
            return parent.parent
    return None


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """npe2 ``napari_get_reader`` hook: a reader function, or None for other files."""
    from ..io import is_supported

    if isinstance(path, list):
        if not path or not all(isinstance(p, str) for p in path):
            return None
        readers = [get_reader(p) for p in path]
        if any(r is None for r in readers):
            return None
        return lambda paths: [ld for p in paths for ld in read(p)]
    p = Path(path)
    if p.is_dir():
        return read if _results_root(p) is not None else None
    if _results_root(p) is not None and p.name.lower().endswith((".ome.tif", ".ome.tiff")):
        return read
    return read if is_supported(p) else None


def read(path: str | Path) -> list[LayerData]:
    """Layers of an image file or a results folder (see the module docstring)."""
    p = Path(path)
    root = _results_root(p)
    if root is not None:
        return read_results(root, images=None if p.is_dir() else [_image_for_label_file(root, p)])
    return read_image(p)


def read_image(path: str | Path, *, scene: int | None = None) -> list[LayerData]:
    """Channel layers of one image file, plus its sidecar ROI outline.

    A file holding several scenes (LIF/CZI/ND2, a multi-image OME-TIFF) opens
    every scene, or only ``scene``; each scene's layers are named and grouped
    as the batch run names the scene (``L4.lif [Series003]``), the first
    scene's shown and the others hidden, so the widget analyses and saves a
    scene under its own name.
    """
    from ..batch import InputImage, scene_image_names

    p = Path(path)
    from ..io._load import image_scenes

    scenes = image_scenes(p)
    if len(scenes) == 1 and scene in (None, scenes[0][0]):
        return _read_scene(InputImage(p, p.name, scene=scenes[0][0]), source=str(p))
    names = scene_image_names(p.name, scenes) if len(scenes) > 1 else [p.name]
    items = [InputImage(p, name, scene=i, n_scenes=len(scenes))
             for (i, _), name in zip(scenes, names, strict=True) if scene in (None, i)]
    if not items:  # not among the scenes: load() says which there are
        items = [InputImage(p, f"{p.name} #{scene}", scene=int(scene or 0), n_scenes=len(scenes))]
    layers: list[LayerData] = []
    first_error: Exception | None = None
    for item in items:
        try:
            new = _read_scene(item, source=f"{p.parent / item.image}", lazy=len(items) > 1)
        except Exception as exc:  # one unreadable scene does not hide the others
            if scene is not None or first_error is None:
                first_error = exc
            continue
        label = item.image[len(p.name):].strip()
        for ld in new:
            ld[1]["name"] = f"{label} {ld[1]['name']}"
            ld[1]["metadata"]["spinalquant"].update(scene=item.scene, image=item.image)
            if layers:
                ld[1]["visible"] = False
        layers += new
    if not layers and first_error is not None:
        raise first_error
    return layers


def _read_scene(item: Any, *, source: str, lazy: bool = False) -> list[LayerData]:
    from ..batch import sidecar_key
    from ..io import load

    p = item.path
    # many scenes open at once stay on disk until shown or analysed
    stack = load(p, require_pixel_size=False, scene=item.scene,
                 **({"dask_threshold_bytes": 2**26} if lazy else {}))
    layers = stack_layers(stack, source=source)
    px = stack.pixel_size_um[1]
    try:
        from ..roi import find_sidecar_roi, roi_mask

        sidecars = find_sidecar_roi(sidecar_key(item))
        if sidecars and px is not None:
            mask = roi_mask(sidecars, shape_yx=stack.shape[2:], pixel_size_um=px)
            ld = roi_layer(mask, pixel_size_um=px, source=source) if mask is not None else None
            if ld is not None:
                ld[1]["metadata"]["spinalquant"]["files"] = [str(s) for s in sidecars]
                layers.append(ld)
    except Exception:  # a broken sidecar must not stop the image from opening
        pass
    return layers


def _image_for_label_file(root: Path, label_file: Path) -> str:
    from ..batch import output_stem
    from ..review import result_images

    rel = label_file.resolve().relative_to((root / "labels").resolve()).as_posix()
    stem = rel[: -len(".ome.tif")] if rel.lower().endswith(".ome.tif") else rel[: -len(".ome.tiff")]
    for image in result_images(root):
        if output_stem(image) == stem:
            return image
    raise FileNotFoundError(f"{label_file}: no image of {root}/summary.csv has these labels")


def read_results(out_dir: str | Path, *, images: list[str] | None = None) -> list[LayerData]:
    """Result layers of the images of a results folder (default: every analysed image).

    Images other than the first are added hidden, so they do not cover each other.
    """
    from ..errors import SpinalquantError
    from ..review import load_image_results, result_images

    out = Path(out_dir)
    layers: list[LayerData] = []
    for image in images if images is not None else result_images(out):
        try:
            res = load_image_results(out, image)
        except SpinalquantError:
            continue  # failed images have nothing to show
        new = result_layers(res, image=image, out_dir=str(out))
        if layers:
            for ld in new:
                ld[1]["visible"] = False
        layers += new
    return layers
