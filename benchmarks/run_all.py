"""Side-by-side benchmark: spinalquant vs ImageJ, CellProfiler and scikit-image baselines.

One command generates the inputs (cord and muscle phantoms over seeds and SNR
levels, real images with ground truth), exports every channel plane as a
calibrated ImageJ TIFF, runs every tool on the same files in its own process
(wall time and peak RSS via ``/usr/bin/time -v``), scores every output the same
way, measures spinalquant's time/memory scaling with image size, and writes
``benchmarks/results/benchmarks.json`` and ``benchmarks/results/SUMMARY.md``.

    python benchmarks/run_all.py --quick        # small subset, < 3 min once inputs are cached
    python benchmarks/run_all.py                # full run
    python benchmarks/run_all.py --tune         # re-tune the peers on the pilot image

Peers are set up by ``benchmarks/peers/setup_peers.sh``; a missing peer is
reported and skipped. Nothing here is a unit test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage as ndi
from skimage import filters

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RESULTS = HERE / "results"
DATA = HERE.parents[1] / "shared" / "data"
CP_VENV = Path(os.environ.get("CP_VENV", "/work/peers/cp39"))
IJ_JAR = Path("/usr/share/java/ij.jar")
TIME = shutil.which("time") and "/usr/bin/time"

CORD_PX, MUSCLE_PX, DSB_PX = 0.5, 0.65, 1.5
PILOT_SEED = 100  # tuning image, never scored
#: physical limits shared by every tool (µm, µm²)
LIMITS = {
    "gfp_cells": {"sigma_um": 1.0, "min_area_um2": 30.0, "max_area_um2": 2000.0, "split_um": 5.0},
    "motor_neurons": {"sigma_um": 2.0, "min_area_um2": 300.0, "max_area_um2": 5000.0, "split_um": 10.0},
    "puncta": {"radius_um": 0.4, "sigma_um": 0.25},
    "fibers": {"min_area_um2": 100.0, "max_area_um2": 20000.0, "split_um": 10.0, "sigma_um": 1.0},
    "fibers_he": {"min_area_um2": 100.0, "max_area_um2": 20000.0, "split_um": 10.0, "sigma_um": 1.0},
}
PUNCTA_MATCH_UM = 1.0
PERISOMATIC_UM = 2.0
MYOSAT_REF = {"n_fibers": 92, "min_feret_mean_um": 36.71}
#: Coloc 2 expected values for mandersA vs A..I (from the Java tests, see data/coloc2/README.md)
COLOC2 = {
    "pearson": [1.00, .72, .44, .16, -.12, .22, .30, .48, .23],
    "m1": [1, .75, .5, .25, 0, .25, .25, .25, .083],
    "m2": [1, .75, .5, .25, 0, 1 / 3, .5, 1, .75],
}
TOOLS = ("spinalquant", "imagej", "cellprofiler", "skimage_otsu_ws", "skimage_voronoi_otsu")


# ===================================================================== inputs
def write_plane(path: Path, arr: np.ndarray, px: float) -> None:
    """A plane (Y, X) or RGB (Y, X, 3) as a calibrated ImageJ TIFF (unit micron)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"photometric": "rgb"} if arr.ndim == 3 else {}
    tifffile.imwrite(path, arr, imagej=True, resolution=(1 / px, 1 / px),
                     metadata={"unit": "micron"}, **kw)


def case_specs(quick: bool, pilot: bool = False) -> list[dict]:
    if pilot:
        return [{"group": "cord", "seed": PILOT_SEED, "snr": 8.0, "shape": (768, 768)}]
    if quick:
        return [
            {"group": "cord", "seed": 1, "snr": 8.0, "shape": (512, 512)},
            {"group": "muscle", "seed": 1, "snr": 8.0, "shape": (768, 768)},
            {"group": "dsb"}, {"group": "myosat"},
        ]
    specs = [{"group": "cord", "seed": s, "snr": n, "shape": (768, 768)}
             for s in (1, 2, 3) for n in (4.0, 8.0, 16.0)]
    specs += [{"group": "muscle", "seed": s, "snr": n, "shape": (1024, 1024)}
              for s in (1, 2) for n in (4.0, 8.0, 16.0)]
    specs += [{"group": "he", "seed": s, "shape": (1024, 1024)} for s in (1, 2)]
    specs += [{"group": "dsb"}, {"group": "myosat"}, {"group": "coloc2"}]
    return specs


def _case_name(spec: dict) -> str:
    g = spec["group"]
    if "seed" not in spec:
        return g
    snr = f"_snr{spec['snr']:g}" if "snr" in spec else ""
    return f"{g}_s{spec['seed']}{snr}_{spec['shape'][0]}"


