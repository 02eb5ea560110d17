"""Batch throughput, memory vs batch size, and a mosaic bigger than the memory budget.

Three parts, each printing a table; everything goes to ``benchmarks/results/batch.json``:

a. **throughput**: a folder of N small phantoms (half cord, half muscle, ~512²)
   through :func:`spinalquant.batch.run_batch` with ``workers=1`` (in process)
   and ``workers=2`` (local Dask cluster of processes): images/s and speed-up.
b. **memory vs batch size**: peak resident memory of the whole process tree
   (runner + Dask nanny/worker processes, sampled every 0.1 s) for 10, 20 and
   40 images with ``workers=2``; it should not grow with the number of images.
c. **mosaic**: an OME-TIFF (C, Z, Y, X) uint16 several times bigger than the
   memory budget, written tile by tile with tifffile from a mirrored phantom,
   loaded lazily and analysed by :func:`spinalquant.tiling.analyze_tiled` in a
   fresh process; peak RSS (sampled, and the kernel's VmHWM) against a budget
   of a quarter of the file size.

Usage::

    python benchmarks/bench_batch.py                 # all parts (~10 min on 2 cores)
    python benchmarks/bench_batch.py --parts a b     # only some parts
    python benchmarks/bench_batch.py --quick         # small sizes, to check the script

Never part of the unit suite. On a shared machine the speed-up is bounded by
the cores actually free: the table records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------ memory
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants."""
    try:
        import psutil

        p = psutil.Process(pid)
        total = p.memory_info().rss
        for c in p.children(recursive=True):
            try:
                total += c.memory_info().rss
            except psutil.Error:
                pass
        return total
    except ImportError:
        stack, total = [pid], 0
        while stack:
            q = stack.pop()
            total += _rss_bytes(q)
            stack += _children(q)
        return total


