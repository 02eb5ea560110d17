"""Speed, memory and accuracy of muscle-fiber segmentation + measurement vs. image size.

For each size a laminin phantom (0.65 µm/px) is written to an OME-TIFF; then, each in
a fresh process so that timings and peak memory do not leak between steps,

* ``baseline``: read that OME-TIFF (tifffile) + one Gaussian pass (sigma 1 µm, float32)
  -- the least any analysis has to do (best of 2);
* ``fibers``: read the OME-TIFF, then ``segment_fibers`` + ``measure_fibers`` (timed
  without any tracing); the process's peak resident memory (``VmHWM``) and its
  increase over the resident size after reading the image are recorded;

and the table shows both times, their ratio, the time per megapixel, peak memory, the
fiber count and F1 (IoU 0.5) against the phantom truth, plus the slope of log(time) vs
log(pixels) (1 = linear). A fibers process whose resident memory passes
``--max-mem-gb`` (default 8) is stopped and its size reported as skipped. Results go to
``benchmarks/results/fibers.json``.

Usage::

    python benchmarks/bench_fibers.py                       # 1k, 2k, 4k, 8k
    python benchmarks/bench_fibers.py --sizes 1024 2048

Never part of the unit suite. On a shared machine absolute times are noisy; the ratio
to the baseline (measured alongside) is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PIXEL_SIZE_UM = 0.65
RESULTS = Path(__file__).resolve().parent / "results" / "fibers.json"


def _rss_mb() -> float:
    """Current resident set size (MB), from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _worker_baseline(path: str) -> dict:
    import tifffile
    from scipy import ndimage as ndi

    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        img = tifffile.imread(path)
        ndi.gaussian_filter(img.astype(np.float32), 1.0 / PIXEL_SIZE_UM)
        times.append(time.perf_counter() - t0)
        del img
    return {"baseline_s": min(times)}


def _worker_fibers(path: str, out_labels: str) -> dict:
    import tifffile

    from spinalquant.measure.morphology import measure_fibers
    from spinalquant.segment.fibers import segment_fibers

    img = tifffile.imread(path)
    rss_loaded = _rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    labels = segment_fibers(img, pixel_size_um=PIXEL_SIZE_UM)
    t_seg = time.perf_counter() - t0
    df = measure_fibers(labels, pixel_size_um=PIXEL_SIZE_UM)
    t_all = time.perf_counter() - t0
    cpu = time.process_time() - c0
    # the kernel's high-water mark of this process: ru_maxrss survives exec on Linux and
    # would report the parent's peak (the phantom generation), not this step's
    from bench_cord import _peak_mib

    peak = _peak_mib()
    np.save(out_labels, labels)
    return {
        "segment_s": t_seg,
        "segment_measure_s": t_all,
        "cpu_s": cpu,
        "n_fibers": len(df),
        "peak_rss_mb": peak,
        "peak_over_image_mb": peak - rss_loaded,
    }