def make_case(spec: dict, root: Path) -> list[dict]:
    """Write one case's planes and truth (cached); returns case records."""
    from spinalquant.synthetic import make_cord_section, make_muscle_section

    g, name = spec["group"], _case_name(spec)
    d = root / "inputs" / g
    meta = d / f"{name}__case.json"
    if meta.exists():
        return json.loads(meta.read_text())
    d.mkdir(parents=True, exist_ok=True)
    cases = []
    if g == "cord":
        ph = make_cord_section(seed=spec["seed"], snr=spec["snr"], shape=spec["shape"],
                               pixel_size_um=CORD_PX)
        keys = {"EGFP": "gfp", "GFAP": "gfap", "ChAT": "chat", "Synaptophysin": "synapse"}
        files = {}
        for i, ch in enumerate(ph.stack.channel_names):
            if ch in keys:
                files[keys[ch]] = str(d / f"{name}__{keys[ch]}.tif")
                write_plane(Path(files[keys[ch]]), np.asarray(ph.stack.data[i]).max(axis=0), CORD_PX)
        t = ph.truth
        np.savez_compressed(
            d / f"{name}__truth.npz", gfp_cells=ph.labels["gfp_cells"],
            motor_neurons=ph.labels["motor_neurons"],
            puncta=t["puncta"][["y_um", "x_um"]].to_numpy(float),
            gfap_positive=t["gfp_cells"]["gfap_positive"].to_numpy(bool),
            n_puncta=t["motor_neurons"]["n_puncta"].to_numpy(np.int64))
        cases.append({"name": name, "group": g, "px": CORD_PX, "files": files, "snr": spec["snr"],
                      "seed": spec["seed"], "truth": str(d / f"{name}__truth.npz")})
    elif g in ("muscle", "he"):
        stain = "he" if g == "he" else "laminin"
        kw = {"snr": spec["snr"]} if "snr" in spec else {}
        ph = make_muscle_section(seed=spec["seed"], shape=spec["shape"], pixel_size_um=MUSCLE_PX,
                                 stain=stain, **kw)
        if stain == "he":
            plane = np.moveaxis(np.asarray(ph.stack.data[:, 0]), 0, -1)
            files = {"he": str(d / f"{name}__he.tif")}
            write_plane(Path(files["he"]), plane, MUSCLE_PX)
        else:
            files = {"border": str(d / f"{name}__border.tif")}
            write_plane(Path(files["border"]), np.asarray(ph.stack.data[0, 0]), MUSCLE_PX)
        fib = ph.truth["fibers"]
        lab = ph.labels["fibers"].copy()
        edge = fib.loc[fib["touches_border"].astype(bool), "label"].to_numpy()
        lab[np.isin(lab, edge)] = 0
        np.savez_compressed(d / f"{name}__truth.npz", fibers=lab,
                            min_feret_um=fib.loc[~fib["touches_border"].astype(bool),
                                                 "min_feret_um"].to_numpy(float))
        cases.append({"name": name, "group": g, "px": MUSCLE_PX, "files": files,
                      "snr": spec.get("snr"), "seed": spec["seed"],
                      "truth": str(d / f"{name}__truth.npz")})
    elif g == "dsb":
        src = DATA / "stardist_dsb2018"
        img = tifffile.imread(src / "tests_img2d.tif")
        files = {"gfp": str(d / "dsb__gfp.tif")}
        write_plane(Path(files["gfp"]), img, DSB_PX)
        np.savez_compressed(d / "dsb__truth.npz", gfp_cells=tifffile.imread(src / "tests_mask2d.tif"))
        cases.append({"name": "dsb", "group": g, "px": DSB_PX, "files": files,
                      "truth": str(d / "dsb__truth.npz")})
    elif g == "myosat":
        src = DATA / "muscle_myosat" / "SAMPLE_MUSCLE_IMAGE_01.tif"
        with tifffile.TiffFile(src) as tif:
            img = tif.asarray()
            num, den = tif.pages[0].tags["XResolution"].value
        px = den / num
        files = {"border": str(d / "myosat__border.tif")}
        write_plane(Path(files["border"]), img, px)
        cases.append({"name": "myosat", "group": g, "px": px, "files": files, "truth": None})
    elif g == "coloc2":
        src = DATA / "coloc2"
        a = tifffile.imread(src / "mandersA.tiff")
        for letter in "ABCDEFGHI":
            b = tifffile.imread(src / f"manders{letter}.tiff")
            n = f"coloc_A{letter}"
            files = {"a": str(d / f"{n}__a.tif"), "b": str(d / f"{n}__b.tif")}
            write_plane(Path(files["a"]), a, 1.0)
            write_plane(Path(files["b"]), b, 1.0)
            cases.append({"name": n, "group": g, "px": 1.0, "files": files, "truth": None,
                          "index": "ABCDEFGHI".index(letter)})
    meta.write_text(json.dumps(cases))
    return cases


