"""Run spinalquant on the benchmark's exported planes, in its own process.

Same contract as the peers: read the calibrated TIFF planes written by
``run_all.py``, segment, write ``<case>.npz`` (label images, puncta in µm,
GFAP calls, colocalization figures) and ``times.json`` (compute seconds per
case). It calls the same functions, with the same arguments, as
``spinalquant.pipeline.analyze`` (reference channels for granule rejection,
GFAP call, perisomatic puncta, fiber measurement), minus file I/O of results.

    python sq_runner.py JOB.json            # a benchmark group
    python sq_runner.py --scale KIND FILE   # one scaling point: prints JSON
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import tifffile


def read_plane(path: str) -> tuple[np.ndarray, float]:
    """A calibrated ImageJ TIFF plane and its pixel size (µm)."""
    with tifffile.TiffFile(path) as tif:
        arr = tif.asarray()
        num, den = tif.pages[0].tags["XResolution"].value
    return arr, float(den) / float(num)


def _optional(module: str, name: str):
    try:
        mod = __import__(module, fromlist=[name])
        return getattr(mod, name)
    except (ImportError, AttributeError):
        return None


def run_cord(planes: dict[str, np.ndarray], px: float) -> dict[str, np.ndarray]:
    """Cord kinds present in ``planes`` (gfp, gfap, chat, synapse)."""
    from spinalquant.segment.gfp_cells import gfap_positivity, segment_gfp_cells

    out: dict[str, np.ndarray] = {}

    def reference(exclude: str):
        others = [p for k, p in planes.items() if k != exclude]
        return np.stack(others) if others else None

    if "gfp" in planes:
        lab = segment_gfp_cells(planes["gfp"], pixel_size_um=px, reference=reference("gfp"))
        out["gfp_cells"] = lab
        if "gfap" in planes:
            pos = gfap_positivity(lab, planes["gfap"], gfp=planes["gfp"], pixel_size_um=px)
            out["gfap_labels"] = pos["label"].to_numpy(np.int64)
            out["gfap_positive"] = pos["gfap_positive"].to_numpy(bool)
            from spinalquant.measure.colocalization import colocalization

            c = colocalization(planes["gfp"], planes["gfap"], costes=False, pvalue=False)
            out["coloc"] = np.array([c.get("pearson", np.nan), c.get("manders_m1", np.nan),
                                     c.get("manders_m2", np.nan)], float)
    seg_mn = _optional("spinalquant.segment.motor_neurons", "segment_motor_neurons")
    if "chat" in planes and seg_mn is not None:
        out["motor_neurons"] = seg_mn(planes["chat"], pixel_size_um=px)
        meas = _optional("spinalquant.segment.motor_neurons", "measure_motor_neurons")
        if meas is not None:
            meas(out["motor_neurons"], pixel_size_um=px)
    if "synapse" in planes:
        from spinalquant.segment.puncta import detect_puncta

        pts = detect_puncta(planes["synapse"], pixel_size_um=px, reference=reference("synapse"))
        out["puncta"] = pts[["y_um", "x_um"]].to_numpy(float)
        peri = _optional("spinalquant.measure.synapses", "perisomatic_puncta")
        if peri is not None and "motor_neurons" in out:
            pts = pts.reset_index(drop=True)
            pts.insert(0, "label", np.arange(1, len(pts) + 1, dtype=np.int64))
            t = peri(out["motor_neurons"], pts, pixel_size_um=px, distance_um=2.0)
            out["n_puncta"] = t["n_puncta"].to_numpy(np.int64)
    return out


def run_fibers(image: np.ndarray, px: float, stain: str) -> dict[str, np.ndarray]:
    from spinalquant.measure.morphology import measure_fibers
    from spinalquant.segment.fibers import segment_fibers

    lab = segment_fibers(image, pixel_size_um=px, stain=stain)
    measure_fibers(lab, pixel_size_um=px, exclude_border=True)
    return {"fibers": lab}


def run_case(files: dict[str, str]) -> dict[str, np.ndarray]:
    planes, px = {}, None
    for kind, path in files.items():
        planes[kind], px = read_plane(path)
    if "he" in planes:
        return run_fibers(planes["he"], px, "he")
    if "border" in planes:
        return run_fibers(planes["border"], px, "laminin")
    return run_cord(planes, px)


def run_job(job: dict) -> dict[str, float]:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    for item in job["items"]:
        t0 = time.perf_counter()
        res = run_case(item["files"])
        times[item["name"]] = time.perf_counter() - t0
        np.savez_compressed(out / f"{item['name']}.npz", **res)
    return times


def scale_point(kind: str, path: str) -> dict[str, float]:
    """Time and memory of one segmentation on one (large) plane."""
    from spinalquant.segment.fibers import segment_fibers  # noqa: F401  (imports outside the timer)
    from spinalquant.segment.gfp_cells import segment_gfp_cells
    from spinalquant.segment.puncta import detect_puncta

    img, px = read_plane(path)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if kind == "motor_neurons":
        from spinalquant.segment.motor_neurons import segment_motor_neurons
    t0 = time.perf_counter()
    if kind == "gfp_cells":
        segment_gfp_cells(img, pixel_size_um=px)
    elif kind == "motor_neurons":
        segment_motor_neurons(img, pixel_size_um=px)
    elif kind == "puncta":
        detect_puncta(img, pixel_size_um=px)
    elif kind == "fibers":
        run_fibers(img, px, "laminin")
    else:
        raise ValueError(kind)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": dt, "peak_rss_mb": peak, "input_rss_mb": base,
            "megapixels": img.size / 1e6, "input_mb": img.nbytes / 2**20}


if __name__ == "__main__":
    if sys.argv[1] == "--scale":
        print(json.dumps(scale_point(sys.argv[2], sys.argv[3])))
    else:
        job = json.loads(Path(sys.argv[1]).read_text())
        t = run_job(job)
        Path(job["out"], "times.json").write_text(json.dumps(t))
