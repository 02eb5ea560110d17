"""Detection limit of synaptic puncta: completeness against brightness and pixel size.

How bright must a punctum be for spinalquant to count it, at a given pixel size,
and what does that cost in false detections? And how does the naive multi-scale
``skimage.feature.blob_log`` do at the *same* false-detection rate?

Fields of 100 x 100 µm are simulated independently of
:mod:`spinalquant.synthetic` (so the figures do not depend on the project's own
phantom): a max projection of ``--n-z`` planes 1.5 µm apart with Poisson
background (30 photons) and Gaussian read noise (3 photons rms); isolated
puncta (at least 4 µm apart) of Gaussian sigma 0.2 µm, pixel-integrated, at a
random sub-pixel position and a random depth within half a plane step of a
plane (axial sigma 0.8 µm). A punctum's **brightness** is its peak (centred on
a pixel, in focus) over the standard deviation of one plane's background noise.

For each pixel size and brightness the table gives the recall (found within
1 µm) of spinalquant's :func:`~spinalquant.segment.puncta.detect_puncta`
(defaults) and of ``blob_log`` whose threshold is set so that it makes as many
detections as spinalquant on spot-free fields of the same noise (equal false
rate; at least one). ``fp/1000um2`` is the false-detection density on those
spot-free fields. The brightness at which recall reaches 50 % and 90 %
(interpolated) is the detection limit.

Results go to ``benchmarks/results/puncta_limit.json``. Usage::

    python benchmarks/bench_puncta_limit.py            # 3 pixel sizes, 4 fields each
    python benchmarks/bench_puncta_limit.py --quick    # 2 fields each

Never part of the unit suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import erf

RESULTS = Path(__file__).resolve().parent / "results" / "puncta_limit.json"
BACKGROUND = 30.0  # photons
READ_NOISE = 3.0  # photons rms
NOISE_SD = float(np.sqrt(BACKGROUND + READ_NOISE**2))
SPOT_SIGMA_UM = 0.2
AXIAL_SIGMA_UM = 0.8
Z_STEP_UM = 1.5
EXTENT_UM = 100.0
BRIGHTNESS = (3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)


def _pixel_weights(centre_um: np.ndarray, n: int, ps: float, sigma_um: float, half: int):
    """Fraction of a 1-D Gaussian in each of ``2 half + 1`` pixels around each centre."""
    base = np.rint(centre_um / ps).astype(int)
    idx = base[:, None] + np.arange(-half, half + 1)[None, :]
    s2 = np.sqrt(2.0) * sigma_um
    lo = ((idx - 0.5) * ps - centre_um[:, None]) / s2
    hi = ((idx + 0.5) * ps - centre_um[:, None]) / s2
    w = 0.5 * (erf(hi) - erf(lo))
    return np.clip(idx, 0, n - 1), np.where((idx >= 0) & (idx < n), w, 0.0)


def render(shape, ps: float, yx_um: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Pixel-integrated Gaussian spots; ``peak`` is the height of a pixel-centred spot."""
    out = np.zeros(shape)
    if len(yx_um) == 0:
        return out
    half = int(np.ceil(4 * SPOT_SIGMA_UM / ps)) + 1
    iy, wy = _pixel_weights(yx_um[:, 0], shape[0], ps, SPOT_SIGMA_UM, half)
    ix, wx = _pixel_weights(yx_um[:, 1], shape[1], ps, SPOT_SIGMA_UM, half)
    centred = erf(0.5 * ps / (np.sqrt(2.0) * SPOT_SIGMA_UM)) ** 2
    vals = (peak / centred)[:, None, None] * wy[:, :, None] * wx[:, None, :]
    np.add.at(out, (np.broadcast_to(iy[:, :, None], vals.shape),
                    np.broadcast_to(ix[:, None, :], vals.shape)), vals)
    return out


def field(rng: np.random.Generator, ps: float, brightness: float | None, n_z: int):
    """A max-projected field and its spot positions (µm); no spots when brightness is None."""
    n = int(round(EXTENT_UM / ps))
    shape = (n, n)
    pts = np.zeros((0, 2))
    if brightness is not None:
        cand = rng.uniform(2.0, EXTENT_UM - 2.0, (600, 2))
        keep: list[np.ndarray] = []
        for p in cand:
            if all(np.hypot(*(p - q)) >= 4.0 for q in keep):
                keep.append(p)
        pts = np.array(keep)
    plane_of = rng.integers(0, n_z, len(pts))
    dz = rng.uniform(-0.5, 0.5, len(pts)) * Z_STEP_UM
    stack = np.empty((n_z, *shape), np.float32)
    for z in range(n_z):
        depth = (z - plane_of) * Z_STEP_UM - dz
        peak = (brightness or 0.0) * NOISE_SD * np.exp(-depth**2 / (2 * AXIAL_SIGMA_UM**2))
        near = peak > 0.01 * NOISE_SD
        lam = BACKGROUND + render(shape, ps, pts[near], peak[near])
        stack[z] = rng.poisson(lam) + rng.normal(0.0, READ_NOISE, shape)
    img = np.clip(np.rint(stack.max(axis=0) + 100.0), 0, 65535).astype(np.uint16)
    return img, pts


def recall(found_um: np.ndarray, truth_um: np.ndarray, tol: float = 1.0) -> int:
    """Truth points matched one-to-one within ``tol`` µm."""
    if len(found_um) == 0 or len(truth_um) == 0:
        return 0
    d = np.hypot(*(found_um[:, None, :] - truth_um[None, :, :]).transpose(2, 0, 1))
    cost = np.where(d <= tol, d, 1e6)
    r, c = linear_sum_assignment(cost)
    return int(np.sum(cost[r, c] <= tol))


