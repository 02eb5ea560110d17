"""Speed and memory of the whole spinal-cord analysis against a read + blur baseline.

A 4-channel (GFP, GFAP, ChAT, Synaptophysin) uint16 stack of ``--size`` x
``--size`` pixels and ``--n-z`` planes is generated with
:func:`spinalquant.synthetic.make_cord_section` (0.5 µm pixels; 300 GFP+ cells
and 40 motor neurons per 2048² field, scaled with the area) and written as an
OME-TIFF into a temporary folder. Then, each in its own child process (so that
the peak resident memory, ``ru_maxrss``, belongs to that step alone):

* ``baseline``: read the stack (:func:`spinalquant.io.load`) and run one
  ``scipy.ndimage.gaussian_filter(sigma=1)`` over each (Z, Y, X) channel -- the
  least any analysis of the file has to do;
* ``analyze``: read the stack, then :func:`spinalquant.pipeline.analyze` on it,
  timed step by step through its ``progress`` callback.

Peak memory is the child's resident high-water mark (``VmHWM``; ``ru_maxrss``
elsewhere), the file's data included.

Modules are imported before the clocks start in both children (a batch run pays
imports once). The table shows the times, the ratio analyze / baseline, the peak
memory of each child and the per-step breakdown; the counts found are compared
with the phantom's truth. Results go to ``benchmarks/results/cord.json``.

Usage::

    python benchmarks/bench_cord.py                 # 2048 x 2048 x 10
    python benchmarks/bench_cord.py --size 1024 --n-z 5

Never part of the unit suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cord.json"
PIXEL_SIZE_UM = 0.5
CHANNELS = ("EGFP", "GFAP", "ChAT", "Synaptophysin")


# --------------------------------------------------------------- children
def _peak_mib() -> float:
    """Peak resident memory of this process (MiB).

    ``VmHWM`` where the kernel provides it: ``ru_maxrss`` survives ``exec`` on
    Linux, so a child started by a large parent would report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (bytes on macOS)
    return peak / (1024.0**2 if sys.platform == "darwin" else 1024.0)


def _child_baseline(path: str) -> dict:
    from scipy import ndimage as ndi

    from spinalquant.io import load

    t0 = time.perf_counter()
    stack = load(path)
    import numpy as np

    data = np.asarray(stack.data)
    t_load = time.perf_counter() - t0
    for c in range(data.shape[0]):
        ndi.gaussian_filter(data[c], sigma=1)
    total = time.perf_counter() - t0
    return {"seconds": total, "load_seconds": t_load, "peak_rss_mib": _peak_mib()}


def _child_analyze(path: str) -> dict:
    # import everything the analysis uses before timing
    import spinalquant.measure.colocalization
    import spinalquant.measure.synapses
    import spinalquant.segment.astrocytes
    import spinalquant.segment.gfp_cells
    import spinalquant.segment.motor_neurons
    import spinalquant.segment.puncta  # noqa: F401
    from spinalquant.io import load
    from spinalquant.pipeline import analyze

    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    stack = load(path)
    t_load = time.perf_counter() - t0
    marks.append(("projection + setup", time.perf_counter()))
    res = analyze(stack, progress=lambda msg: marks.append((msg, time.perf_counter())))
    t_end = time.perf_counter()
    steps = {}
    for (name, start), (_, stop) in zip(marks, [*marks[1:], ("end", t_end)], strict=True):
        steps[name] = stop - start
    s = res.summary
    return {
        "seconds": t_end - t0 - t_load,
        "load_seconds": t_load,
        "steps": steps,
        "peak_rss_mib": _peak_mib(),
        "found": {k: s.get(k) for k in ("n_gfp_cells", "n_astrocytes", "n_motor_neurons", "n_puncta",
                                         "puncta_per_motor_neuron")},
    }


# ----------------------------------------------------------------- parent
def _run_child(kind: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--n-z", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, path = args.child
        result = _child_baseline(path) if kind == "baseline" else _child_analyze(path)
        print(json.dumps(result))
        return result

    import numpy as np

    from spinalquant.io import save_stack
    from spinalquant.synthetic import make_cord_section

    scale = (args.size / 2048.0) ** 2
    t0 = time.perf_counter()
    ph = make_cord_section(
        seed=args.seed, shape=(args.size, args.size), pixel_size_um=PIXEL_SIZE_UM, n_z=args.n_z,
        n_gfp_cells=max(1, round(300 * scale)), n_motor_neurons=max(1, round(40 * scale)),
        channel_names=CHANNELS, dtype=np.uint16,
    )
    t_gen = time.perf_counter() - t0
    truth = {
        "n_gfp_cells": len(ph.truth["gfp_cells"]),
        "n_motor_neurons": len(ph.truth["motor_neurons"]),
        "n_puncta": len(ph.truth["puncta"]),
        "puncta_per_motor_neuron": float(ph.truth["motor_neurons"]["n_puncta"].mean()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cord.ome.tif"
        save_stack(ph.stack, path)
        del ph
        size_mib = path.stat().st_size / 2**20
        base = _run_child("baseline", path)
        full = _run_child("analyze", path)

    ratio = full["seconds"] / base["seconds"]
    result = {
        "shape_czyx": [len(CHANNELS), args.n_z, args.size, args.size],
        "pixel_size_um": PIXEL_SIZE_UM,
        "file_mib": round(size_mib, 1),
        "generate_seconds": round(t_gen, 2),
        "baseline": base,
        "analyze": full,
        "ratio_analyze_to_baseline": ratio,
        "target_ratio": 3.0,
        "truth": truth,
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "system": platform.system(), "cpus": _cpus()},
    }
    _print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwritten {args.out}")
    return result


def _cpus() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _print(r: dict) -> None:
    c, z, y, x = r["shape_czyx"]
    print(f"cord benchmark: {c} channels x {z} planes x {y} x {x} uint16 ({r['file_mib']} MiB OME-TIFF)")
    print(f"{'run':<34}{'seconds':>10}{'peak MiB':>10}")
    b, a = r["baseline"], r["analyze"]
    print(f"{'baseline (read + 1 Gaussian/ch)':<34}{b['seconds']:>10.2f}{b['peak_rss_mib']:>10.0f}")
    print(f"{'analyze (without read)':<34}{a['seconds']:>10.2f}{a['peak_rss_mib']:>10.0f}")
    flag = "OK" if r["ratio_analyze_to_baseline"] <= r["target_ratio"] else "above target"
    print(f"{'ratio analyze / baseline':<34}{r['ratio_analyze_to_baseline']:>10.2f}  "
          f"(target <= {r['target_ratio']:g}: {flag})")
    print("\nper step of analyze:")
    for name, sec in a["steps"].items():
        print(f"  {name:<32}{sec:>10.2f}")
    print("\nfound vs truth:")
    for k, v in r["truth"].items():
        f = a["found"].get(k)
        print(f"  {k:<32}{'-' if f is None else round(f, 2):>10}{round(v, 2):>10}")


if __name__ == "__main__":
    main()