class PeakSampler:
    """Samples the process tree's RSS in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))


# ------------------------------------------------------------ phantoms
def write_folder(folder: Path, n: int, size: int) -> None:
    """n phantoms (alternating cord / muscle) as OME-TIFFs in ``folder``."""
    from spinalquant.io import save_stack
    from spinalquant.synthetic import make_cord_section, make_muscle_section

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if i % 2 == 0:
            ph = make_cord_section(seed=100 + i, shape=(size, size), n_gfp_cells=12,
                                   n_motor_neurons=max(1, size // 256), n_small_chat=4)
            name = f"cord_{i:03d}.ome.tif"
        else:
            ph = make_muscle_section(seed=100 + i, shape=(size, size))
            name = f"muscle_{i:03d}.ome.tif"
        save_stack(ph.stack, folder / name)


def run_once(folder: Path, n: int, workers: int, work: Path) -> dict:
    from spinalquant.batch import discover_inputs, run_batch
    from spinalquant.config import Config

    items = discover_inputs([folder])[:n]
    out = work / f"out_w{workers}_n{n}"
    shutil.rmtree(out, ignore_errors=True)
    load0 = os.getloadavg()[0]
    stamps: list[float] = []
    with PeakSampler() as mem:
        t = time.perf_counter()
        rep = run_batch(items, out, Config(), workers=workers, force=True,
                        on_result=lambda *_: stamps.append(time.perf_counter()))
        elapsed = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    # steady state: images finished per second between the first and last result
    # (leaves out cluster start-up, imports and the final merge/report)
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else float("nan")
    return {"n_images": len(items), "workers": workers, "elapsed_s": round(elapsed, 2),
            "images_per_s": round(len(items) / elapsed, 3),
            "steady_images_per_s": round(steady, 3),
            "first_result_s": round(stamps[0] - t, 2) if stamps else None, "n_ok": rep.n_ok,
            "n_failed": rep.n_failed, "peak_rss_mb": round(mem.peak / 2**20, 1),
            "loadavg_1min_before": round(load0, 2)}


def part_ab(work: Path, *, n: int, size: int, mem_sizes: list[int]) -> dict:
    folder = work / "phantoms"
    t = time.perf_counter()
    write_folder(folder, n, size)
    gen_s = time.perf_counter() - t
    serial = run_once(folder, n, 1, work)
    parallel = run_once(folder, n, 2, work)
    speedup = serial["elapsed_s"] / parallel["elapsed_s"]
    steady = parallel["steady_images_per_s"] / serial["steady_images_per_s"]
    print(f"\n(a) throughput: {n} phantoms of {size}² (half cord, half muscle; generated in {gen_s:.0f} s)")
    print(f"{'workers':>8} {'images':>7} {'time s':>8} {'img/s':>7} {'steady img/s':>13} "
          f"{'1st result s':>13} {'ok':>4} {'peak RSS MB':>12} {'load':>5}")
    for r in (serial, parallel):
        print(f"{r['workers']:>8} {r['n_images']:>7} {r['elapsed_s']:>8.1f} {r['images_per_s']:>7.2f} "
              f"{r['steady_images_per_s']:>13.2f} {r['first_result_s']:>13.1f} {r['n_ok']:>4} "
              f"{r['peak_rss_mb']:>12.0f} {r['loadavg_1min_before']:>5.1f}")
    print(f"speed-up workers=2 vs 1: end-to-end {speedup:.2f}x, steady state {steady:.2f}x "
          "(target >= 1.7x)")

    mem_runs = []
    for m in mem_sizes:
        mem_runs.append(parallel if m == n else run_once(folder, m, 2, work))
    print("\n(b) peak RSS of runner + Dask workers vs number of images (workers=2)")
    print(f"{'images':>7} {'time s':>8} {'peak RSS MB':>12}")
    for r in mem_runs:
        print(f"{r['n_images']:>7} {r['elapsed_s']:>8.1f} {r['peak_rss_mb']:>12.0f}")
    return {"image_size_px": size, "generate_s": round(gen_s, 1), "serial": serial,
            "parallel": parallel, "speedup": round(speedup, 2),
            "speedup_steady_state": round(steady, 2), "memory_vs_n": mem_runs}


# -------------------------------------------------------------- mosaic
def write_mosaic(path: Path, *, reps: int, n_z: int, size: int) -> dict:
    """An OME-TIFF mosaic of a cord phantom mirrored ``reps`` x ``reps`` times, tile by tile."""
    import tifffile

    from spinalquant.synthetic import make_cord_section

    ph = make_cord_section(seed=11, shape=(size, size), n_z=n_z, n_gfp_cells=60,
                           n_motor_neurons=12)
    st = ph.stack
    data = np.asarray(st.data)
    c_n = data.shape[0]
    big = size * reps
    # mirrored repeats keep the seams continuous
    iy = np.arange(big) % (2 * size)
    iy = np.where(iy < size, iy, 2 * size - 1 - iy)
    tile = 512

    def tiles():
        for c in range(c_n):
            for z in range(n_z):
                page = data[c, z][np.ix_(iy, iy)]
                for y in range(0, big, tile):
                    for x in range(0, big, tile):
                        yield page[y:y + tile, x:x + tile]

    _, py, px = st.pixel_size_um
    meta = {"axes": "CZYX", "Channel": {"Name": list(st.channel_names)},
            "PhysicalSizeX": px, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": py,
            "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": st.pixel_size_um[0] or 1.0,
            "PhysicalSizeZUnit": "µm"}
    shape = (c_n, n_z, big, big)
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        tw.write(tiles(), shape=shape, dtype=data.dtype, tile=(tile, tile), metadata=meta,
                 resolution=(1 / px, 1 / py), resolutionunit="MICROMETER")
    return {"shape_czyx": list(shape), "dtype": str(data.dtype), "file_bytes": path.stat().st_size,
            "pixel_size_um": px}


_CHILD = r"""
import json, sys, time, threading, os
path, tile_um, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
from spinalquant.io import load
from spinalquant.tiling import analyze_tiled
peak = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        with open('/proc/self/statm') as fh:
            peak[0] = max(peak[0], int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE'))
        stop.wait(0.1)
th = threading.Thread(target=sample, daemon=True); th.start()
t0 = time.perf_counter()
st = load(path, dask_threshold_bytes=64 * 2**20)
t1 = time.perf_counter()
res = analyze_tiled(st, tile_um=tile_um)
t2 = time.perf_counter()
stop.set(); th.join()
hwm = 0
for line in open('/proc/self/status'):
    if line.startswith('VmHWM'):
        hwm = int(line.split()[1]) * 1024
summary = {k: v for k, v in res.summary.items() if not isinstance(v, float) or v == v}
json.dump({"load_s": t1 - t0, "analyze_s": t2 - t1, "peak_rss_sampled": peak[0], "vm_hwm": hwm,
           "lazy": not hasattr(st.data, "flags"), "summary": summary,
           "provenance": res.provenance,
           "counts": {k: len(v) for k, v in res.tables.items()}}, open(out, "w"), default=str)
"""


def part_c(work: Path, *, reps: int, n_z: int, size: int, tile_um: float) -> dict:
    free = shutil.disk_usage(work).free
    path = work / "mosaic.ome.tif"
    t = time.perf_counter()
    info = write_mosaic(path, reps=reps, n_z=n_z, size=size)
    write_s = time.perf_counter() - t
    budget = info["file_bytes"] // 4
    out = work / "mosaic_result.json"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(tile_um), str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit("mosaic analysis failed")
    res = json.loads(out.read_text())
    path.unlink()
    peak = max(res["peak_rss_sampled"], res["vm_hwm"])
    gb = info["file_bytes"] / 1e9
    print(f"\n(c) mosaic {info['shape_czyx']} {info['dtype']} = {gb:.2f} GB on disk "
          f"(written in {write_s:.0f} s; {free / 1e9:.0f} GB were free)")
    print(f"{'tiles':>6} {'tile µm':>8} {'load s':>7} {'analyse s':>10} {'peak RSS MB':>12} "
          f"{'budget MB':>10} {'within':>7}")
    print(f"{res['provenance']['tiling']['n_tiles']:>6} {tile_um:>8.0f} {res['load_s']:>7.1f} "
          f"{res['analyze_s']:>10.1f} {peak / 2**20:>12.0f} {budget / 2**20:>10.0f} "
          f"{peak <= budget!s:>7}")
    print("counts:", res["counts"])
    return {**info, "write_s": round(write_s, 1), "tile_um": tile_um, "budget_bytes": budget,
            "peak_rss_bytes": peak, "within_budget": peak <= budget, "wall_s": round(wall, 1),
            "child": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", default=str(RESULTS / "batch.json"))
    ap.add_argument("--size", type=int, default=1024,
                    help="side of the phantom images in pixels (a typical confocal frame: 1024)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sq-bench-batch-", dir=args.workdir))
    doc: dict = {"platform": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "machine": platform.machine()}, "quick": args.quick}
    try:
        if "a" in args.parts or "b" in args.parts:
            n = 8 if args.quick else 40
            mem = [4, 8] if args.quick else [10, 20, 40]
            doc["batch"] = part_ab(work, n=n, size=384 if args.quick else args.size, mem_sizes=mem)
        if "c" in args.parts:
            if args.quick:
                doc["mosaic"] = part_c(work, reps=2, n_z=3, size=512, tile_um=200.0)
            else:
                doc["mosaic"] = part_c(work, reps=4, n_z=20, size=1024, tile_um=700.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    if args.quick and out == RESULTS / "batch.json":
        out = RESULTS / "batch_quick.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep the parts not re-run this time
        try:
            doc = {**json.loads(out.read_text()), **doc}
        except ValueError:
            pass
    out.write_text(json.dumps(doc, indent=2, default=str))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
