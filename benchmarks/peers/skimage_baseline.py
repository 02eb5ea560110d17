"""Classical scikit-image baselines a lab would write in a notebook.

Two cell segmenters, a spot detector and a fiber segmenter, all in physical
units (µm, µm²) converted with the pixel size, nothing tuned per image:

* :func:`otsu_watershed` — Gaussian blur, Otsu threshold, hole filling,
  distance-transform watershed (the scikit-image gallery recipe).
* :func:`voronoi_otsu` — Voronoi-Otsu labelling, written from its definition
  (Haase's clesperanto / napari-segment-blobs-and-things-with-membranes):
  blur with ``spot_sigma`` and take local maxima as seeds, blur with
  ``outline_sigma`` and Otsu-threshold as the mask, then a seeded watershed of
  the flat mask, i.e. a Voronoi partition of the mask between seeds.
* :func:`log_spots` — Laplacian-of-Gaussian response, local maxima above
  mean + k·std of the response (not robust; the classical choice).
* :func:`otsu_fibers` — fibers are the dark interiors enclosed by a bright
  border stain (or pink H&E regions darker than the pale endomysium).

The package napari-segment-blobs-and-things-with-membranes was not installed:
into a napari venv it pulls about 60 packages (jupyterlab, napari-assistant …).

Run as a script it segments files written by ``benchmarks/run_all.py`` and
writes one label image / point table per input, timing itself::

    python skimage_baseline.py JOB.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import color, feature, filters, measure, morphology, segmentation


def _sigma_px(sigma_um: float, pixel_size_um: float) -> float:
    return float(sigma_um) / float(pixel_size_um)


def _size_filter(labels: np.ndarray, *, min_px: float, max_px: float = np.inf,
                 exclude_border: bool = False) -> np.ndarray:
    if exclude_border:
        labels = segmentation.clear_border(labels)
    areas = np.bincount(labels.ravel())
    keep = (areas >= min_px) & (areas <= max_px)
    keep[0] = False
    out = np.where(keep[labels], labels, 0)
    return segmentation.relabel_sequential(out)[0].astype(np.int32)


def otsu_watershed(image: np.ndarray, *, pixel_size_um: float, sigma_um: float = 1.0,
                   min_area_um2: float = 30.0, max_area_um2: float = np.inf,
                   min_distance_um: float = 4.0) -> np.ndarray:
    """Otsu mask split by a distance-transform watershed.

    Parameters
    ----------
    image : ndarray (Y, X)
    pixel_size_um : float
    sigma_um : float
        Gaussian pre-blur.
    min_area_um2, max_area_um2 : float
        Size limits of kept objects.
    min_distance_um : float
        Minimal distance between two seeds (about a cell radius).

    Returns
    -------
    ndarray of int32 (Y, X)

    Examples
    --------
    >>> img = np.zeros((64, 64)); img[10:30, 10:30] = 100
    >>> otsu_watershed(img, pixel_size_um=1.0).max().item()
    1
    """
    sm = filters.gaussian(image.astype(np.float32), sigma=_sigma_px(sigma_um, pixel_size_um))
    mask = ndi.binary_fill_holes(sm > filters.threshold_otsu(sm))
    dist = ndi.distance_transform_edt(mask)
    md = max(1, int(round(min_distance_um / pixel_size_um)))
    peaks = feature.peak_local_max(dist, min_distance=md, labels=measure.label(mask),
                                   exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lab = segmentation.watershed(-dist, markers, mask=mask)
    px2 = pixel_size_um ** 2
    return _size_filter(lab, min_px=min_area_um2 / px2, max_px=max_area_um2 / px2)


def voronoi_otsu(image: np.ndarray, *, pixel_size_um: float, spot_sigma_um: float = 2.0,
                 outline_sigma_um: float = 1.0, min_area_um2: float = 30.0,
                 max_area_um2: float = np.inf) -> np.ndarray:
    """Voronoi-Otsu labelling.

    Parameters
    ----------
    image : ndarray (Y, X)
    pixel_size_um : float
    spot_sigma_um : float
        Blur before seed detection; controls how close two objects can be.
    outline_sigma_um : float
        Blur before the Otsu mask; controls outline smoothness.
    min_area_um2, max_area_um2 : float

    Returns
    -------
    ndarray of int32 (Y, X)

    Examples
    --------
    >>> img = np.zeros((64, 64)); img[10:30, 10:30] = 100
    >>> voronoi_otsu(img, pixel_size_um=1.0).max().item()
    1
    """
    f = image.astype(np.float32)
    spot = filters.gaussian(f, sigma=_sigma_px(spot_sigma_um, pixel_size_um))
    outline = filters.gaussian(f, sigma=_sigma_px(outline_sigma_um, pixel_size_um))
    mask = outline > filters.threshold_otsu(outline)
    seeds = measure.label(morphology.local_maxima(spot) & mask)
    lab = segmentation.watershed(mask.astype(np.uint8), seeds, mask=mask)
    px2 = pixel_size_um ** 2
    return _size_filter(lab, min_px=min_area_um2 / px2, max_px=max_area_um2 / px2)


def log_spots(image: np.ndarray, *, pixel_size_um: float, spot_radius_um: float = 0.4,
              k: float = 3.0) -> np.ndarray:
    """Spots as local maxima of the negative LoG response above mean + k·std.

    Returns
    -------
    ndarray of float (N, 2)
        Spot centres ``(y, x)`` in µm.

    Examples
    --------
    >>> img = np.zeros((32, 32)); img[16, 16] = 100
    >>> log_spots(img, pixel_size_um=0.2).round(1).tolist()
    [[3.2, 3.2]]
    """
    s = max(_sigma_px(spot_radius_um, pixel_size_um) / np.sqrt(2), 0.5)
    resp = -ndi.gaussian_laplace(image.astype(np.float32), s)
    thr = float(resp.mean() + k * resp.std())
    md = max(1, int(round(s)))
    pk = feature.peak_local_max(resp, min_distance=md, threshold_abs=thr, exclude_border=False)
    return pk.astype(float) * pixel_size_um


def otsu_fibers(image: np.ndarray, *, pixel_size_um: float, stain: str = "laminin",
                sigma_um: float = 1.0, min_area_um2: float = 100.0,
                max_area_um2: float = 20000.0, min_distance_um: float = 10.0) -> np.ndarray:
    """Muscle fibers as Otsu-dark interiors split by a distance watershed.

    Parameters
    ----------
    image : ndarray (Y, X) border stain, or (Y, X, 3) uint8 RGB for ``stain="he"``.

    Returns
    -------
    ndarray of int32 (Y, X), fibers touching the image edge removed.

    Examples
    --------
    >>> img = np.full((64, 64), 100.0); img[10:50, 10:50] = 0
    >>> otsu_fibers(img, pixel_size_um=1.0).max().item()
    1
    """
    if stain == "he":
        # pink fibers are darker than the pale endomysium in grey
        border = color.rgb2gray(image).astype(np.float32)
    else:
        border = image.astype(np.float32)
    sm = filters.gaussian(border, sigma=_sigma_px(sigma_um, pixel_size_um))
    interior = sm < filters.threshold_otsu(sm)
    interior = ndi.binary_opening(interior, morphology.disk(1))
    dist = ndi.distance_transform_edt(interior)
    md = max(1, int(round(min_distance_um / pixel_size_um)))
    peaks = feature.peak_local_max(dist, min_distance=md, labels=measure.label(interior),
                                   exclude_border=False)
    markers = np.zeros(interior.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lab = segmentation.watershed(-dist, markers, mask=interior)
    px2 = pixel_size_um ** 2
    return _size_filter(lab, min_px=min_area_um2 / px2, max_px=max_area_um2 / px2,
                        exclude_border=True)


# ------------------------------------------------------------------ script
def _read(path: str) -> tuple[np.ndarray, float]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        arr = tif.asarray()
        tag = tif.pages[0].tags.get("XResolution")
        num, den = tag.value if tag is not None else (1, 1)
    return arr, float(den) / float(num)


#: exported channel plane -> object kind segmented on it
_KIND = {"gfp": "gfp_cells", "chat": "motor_neurons", "synapse": "puncta", "border": "fibers",
         "he": "fibers_he"}


def run_job(job: dict) -> dict:
    """Run one tool over the images of a job (see run_all.py); returns timings."""
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    method = job["method"]  # "otsu_ws" or "voronoi_otsu"
    times = {}
    for item in job["items"]:
        t0 = time.perf_counter()
        res: dict[str, np.ndarray] = {}
        for channel, path in item["files"].items():
            kind = _KIND.get(channel)
            if kind is None:
                continue
            img, px = _read(path)
            lim = job["limits"][kind]
            if kind in ("gfp_cells", "motor_neurons"):
                sizes = {"min_area_um2": lim["min_area_um2"], "max_area_um2": lim["max_area_um2"]}
                if method == "otsu_ws":
                    res[kind] = otsu_watershed(img, pixel_size_um=px, sigma_um=lim["sigma_um"],
                                               min_distance_um=lim["split_um"], **sizes)
                else:
                    res[kind] = voronoi_otsu(img, pixel_size_um=px, outline_sigma_um=lim["sigma_um"],
                                             spot_sigma_um=lim["split_um"], **sizes)
            elif kind == "puncta":
                res[kind] = log_spots(img, pixel_size_um=px, spot_radius_um=lim["radius_um"],
                                      k=job.get("log_k", 3.0))
            elif kind in ("fibers", "fibers_he"):
                res["fibers"] = otsu_fibers(img, pixel_size_um=px,
                                            stain="he" if kind == "fibers_he" else "laminin",
                                            min_area_um2=lim["min_area_um2"],
                                            max_area_um2=lim["max_area_um2"],
                                            min_distance_um=lim["split_um"])
        times[item["name"]] = time.perf_counter() - t0
        np.savez_compressed(out / f"{item['name']}.npz", **res)
    return times


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    t = run_job(job)
    Path(job["out"], "times.json").write_text(json.dumps(t))
