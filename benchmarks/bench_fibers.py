"""Speed and memory of muscle-fiber segmentation + measurement on laminin phantoms.

For each image size the phantom's laminin channel is written to an OME-TIFF, then

* ``baseline``: read that OME-TIFF (tifffile) + one Gaussian pass (sigma 1 µm) -- the
  least any analysis has to do;
* ``fibers``: ``segment_fibers`` + ``measure_fibers`` on the array,

and the table shows both times, their ratio, the peak traced memory (tracemalloc,
numpy buffers included) of the fiber step, and F1 against the phantom truth.
Results go to ``benchmarks/results/fibers.json``.

Usage::

    python benchmarks/bench_fibers.py            # 1k, 2k, 4k
    python benchmarks/bench_fibers.py --sizes 1024 2048 4096 8192

Never part of the unit suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from spinalquant.measure.matching import match_labels
from spinalquant.measure.morphology import measure_fibers
from spinalquant.segment.fibers import FiberParams, segment_fibers
from spinalquant.synthetic import make_muscle_section

PIXEL_SIZE_UM = 0.65
RESULTS = Path(__file__).resolve().parent / "results" / "fibers.json"


def _baseline(path: Path, pixel_size_um: float) -> float:
    t0 = time.perf_counter()
    img = tifffile.imread(path)
    ndi.gaussian_filter(img.astype(np.float32), 1.0 / pixel_size_um)
    return time.perf_counter() - t0


def _run(size: int, seed: int, tmp: Path) -> dict:
    ph = make_muscle_section(
        seed=seed, shape=(size, size), pixel_size_um=PIXEL_SIZE_UM, with_nuclei=False
    )
    img = np.asarray(ph.stack.data[0, 0])
    path = tmp / f"laminin_{size}.ome.tif"
    tifffile.imwrite(
        path,
        img,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": PIXEL_SIZE_UM, "PhysicalSizeY": PIXEL_SIZE_UM},
    )
    t_base = min(_baseline(path, PIXEL_SIZE_UM) for _ in range(2))

    tracemalloc.start()
    t0 = time.perf_counter()
    labels = segment_fibers(img, pixel_size_um=PIXEL_SIZE_UM, params=FiberParams())
    t_seg = time.perf_counter() - t0
    df = measure_fibers(labels, pixel_size_um=PIXEL_SIZE_UM)
    t_all = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    truth = ph.truth["fibers"]
    edge = truth.loc[truth["touches_border"], "label"].to_numpy()
    tl = np.where(np.isin(ph.labels["fibers"], edge), 0, ph.labels["fibers"])
    f1 = match_labels(labels, tl, iou=0.5)["f1"]
    return {
        "size_px": size,
        "megapixels": size * size / 1e6,
        "n_fibers": len(df),
        "baseline_s": round(t_base, 3),
        "segment_s": round(t_seg, 3),
        "segment_measure_s": round(t_all, 3),
        "ratio_to_baseline": round(t_all / t_base, 1),
        "peak_mem_mb": round(peak / 2**20, 1),
        "peak_mem_bytes_per_px": round(peak / (size * size), 1),
        "f1": round(float(f1), 4),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rows = []
    header = (
        f"{'size':>6} {'MP':>6} {'fibers':>7} {'base s':>8} {'seg+meas s':>11} "
        f"{'ratio':>6} {'peak MB':>8} {'B/px':>6} {'F1':>6}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            r = _run(size, args.seed, Path(tmp))
            rows.append(r)
            print(
                f"{r['size_px']:>6} {r['megapixels']:>6.1f} {r['n_fibers']:>7} "
                f"{r['baseline_s']:>8.3f} {r['segment_measure_s']:>11.2f} "
                f"{r['ratio_to_baseline']:>6.1f} {r['peak_mem_mb']:>8.0f} "
                f"{r['peak_mem_bytes_per_px']:>6.0f} {r['f1']:>6.3f}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": "fibers",
        "pixel_size_um": PIXEL_SIZE_UM,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "note": "peak_mem from tracemalloc over segment_fibers + measure_fibers",
    }
    args.out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