def spinalquant_points(img: np.ndarray, ps: float) -> np.ndarray:
    from spinalquant.segment.puncta import detect_puncta

    return detect_puncta(img, pixel_size_um=ps)[["y_um", "x_um"]].to_numpy()


def blob_log_scores(img: np.ndarray, ps: float) -> tuple[np.ndarray, np.ndarray]:
    """``blob_log`` maxima at a low threshold: positions (µm) and their LoG response."""
    from skimage.feature import blob_log

    f = img.astype(np.float32)
    med = float(np.median(f))
    f = (f - med) / max(1.4826 * float(np.median(np.abs(f - med))), 1e-6)  # noise units
    lo = max(0.5, 0.1 / ps)
    hi = max(lo * 1.5, 0.6 / ps)
    blobs = blob_log(f, min_sigma=lo, max_sigma=hi, num_sigma=5, threshold=0.3, overlap=0.5)
    if len(blobs) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    # blob_log does not return the response; recompute it at the blob's scale
    from scipy import ndimage as ndi

    score = np.empty(len(blobs))
    for s in np.unique(blobs[:, 2]):
        r = -ndi.gaussian_laplace(f, s) * s**2
        sel = blobs[:, 2] == s
        score[sel] = r[blobs[sel, 0].astype(int), blobs[sel, 1].astype(int)]
    return blobs[:, :2] * ps, score


def run(pixel_sizes, n_fields: int, n_z: int, seed: int) -> list[dict]:
    rows = []
    for ps in pixel_sizes:
        rng = np.random.default_rng([seed, int(round(ps * 1000))])
        # false detections on spot-free fields, and blob_log's equal-rate threshold
        n_false, blob_null = 0, []
        for _ in range(n_fields):
            img, _ = field(rng, ps, None, n_z)
            n_false += len(spinalquant_points(img, ps))
            blob_null.append(blob_log_scores(img, ps)[1])
        null = np.sort(np.concatenate(blob_null))[::-1]
        k = max(n_false, 1)
        blob_thr = float(null[k - 1]) if len(null) >= k else -np.inf
        area = n_fields * EXTENT_UM**2
        for b in BRIGHTNESS:
            n_true = hit_sq = hit_bl = 0
            t0 = time.perf_counter()
            for _ in range(n_fields):
                img, pts = field(rng, ps, b, n_z)
                n_true += len(pts)
                hit_sq += recall(spinalquant_points(img, ps), pts)
                bl_pts, bl_score = blob_log_scores(img, ps)
                hit_bl += recall(bl_pts[bl_score > blob_thr], pts)
            rows.append({
                "pixel_size_um": ps, "brightness": b, "n_spots": n_true,
                "recall_spinalquant": hit_sq / n_true, "recall_blob_log": hit_bl / n_true,
                "fp_per_1000um2": 1000.0 * n_false / area, "seconds": time.perf_counter() - t0,
            })
            r = rows[-1]
            print(f"  {ps:.1f} µm/px  brightness {b:4.1f}: recall {r['recall_spinalquant']:.3f} "
                  f"(blob_log {r['recall_blob_log']:.3f})", flush=True)
    return rows


def limits(rows: list[dict], key: str) -> dict:
    """Brightness at which recall reaches 50 % and 90 %, per pixel size (linear interpolation)."""
    out = {}
    for ps in sorted({r["pixel_size_um"] for r in rows}):
        sel = [r for r in rows if r["pixel_size_um"] == ps]
        b = np.array([r["brightness"] for r in sel])
        rec = np.maximum.accumulate(np.array([r[key] for r in sel]))
        out[str(ps)] = {f"b{int(q * 100)}": (float(np.interp(q, rec, b)) if rec[-1] >= q else None)
                        for q in (0.5, 0.9)}
    return out


def table(rows: list[dict]) -> str:
    lines = ["| µm/px | brightness | recall spinalquant | recall blob_log (same false rate) | "
             "false /1000 µm² |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['pixel_size_um']:.1f} | {r['brightness']:.0f} | "
                     f"{r['recall_spinalquant']:.3f} | {r['recall_blob_log']:.3f} | "
                     f"{r['fp_per_1000um2']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 fields per case instead of 4")
    ap.add_argument("--n-z", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    pixel_sizes = (0.3, 0.5, 0.7)
    n_fields = 2 if args.quick else 4
    rows = run(pixel_sizes, n_fields, args.n_z, args.seed)
    lim_sq, lim_bl = limits(rows, "recall_spinalquant"), limits(rows, "recall_blob_log")
    print()
    print(table(rows))
    print()
    print("| µm/px | brightness for 50 % / 90 % recall: spinalquant | blob_log |")
    print("|---|---|---|")

    def fmt(v):
        return "–" if v is None else f"{v:.1f}"

    for ps in lim_sq:
        print(f"| {ps} | {fmt(lim_sq[ps]['b50'])} / {fmt(lim_sq[ps]['b90'])} | "
              f"{fmt(lim_bl[ps]['b50'])} / {fmt(lim_bl[ps]['b90'])} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "puncta_limit", "n_fields": n_fields, "n_z": args.n_z, "seed": args.seed,
        "spot_sigma_um": SPOT_SIGMA_UM, "noise_sd_photons": NOISE_SD, "rows": rows,
        "limits": {"spinalquant": lim_sq, "blob_log": lim_bl},
        "platform": platform.platform(), "python": platform.python_version(),
    }, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