# ====================================================================== runners
def timed(cmd: list[str], *, timeout: float = 3600, env=None, cwd=None) -> dict:
    """Run a command under /usr/bin/time -v: wall seconds, peak RSS (MB) of the process tree."""
    full = [TIME, "-v", *cmd] if TIME else cmd
    t0 = time.perf_counter()
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if p.returncode != 0:
        err = p.stderr.split("\tCommand being timed")[0]
        tail = "\n".join((p.stdout + err).splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({p.returncode}):\n{tail}")
    return {"wall_s": wall, "peak_rss_mb": int(m.group(1)) / 1024 if m else None,
            "stdout": p.stdout, "stderr": p.stderr}


def _job(cases: list[dict], out: Path, **extra) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    job = {"out": str(out), "limits": LIMITS, **extra,
           "items": [{"name": c["name"], "files": c["files"]} for c in cases]}
    path = out / "job.json"
    path.write_text(json.dumps(job))
    return path


def run_python_tool(tool: str, cases: list[dict], out: Path) -> dict:
    if tool == "spinalquant":
        cmd = [sys.executable, str(PEERS / "sq_runner.py"), str(_job(cases, out))]
    else:
        method = "otsu_ws" if tool == "skimage_otsu_ws" else "voronoi_otsu"
        k = json.loads((PEERS / "imagej" / "params.json").read_text()).get("skimage_log_k", 3.0)
        cmd = [sys.executable, str(PEERS / "skimage_baseline.py"),
               str(_job(cases, out, method=method, log_k=k))]
    r = timed(cmd)
    times = json.loads((out / "times.json").read_text())
    outputs = {}
    for c in cases:
        z = np.load(out / f"{c['name']}.npz")
        outputs[c["name"]] = {k: z[k] for k in z.files}
    return {**r, "compute_s": times, "outputs": outputs}


def _ij(macro: str, arg: str) -> dict:
    cmd = ["xvfb-run", "-a", "java", "-Xmx4g", "-jar", str(IJ_JAR), "-batch",
           str(PEERS / "imagej" / macro), arg]
    return timed(cmd, timeout=1800)


def run_imagej(cases: list[dict], out: Path, params: dict) -> dict:
    """One ImageJ process per object kind over the whole group (as a lab's batch macro)."""
    out.mkdir(parents=True, exist_ok=True)
    kinds = {"gfp": ("gfp_cells", "bright"), "chat": ("motor_neurons", "bright"),
             "border": ("fibers", "fibers"), "he": ("fibers_he", "he")}
    walls, rss, compute = 0.0, 0.0, {c["name"]: 0.0 for c in cases}
    outputs = {c["name"]: {} for c in cases}
    for ch in sorted({k for c in cases for k in c["files"]}):
        if ch not in kinds and ch != "synapse":
            continue
        sub = out / ch
        sub.mkdir(exist_ok=True)
        lst = sub / "list.txt"
        lst.write_text("".join(f"{c['name']}\t{c['files'][ch]}\n" for c in cases))
        if ch == "synapse":
            lim = LIMITS["puncta"]
            r = _ij("puncta.ijm", f"{lst}|{sub}|{lim['sigma_um']}|{params['puncta_prominence']}")
        else:
            kind, mode = kinds[ch]
            lim = LIMITS[kind]
            r = _ij("cells.ijm", f"{lst}|{sub}|{mode}|{lim['sigma_um']}|{lim['min_area_um2']}|"
                    f"{lim['max_area_um2']}")
        walls += r["wall_s"]
        rss = max(rss, r["peak_rss_mb"] or 0)
        for line in (sub / "times.tsv").read_text().splitlines():
            n, ms = line.split("\t")
            compute[n] += float(ms) / 1000
        for c in cases:
            if ch == "synapse":
                df = pd.read_csv(sub / f"{c['name']}_maxima.csv")
                outputs[c["name"]]["puncta"] = df[["Y", "X"]].to_numpy(float) * c["px"]
            else:
                lab = tifffile.imread(sub / f"{c['name']}_labels.tif")
                outputs[c["name"]]["fibers" if ch in ("border", "he") else kinds[ch][0]] = \
                    np.asarray(lab).astype(np.int32)
    return {"wall_s": walls, "peak_rss_mb": rss, "compute_s": compute, "outputs": outputs}


def cp_pipeline(kind: str, px: float, root: Path, params: Path | None = None) -> Path:
    """The CellProfiler pipeline for a group (built from cellprofiler/params.json)."""
    d = root / "cppipe"
    tag = f"{px:g}" if kind != "coloc" else ""
    path = d / f"{kind}_{tag or '1'}.cppipe"
    params = params or PEERS / "cellprofiler" / "params.json"
    if not path.exists() or path.stat().st_mtime < params.stat().st_mtime:
        subprocess.run([str(CP_VENV / "bin" / "python"), str(PEERS / "cellprofiler" / "make_pipelines.py"),
                        str(params), str(d), f"{kind}:{tag}" if tag else kind],
                       check=True, capture_output=True)
    return path


def run_cellprofiler(cases: list[dict], out: Path, root: Path, params: Path | None = None) -> dict:
    g = cases[0]["group"]
    kind = {"cord": "cord", "dsb": "cells", "muscle": "muscle", "myosat": "muscle", "he": "he",
            "coloc2": "coloc"}[g]
    pipe = cp_pipeline(kind, cases[0]["px"], root, params)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = sorted(p for c in cases for p in c["files"].values())
    lst = out / "filelist.txt"
    lst.write_text("\n".join(files) + "\n")
    env = {**os.environ, "JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64"}
    r = timed([str(CP_VENV / "bin" / "cellprofiler"), "-c", "-r", "-p", str(pipe),
               "--file-list", str(lst), "-o", str(out)], timeout=3600, env=env)
    img = pd.read_csv(out / "Image.csv")
    first = {"cord": "GFP", "cells": "GFP", "muscle": "Border", "he": "HE", "coloc": "A"}[kind]
    by_num = {int(n): Path(f).name.split("__")[0] for n, f in zip(img["ImageNumber"], img[f"FileName_{first}"], strict=True)}
    exec_cols = [c for c in img.columns if c.startswith("ExecutionTime_")]
    compute = {by_num[int(n)]: float(s) for n, s in zip(img["ImageNumber"], img[exec_cols].sum(axis=1), strict=True)}
    outputs: dict[str, dict] = {n: {} for n in by_num.values()}
    px = {c["name"]: c["px"] for c in cases}
    for _, row in img.iterrows():
        name = by_num[int(row["ImageNumber"])]
        o = outputs[name]
        if kind == "coloc":
            o["coloc"] = np.array([row.get("Correlation_Correlation_A_B", np.nan),
                                   row.get("Correlation_Manders_A_B", np.nan),
                                   row.get("Correlation_Manders_B_A", np.nan)], float)
        if kind == "cord":
            o["coloc"] = np.array([row.get("Correlation_Correlation_GFP_GFAP", np.nan),
                                   row.get("Correlation_Manders_GFP_GFAP", np.nan),
                                   row.get("Correlation_Manders_GFAP_GFP", np.nan)], float)
    for f in out.glob("*_cplabels.tiff"):
        name, _, rest = f.name.partition("__")
        key = {"gfp": "gfp_cells", "chat": "motor_neurons", "border": "fibers", "he": "fibers"}[
            rest.split("_cplabels")[0].split(".")[0]]
        lab = np.asarray(tifffile.imread(f))
        outputs[name][key] = (lab[..., 0] if lab.ndim == 3 else lab).astype(np.int32)
    if kind == "cord":
        pun = pd.read_csv(out / "Puncta.csv")
        for n, grp in pun.groupby("ImageNumber"):
            name = by_num[int(n)]
            outputs[name]["puncta"] = grp[["Location_Center_Y", "Location_Center_X"]].to_numpy(float) * px[name]
        for name in outputs:
            outputs[name].setdefault("puncta", np.zeros((0, 2)))
        par = pd.read_csv(out / "NeuronsPlus2um.csv")
        for n, grp in par.groupby("ImageNumber"):
            outputs[by_num[int(n)]]["n_puncta"] = grp["Children_Puncta_Count"].to_numpy(np.int64)
    return {**{k: r[k] for k in ("wall_s", "peak_rss_mb")}, "compute_s": compute, "outputs": outputs}


# =================================================================== scoring
def _areas(lab: np.ndarray) -> np.ndarray:
    a = np.bincount(lab.ravel())[1:]
    return a[a > 0]


def _near_counts(labels: np.ndarray, pts_um: np.ndarray, px: float, dist_um: float) -> np.ndarray:
    """Puncta per object: points within ``dist_um`` of an object (on or outside it)."""
    ids = np.unique(labels[labels > 0])
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    d, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    py = np.clip(np.rint(pts_um[:, 0] / px).astype(int), 0, labels.shape[0] - 1)
    pxx = np.clip(np.rint(pts_um[:, 1] / px).astype(int), 0, labels.shape[1] - 1)
    ok = d[py, pxx] * px <= dist_um
    owner = labels[iy[py, pxx], ix[py, pxx]][ok]
    counts = np.bincount(owner, minlength=int(labels.max()) + 1)
    return counts[ids]


def _pct(pred: float, true: float) -> float:
    return float(100.0 * (pred - true) / true) if true else float("nan")


def score_labels(pred: np.ndarray, truth: np.ndarray, px: float) -> dict:
    from spinalquant.measure.matching import match_labels

    m = match_labels(pred, truth, iou=0.5)
    ap, at = _areas(pred), _areas(truth)
    return {"f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "n_pred": m["n_pred"], "n_true": m["n_true"],
            "count_err_pct": _pct(m["n_pred"], m["n_true"]),
            "area_err_pct": _pct(ap.mean() if len(ap) else 0.0, at.mean()) if len(at) else float("nan")}


def score_case(case: dict, out: dict, tool: str) -> dict[str, dict]:
    from spinalquant.measure.matching import match_points

    px = case["px"]
    res: dict[str, dict] = {}
    if case["group"] == "coloc2":
        if "coloc" in out:
            i = case["index"]
            r, m1, m2 = out["coloc"]
            res["colocalization"] = {"pearson_err": abs(r - COLOC2["pearson"][i]),
                                     "m1_err": abs(m1 - COLOC2["m1"][i]), "m2_err": abs(m2 - COLOC2["m2"][i])}
        return res
    if case["group"] == "myosat":
        if "fibers" in out:
            from spinalquant.measure.morphology import measure_fibers

            t = measure_fibers(out["fibers"], pixel_size_um=px, exclude_border=True)
            res["fibers"] = {"n_pred": len(t), "n_true": MYOSAT_REF["n_fibers"],
                             "count_err_pct": _pct(len(t), MYOSAT_REF["n_fibers"]),
                             "min_feret_err_pct": _pct(float(t["min_feret_um"].mean()) if len(t) else 0.0,
                                                       MYOSAT_REF["min_feret_mean_um"])}
        return res
    truth = np.load(case["truth"])
    for kind in ("gfp_cells", "motor_neurons", "fibers"):
        if kind in out and kind in truth.files:
            res[kind] = score_labels(out[kind], truth[kind], px)
    if "fibers" in res:
        from spinalquant.measure.morphology import measure_fibers

        t = measure_fibers(out["fibers"], pixel_size_um=px, exclude_border=True)
        res["fibers"]["min_feret_err_pct"] = _pct(float(t["min_feret_um"].mean()) if len(t) else 0.0,
                                                  float(truth["min_feret_um"].mean()))
    if "puncta" in out and "puncta" in truth.files:
        m = match_points(out["puncta"], truth["puncta"], max_dist=PUNCTA_MATCH_UM)
        res["puncta"] = {"f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
                         "n_pred": m["n_pred"], "n_true": m["n_true"],
                         "count_err_pct": _pct(m["n_pred"], m["n_true"])}
        if "motor_neurons" in out:
            n = out.get("n_puncta")
            if n is None:
                n = _near_counts(out["motor_neurons"], out["puncta"], px, PERISOMATIC_UM)
            res["puncta"]["per_neuron_err_pct"] = _pct(float(np.mean(n)) if len(n) else 0.0,
                                                       float(truth["n_puncta"].mean()))
    if "gfp_cells" in out and "gfap_positive" in truth.files:
        if "gfap_positive" in out:
            pos = np.asarray(out["gfap_positive"], bool)
        else:
            # peer rule (as a lab's ClassifyObjects / ImageJ Measure): mean GFAP in the cell
            # above the Otsu threshold of the GFAP plane
            gfap = tifffile.imread(case["files"]["gfap"]).astype(float)
            lab = out["gfp_cells"]
            ids = np.unique(lab[lab > 0])
            mean = ndi.mean(gfap, lab, ids) if len(ids) else np.zeros(0)
            pos = np.asarray(mean) > filters.threshold_otsu(gfap)
        pct = 100.0 * pos.mean() if len(pos) else 0.0
        res["gfp_cells"]["gfap_pct_err_pp"] = abs(pct - 100.0 * truth["gfap_positive"].mean())
    return res


# =================================================================== scaling
def run_scaling(root: Path, quick: bool, big_kind: str) -> list[dict]:
    from spinalquant.synthetic import make_cord_section, make_muscle_section

    sizes = [0.25, 1.0] if quick else [0.25, 1.0, 4.0, 16.0]
    kinds = ["gfp_cells"] if quick else ["gfp_cells", "motor_neurons", "puncta", "fibers"]
    d = root / "scale"
    d.mkdir(parents=True, exist_ok=True)
    src = {}
    cord = make_cord_section(seed=7, shape=(1024, 1024), pixel_size_um=CORD_PX)
    names = list(cord.stack.channel_names)
    for kind, ch in (("gfp_cells", "EGFP"), ("motor_neurons", "ChAT"), ("puncta", "Synaptophysin")):
        src[kind] = (np.asarray(cord.stack.data[names.index(ch)]).max(axis=0), CORD_PX)
    mus = make_muscle_section(seed=7, shape=(1024, 1024), pixel_size_um=MUSCLE_PX)
    src["fibers"] = (np.asarray(mus.stack.data[0, 0]), MUSCLE_PX)
    rows = []
    for kind in kinds:
        todo = sizes + ([64.0] if (kind == big_kind and not quick) else [])
        for mp in todo:
            side = round(np.sqrt(mp * 1e6))
            base, px = src[kind]
            reps = int(np.ceil(side / base.shape[0]))
            big = np.pad(base, [(0, base.shape[0] * (reps - 1))] * 2, mode="symmetric")[:side, :side]
            path = d / f"{kind}_{mp:g}MP.tif"
            write_plane(path, np.ascontiguousarray(big), px)
            del big
            try:
                r = timed([sys.executable, str(PEERS / "sq_runner.py"), "--scale", kind, str(path)],
                          timeout=3600)
                rec = json.loads(r["stdout"].strip().splitlines()[-1])
                rows.append({"kind": kind, "megapixels": mp, **rec, "process_wall_s": r["wall_s"]})
                print(f"  scaling {kind:14s} {mp:5g} MP: {rec['seconds']:8.2f} s, "
                      f"peak RSS {rec['peak_rss_mb']:8.0f} MB", flush=True)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rows.append({"kind": kind, "megapixels": mp, "error": str(exc)[-500:]})
                print(f"  scaling {kind} {mp} MP failed: {str(exc)[-300:]}", flush=True)
            path.unlink(missing_ok=True)
    return rows


def slopes(rows: list[dict]) -> dict:
    out = {}
    df = pd.DataFrame([r for r in rows if "seconds" in r])
    for kind, g in df.groupby("kind") if len(df) else []:
        g = g[g["megapixels"] >= 1.0] if (g["megapixels"] >= 1.0).sum() >= 2 else g
        if len(g) >= 2:
            lx = np.log(g["megapixels"])
            out[kind] = {"time_slope": float(np.polyfit(lx, np.log(g["seconds"]), 1)[0]),
                         "memory_slope": float(np.polyfit(lx, np.log(g["peak_rss_mb"] - g["input_rss_mb"]
                                                                     + g["input_mb"]), 1)[0])}
    return out


# ================================================================= machine
def machine() -> dict:
    def first(path, key):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip('"')
        except OSError:
            return None

    def cmd(*c):
        try:
            p = subprocess.run(c, capture_output=True, text=True, timeout=120)
            return (p.stdout + p.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return None

    import skimage

    import spinalquant

    cp = cmd(str(CP_VENV / "bin" / "pip"), "show", "cellprofiler")
    ij = cmd("dpkg-query", "-W", "-f=${Version}", "imagej")
    java = cmd("java", "-version")
    return {
        "cpu": first("/proc/cpuinfo", "model name"), "cores": os.cpu_count(),
        "ram_gb": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1),
        "os": first("/etc/os-release", "PRETTY_NAME="), "kernel": platform.release(),
        "python": platform.python_version(), "numpy": np.__version__, "scikit_image": skimage.__version__,
        "spinalquant": getattr(spinalquant, "__version__", "?"),
        "imagej": ij, "java": java.splitlines()[0] if java else None,
        "cellprofiler": (re.search(r"Version: (\S+)", cp or "") or [None, None])[1],
        "load_note": "2 shared cores; other jobs ran concurrently, so absolute times are noisy",
    }


# ================================================================= report
def _fmt(v, nd=2):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


# a peer "beats" spinalquant only by more than these margins (noise of the scores)
_MARGIN = {"f1": 0.005, "count_err_pct": 0.5, "area_err_pct": 0.5, "gfap_pct_err_pp": 0.5,
           "per_neuron_err_pct": 0.5, "min_feret_err_pct": 0.5, "pearson_err": 0.001,
           "m1_err": 0.001, "m2_err": 0.001}


def shortfalls(scores: list[dict], speed: list[dict]) -> list[str]:
    """Every score and speed figure where some peer does better than spinalquant.

    Accuracy: mean F1 (higher is better) and mean absolute errors (lower is
    better) per group and object kind, compared beyond ``_MARGIN``. Speed:
    groups where a peer needs less wall time or less compute per image.
    """
    out: list[str] = []
    df = pd.DataFrame(scores)
    if len(df):
        for (grp, kind), k in df.groupby(["group", "kind"]):
            ref = k[k["tool"] == "spinalquant"]
            if not len(ref):
                continue
            for m, margin in _MARGIN.items():
                if m not in k or not ref[m].notna().any():
                    continue
                agg = (lambda v: v.mean()) if m == "f1" else (lambda v: v.abs().mean())
                mine = float(agg(ref[m].dropna()))
                for tool, t in k[k["tool"] != "spinalquant"].groupby("tool"):
                    if not t[m].notna().any():
                        continue
                    theirs = float(agg(t[m].dropna()))
                    better = theirs > mine + margin if m == "f1" else theirs < mine - margin
                    if better:
                        out.append(f"{grp}/{kind}: {tool} {m} {theirs:.3g} vs spinalquant {mine:.3g}")
    sp = pd.DataFrame(speed)
    if len(sp):
        for grp, t in sp.groupby("group"):
            ref = t[t["tool"] == "spinalquant"]
            if not len(ref):
                continue
            for col, what in (("wall_per_img_s", "wall time"), ("compute_per_img_s", "compute")):
                mine = float(ref[col].iloc[0])
                for _, r in t[t["tool"] != "spinalquant"].iterrows():
                    if np.isfinite(r[col]) and r[col] < mine:
                        out.append(f"{grp}: {r['tool']} faster ({what} {r[col]:.2f} s vs "
                                   f"{mine:.2f} s per image, ratio {r[col] / mine:.2f})")
    return out


def summarise(scores: list[dict], speed: list[dict], scaling: list[dict], info: dict,
              failures: list[str]) -> str:
    df = pd.DataFrame(scores)
    lines = ["# spinalquant vs the tools labs use today", "",
             "Generated by `python benchmarks/run_all.py` — do not edit by hand. "
             "See benchmarks/README.md for the protocol.", "",
             "## Machine", ""]
    lines += [f"* **{k}**: {v}" for k, v in info.items()]
    metrics = ["f1", "count_err_pct", "area_err_pct", "gfap_pct_err_pp", "per_neuron_err_pct",
               "min_feret_err_pct"]
    head = {"f1": "F1", "count_err_pct": "|count err| %", "area_err_pct": "|area err| %",
            "gfap_pct_err_pp": "|%GFAP+ err| pp", "per_neuron_err_pct": "|puncta/neuron err| %",
            "min_feret_err_pct": "|min Feret err| %"}
    if len(df):
        syn = df[~df["group"].isin(["dsb", "myosat", "coloc2"])]
        lines += ["", "## Accuracy on phantoms (mean over cases; errors are mean absolute values)", ""]
        for kind in ("gfp_cells", "motor_neurons", "puncta", "fibers"):
            k = syn[syn["kind"] == kind]
            for grp, kk in k.groupby("group"):
                cols = [m for m in metrics if m in kk and kk[m].notna().any()]
                lines += [f"### {kind} ({grp}, {kk['case'].nunique()} images)", "",
                          "| tool | " + " | ".join(head[c] for c in cols) + " |",
                          "|---|" + "---|" * len(cols)]
                for tool in TOOLS:
                    t = kk[kk["tool"] == tool]
                    if len(t):
                        vals = [t[c].mean() if c == "f1" else t[c].abs().mean() for c in cols]
                        lines.append(f"| {tool} | " + " | ".join(_fmt(float(v)) for v in vals) + " |")
                lines.append("")
        if "snr" in syn and syn["snr"].notna().any():
            lines += ["### F1 by SNR (phantoms)", "", "| kind | tool | " + " | ".join(
                f"SNR {s:g}" for s in sorted(syn["snr"].dropna().unique())) + " |",
                "|---|---|" + "---|" * syn["snr"].dropna().nunique()]
            for (kind, tool), t in syn.dropna(subset=["snr", "f1"]).groupby(["kind", "tool"]):
                by = t.groupby("snr")["f1"].mean()
                lines.append(f"| {kind} | {tool} | " + " | ".join(_fmt(float(by.get(s, np.nan)))
                             for s in sorted(syn["snr"].dropna().unique())) + " |")
            lines.append("")
        real = df[df["group"].isin(["dsb", "myosat"])]
        if len(real):
            lines += ["## Accuracy on real images", "",
                      "| image | kind | tool | n pred / n true | F1 | count err % | area err % | min Feret err % |",
                      "|---|---|---|---|---|---|---|---|"]
            for _, r in real.sort_values(["group", "tool"]).iterrows():
                lines.append(f"| {r['group']} | {r['kind']} | {r['tool']} | {int(r['n_pred'])} / {int(r['n_true'])} | "
                             f"{_fmt(r.get('f1'))} | {_fmt(r.get('count_err_pct'))} | "
                             f"{_fmt(r.get('area_err_pct'))} | {_fmt(r.get('min_feret_err_pct'))} |")
            lines.append("")
        co = df[df["group"] == "coloc2"]
        if len(co):
            lines += ["## Colocalization (Coloc 2 / Manders 1993 test images, mandersA vs A–I)", "",
                      "| tool | max |Pearson err| | max |M1 err| | max |M2 err| |", "|---|---|---|---|"]
            for tool, t in co.groupby("tool"):
                lines.append(f"| {tool} | {_fmt(t['pearson_err'].max(), 3)} | {_fmt(t['m1_err'].max(), 3)} | "
                             f"{_fmt(t['m2_err'].max(), 3)} |")
            lines.append("")
    sp = pd.DataFrame(speed)
    if len(sp):
        lines += ["## Speed and memory (per image; ratio = tool / spinalquant)", "",
                  "Process wall time includes interpreter/JVM start-up and file I/O, divided by the "
                  "number of images in the group; compute is the tool's own per-image timer "
                  "(CellProfiler: sum of ExecutionTime_*; ImageJ: getTime() around the macro body). "
                  "Peak RSS is of the whole process tree (`/usr/bin/time -v`).", "",
                  "| group | tool | images | wall/img s | compute/img s | peak RSS MB | wall ratio | "
                  "compute ratio | RSS ratio |", "|---|---|---|---|---|---|---|---|---|"]
        for g, t in sp.groupby("group"):
            ref = t[t["tool"] == "spinalquant"]
            rw = float(ref["wall_per_img_s"].iloc[0]) if len(ref) else np.nan
            rc = float(ref["compute_per_img_s"].iloc[0]) if len(ref) else np.nan
            rr = float(ref["peak_rss_mb"].iloc[0]) if len(ref) else np.nan
            for _, r in t.iterrows():
                lines.append(f"| {g} | {r['tool']} | {r['n_images']} | {_fmt(r['wall_per_img_s'])} | "
                             f"{_fmt(r['compute_per_img_s'])} | {_fmt(r['peak_rss_mb'], 0)} | "
                             f"{_fmt(r['wall_per_img_s'] / rw)} | {_fmt(r['compute_per_img_s'] / rc)} | "
                             f"{_fmt(r['peak_rss_mb'] / rr)} |")
        lines.append("")
    if scaling:
        sl = slopes(scaling)
        lines += ["## spinalquant scaling with image size", "",
                  "Each point a fresh process on a mirrored tiling of a 1024² phantom plane; "
                  "time of the segmentation call, peak RSS of the process.", "",
                  "| kind | MP | seconds | peak RSS MB | s per MP |", "|---|---|---|---|---|"]
        for r in scaling:
            if "seconds" in r:
                lines.append(f"| {r['kind']} | {r['megapixels']:g} | {_fmt(r['seconds'])} | "
                             f"{_fmt(r['peak_rss_mb'], 0)} | {_fmt(r['seconds'] / r['megapixels'])} |")
            else:
                lines.append(f"| {r['kind']} | {r['megapixels']:g} | failed | | |")
        lines += ["", "log-log slopes (1 = linear; fitted on points ≥ 1 MP; memory = peak RSS above the "
                  "loaded input + the input):", ""]
        lines += [f"* {k}: time slope {v['time_slope']:.2f}, memory slope {v['memory_slope']:.2f}"
                  for k, v in sl.items()]
        lines.append("")
    short = shortfalls(scores, speed)
    lines += ["## Where spinalquant is not the best", "",
              "Computed from the tables above (a peer better by more than the score noise: "
              "F1 0.005, errors 0.5 points). Everything not listed here spinalquant does at "
              "least as well as every peer.", ""]
    lines += [f"* {x}" for x in short] if short else ["* nothing"]
    lines.append("")
    if failures:
        lines += ["## Not run / failed", ""] + [f"* {f}" for f in failures] + [""]
    return "\n".join(lines)


# =================================================================== tuning
def tune(root: Path) -> None:
    """Pilot-image tuning of the peers' free parameters, as a lab would do once.

    Only the parameters a lab would try on a pilot image: ImageJ's Find Maxima
    prominence, the k of the LoG baseline, CellProfiler's puncta threshold
    method / correction factor. Best F1 on the pilot (seed 100, SNR 8, never scored).
    """
    from spinalquant.measure.matching import match_points

    sys.path.insert(0, str(PEERS))
    from skimage_baseline import log_spots

    case = make_case(case_specs(False, pilot=True)[0], root)[0]
    truth = np.load(case["truth"])

    def f1(pts):
        return match_points(pts, truth["puncta"], max_dist=PUNCTA_MATCH_UM)["f1"]

    log = {}
    syn_case = {**case, "files": {"synapse": case["files"]["synapse"]}}
    ij_params = json.loads((PEERS / "imagej" / "params.json").read_text())
    trials = {}
    for prom in (50, 100, 200, 400, 800, 1600, 3200):
        r = run_imagej([syn_case], root / "tune" / "ij", {"puncta_prominence": prom})
        trials[prom] = f1(r["outputs"][case["name"]]["puncta"])
    ij_params["puncta_prominence"] = max(trials, key=trials.get)
    log["imagej_prominence"] = trials
    syn, _ = tifffile.imread(case["files"]["synapse"]), None
    trials = {k: f1(log_spots(syn, pixel_size_um=case["px"], k=k)) for k in (3, 4, 5, 6, 8, 10)}
    ij_params["skimage_log_k"] = max(trials, key=trials.get)
    log["skimage_log_k"] = trials
    (PEERS / "imagej" / "params.json").write_text(json.dumps(ij_params, indent=2) + "\n")
    cp_path = PEERS / "cellprofiler" / "params.json"
    cp = json.loads(cp_path.read_text())
    trials, best = {}, None
    for method, corr in (("Otsu", 1.0), ("Otsu", 2.0), ("Robust Background", 2.0),
                         ("Robust Background", 4.0), ("Robust Background", 8.0)):
        cand = json.loads(json.dumps(cp))
        cand["puncta"].update({"method": method, "correction": corr})
        tmp = root / "tune" / "cp_params.json"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cand))
        r = run_cellprofiler([case], root / "tune" / "cp", root / "tune", params=tmp)
        score = f1(r["outputs"][case["name"]].get("puncta", np.zeros((0, 2))))
        trials[f"{method} x{corr:g}"] = score
        if best is None or score > best[0]:
            best = (score, cand)
    log["cellprofiler_puncta"] = trials
    cp_path.write_text(json.dumps(best[1], indent=2) + "\n")
    (RESULTS / "tuning.json").write_text(json.dumps(log, indent=1) + "\n")
    print(json.dumps(log, indent=1))