def _vm_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _spawn(*args: str, max_mem_mb: float = float("inf")) -> dict | None:
    """Run one worker step in a fresh process; None if it exceeded ``max_mem_mb``."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while proc.poll() is None:
        if _vm_rss_mb(proc.pid) > max_mem_mb:
            proc.kill()
            proc.communicate()
            return None
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{err}")
    return json.loads(out.strip().splitlines()[-1])


def _run(size: int, seed: int, tmp: Path, max_mem_mb: float) -> dict | None:
    import tifffile

    from spinalquant.measure.matching import match_labels
    from spinalquant.synthetic import make_muscle_section

    ph = make_muscle_section(
        seed=seed, shape=(size, size), pixel_size_um=PIXEL_SIZE_UM, with_nuclei=False
    )
    img = np.asarray(ph.stack.data[0, 0])
    truth = ph.truth["fibers"]
    edge = truth.loc[truth["touches_border"], "label"].to_numpy()
    tl = np.where(np.isin(ph.labels["fibers"], edge), 0, ph.labels["fibers"])
    del ph
    path = tmp / f"laminin_{size}.ome.tif"
    tifffile.imwrite(
        path,
        img,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": PIXEL_SIZE_UM, "PhysicalSizeY": PIXEL_SIZE_UM},
    )
    del img
    base = _spawn("baseline", str(path))
    labels_path = tmp / f"labels_{size}.npy"
    fib = _spawn("fibers", str(path), str(labels_path), max_mem_mb=max_mem_mb)
    if fib is None:
        return None
    f1 = match_labels(np.load(labels_path), tl, iou=0.5)["f1"]
    mp = size * size / 1e6
    return {
        "size_px": size,
        "megapixels": round(mp, 3),
        "n_fibers": fib["n_fibers"],
        "baseline_s": round(base["baseline_s"], 3),
        "segment_s": round(fib["segment_s"], 3),
        "segment_measure_s": round(fib["segment_measure_s"], 3),
        "cpu_s": round(fib["cpu_s"], 3),
        "s_per_megapixel": round(fib["segment_measure_s"] / mp, 3),
        "ratio_to_baseline": round(fib["segment_measure_s"] / base["baseline_s"], 1),
        "peak_rss_mb": round(fib["peak_rss_mb"], 1),
        "peak_over_image_mb": round(fib["peak_over_image_mb"], 1),
        "bytes_per_px": round(fib["peak_over_image_mb"] * 2**20 / (size * size), 1),
        "f1": round(float(f1), 4),
    }


def _slope(rows: list[dict]) -> float | None:
    if len(rows) < 2:
        return None
    x = np.log([r["megapixels"] for r in rows])
    y = np.log([r["segment_measure_s"] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        kind, *rest = argv[1:]
        result = _worker_baseline(*rest) if kind == "baseline" else _worker_fibers(*rest)
        print(json.dumps(result))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-mem-gb", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rows, skipped = [], []
    header = (
        f"{'size':>6} {'MP':>6} {'fibers':>7} {'base s':>7} {'fibers s':>9} {'s/MP':>6} "
        f"{'ratio':>6} {'peak MB':>8} {'B/px':>6} {'F1':>6}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted(args.sizes):
            r = _run(size, args.seed, Path(tmp), args.max_mem_gb * 1024)
            if r is None:
                print(f"{size:>6} stopped: peak memory above {args.max_mem_gb:g} GB", flush=True)
                skipped.append({"size_px": size, "reason": f"peak RSS > {args.max_mem_gb} GB"})
                continue
            if r["peak_rss_mb"] > args.max_mem_gb * 1024:  # a peak between two polls
                print(f"{size:>6} over limit: peak {r['peak_rss_mb'] / 1024:.1f} GB", flush=True)
                skipped.append({**r, "reason": f"peak RSS > {args.max_mem_gb} GB"})
                continue
            rows.append(r)
            print(
                f"{r['size_px']:>6} {r['megapixels']:>6.1f} {r['n_fibers']:>7} "
                f"{r['baseline_s']:>7.2f} {r['segment_measure_s']:>9.2f} "
                f"{r['s_per_megapixel']:>6.2f} {r['ratio_to_baseline']:>6.1f} "
                f"{r['peak_rss_mb']:>8.0f} {r['bytes_per_px']:>6.0f} {r['f1']:>6.3f}",
                flush=True,
            )
    slope = _slope(rows)
    if slope is not None:
        print(f"log-log slope of time vs pixels: {slope:.2f} (1 = linear)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": "fibers",
        "pixel_size_um": PIXEL_SIZE_UM,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "note": (
            "each step in a fresh process; times untraced; peak_rss_mb = VmHWM of the "
            "fibers process, peak_over_image_mb = that minus the RSS after reading the image; "
            "shared 2-core machine, absolute times noisy"
        ),
        "loglog_slope_time_vs_pixels": None if slope is None else round(slope, 3),
        "skipped": skipped,
    }
    args.out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