# ===================================================================== main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subset (< 3 min with cached inputs)")
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/work/peers/bench_work"))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--scale-64", default="gfp_cells", help="the one kind also run at 64 MP (full run)")
    ap.add_argument("--tune", action="store_true", help="re-tune peer parameters on the pilot image")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--resummarise", action="store_true",
                    help="rewrite SUMMARY(.md/_quick.md) from the saved benchmarks(_quick).json; run nothing")
    a = ap.parse_args(argv)
    if a.resummarise:
        suffix = "_quick" if a.quick else ""
        res = json.loads((Path(a.out) / f"benchmarks{suffix}.json").read_text())
        text = summarise(res["scores"], res["speed"], res["scaling"], res["machine"], res["failures"])
        (Path(a.out) / f"SUMMARY{suffix}.md").write_text(text)
        print(text)
        return 0
    root = Path(a.workdir)
    root.mkdir(parents=True, exist_ok=True)
    if a.tune:
        tune(root)
        return 0
    t_start = time.perf_counter()
    tools = [t for t in a.tools.split(",") if t]
    failures: list[str] = []
    if "imagej" in tools and not (IJ_JAR.exists() and shutil.which("xvfb-run")):
        failures.append("imagej: /usr/share/java/ij.jar or xvfb-run missing (run peers/setup_peers.sh)")
        tools.remove("imagej")
    if "cellprofiler" in tools and not (CP_VENV / "bin" / "cellprofiler").exists():
        failures.append(f"cellprofiler: no {CP_VENV}/bin/cellprofiler (run peers/setup_peers.sh)")
        tools.remove("cellprofiler")
    print("inputs …", flush=True)
    cases: list[dict] = []
    for spec in case_specs(a.quick):
        if spec["group"] in ("dsb", "myosat", "coloc2") and not DATA.exists():
            failures.append(f"{spec['group']}: {DATA} absent")
            continue
        cases += make_case(spec, root)
    groups: dict[str, list[dict]] = {}
    for c in cases:
        groups.setdefault(c["group"], []).append(c)
    ij_params = json.loads((PEERS / "imagej" / "params.json").read_text())
    scores, speed = [], []
    for g, gc in groups.items():
        for tool in tools:
            if g == "coloc2" and tool not in ("spinalquant", "cellprofiler"):
                continue
            out = root / "runs" / g / tool
            print(f"{g:8s} {tool:22s} …", end=" ", flush=True)
            try:
                if g == "coloc2" and tool == "spinalquant":
                    r = run_coloc_sq(gc)
                elif tool == "imagej":
                    r = run_imagej(gc, out, ij_params)
                elif tool == "cellprofiler":
                    r = run_cellprofiler(gc, out, root)
                else:
                    r = run_python_tool(tool, gc, out)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as exc:
                failures.append(f"{tool} on {g}: {type(exc).__name__}: {str(exc)[-400:]}")
                print("FAILED", flush=True)
                continue
            n = len(gc)
            comp = [r["compute_s"].get(c["name"], np.nan) for c in gc]
            speed.append({"group": g, "tool": tool, "n_images": n, "wall_per_img_s": r["wall_s"] / n,
                          "compute_per_img_s": float(np.nanmean(comp)), "peak_rss_mb": r["peak_rss_mb"]})
            print(f"{r['wall_s']:7.1f} s, {r['peak_rss_mb'] or 0:6.0f} MB", flush=True)
            for c in gc:
                for kind, s in score_case(c, r["outputs"].get(c["name"], {}), tool).items():
                    scores.append({"group": g, "case": c["name"], "snr": c.get("snr"), "tool": tool,
                                   "kind": kind, **s})
    scaling = [] if a.no_scaling else (print("scaling …", flush=True) or run_scaling(root, a.quick, a.scale_64))
    info = machine()
    info["run"] = "quick" if a.quick else "full"
    info["total_minutes"] = round((time.perf_counter() - t_start) / 60, 1)
    res = {"machine": info, "limits": LIMITS, "scores": scores, "speed": speed, "scaling": scaling,
           "scaling_slopes": slopes(scaling), "failures": failures,
           "peer_params": {"imagej": ij_params,
                           "cellprofiler": json.loads((PEERS / "cellprofiler" / "params.json").read_text())}}
    outdir = Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if a.quick else ""
    (outdir / f"benchmarks{suffix}.json").write_text(json.dumps(res, indent=1, default=_json))
    text = summarise(scores, speed, scaling, info, failures)
    (outdir / f"SUMMARY{suffix}.md").write_text(text)
    print(text)
    return 0


def run_coloc_sq(cases: list[dict]) -> dict:
    """spinalquant's colocalization on the Coloc 2 pairs (in-process: tiny images)."""
    from spinalquant.measure.colocalization import colocalization

    t0 = time.perf_counter()
    outputs, compute = {}, {}

    for c in cases:
        t1 = time.perf_counter()
        a = tifffile.imread(c["files"]["a"])
        b = tifffile.imread(c["files"]["b"])
        r = colocalization(a, b, costes=False, pvalue=False)
        outputs[c["name"]] = {"coloc": np.array([r["pearson"], r["manders_m1"], r["manders_m2"]])}
        compute[c["name"]] = time.perf_counter() - t1
    # in-process: this RSS is the harness's own peak, not comparable to the peers'
    return {"wall_s": time.perf_counter() - t0, "compute_s": compute, "outputs": outputs,
            "peak_rss_mb": float("nan")}


def _json(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
