"""`spinalquant run` end to end on real files: contract, failures, resume, Dask."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from spinalquant import Stack
from spinalquant.batch import (
    SUMMARY_COLUMNS,
    discover_inputs,
    file_hash,
    run_batch,
)
from spinalquant.cli import main
from spinalquant.config import Config
from spinalquant.io import save_stack
from spinalquant.pipeline import TABLE_COLUMNS
from spinalquant.synthetic import make_cord_section, make_muscle_section

SMALL = (320, 320)


def _write_study(folder: Path, *, n_cord: int = 2, muscle: bool = True) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n_cord):
        ph = make_cord_section(seed=10 + i, shape=SMALL, n_gfp_cells=8, n_motor_neurons=2,
                               n_small_chat=3, n_granules=3)
        sub = folder / ("animal_1" if i % 2 == 0 else "animal_2")
        sub.mkdir(exist_ok=True)
        name = f"cord_{i}.ome.tif"
        save_stack(ph.stack, sub / name, format="ome")
        names.append(f"{sub.name}/{name}")
    if muscle:
        ph = make_muscle_section(seed=3, shape=(400, 400), pixel_size_um=0.8)
        save_stack(ph.stack, folder / "ta.ome.tif", format="ome")
        names.append("ta.ome.tif")
    return names


def _read(out: Path) -> dict[str, pd.DataFrame]:
    tables = {"summary": pd.read_csv(out / "summary.csv")}
    for k in TABLE_COLUMNS:
        tables[k] = pd.read_csv(out / "objects" / f"{k}.csv")
    return tables


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    names = _write_study(root / "imgs")
    return root / "imgs", names


@pytest.fixture(scope="module")
def serial_run(study, tmp_path_factory):
    imgs, names = study
    out = tmp_path_factory.mktemp("out") / "serial"
    code = main(["run", str(imgs), "--out", str(out), "--workers", "1", "--quiet"])
    return out, code, names


def test_contract_files_and_columns(serial_run):
    out, code, names = serial_run
    assert code == 0
    t = _read(out)
    s = t["summary"]
    assert list(s.columns[: len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    assert sorted(s["image"]) == sorted(names)
    assert (s["status"] == "ok").all()
    cord = s[s["section"] == "cord"]
    muscle = s[s["section"] == "muscle"]
    assert len(cord) == 2 and len(muscle) == 1
    assert cord["n_gfp_cells"].notna().all() and cord["n_motor_neurons"].notna().all()
    assert muscle["n_fibers"].iloc[0] > 10
    assert muscle["n_gfp_cells"].isna().all()  # figures that don't apply stay empty
    for kind, cols in TABLE_COLUMNS.items():
        assert list(t[kind].columns[: len(cols) + 1]) == ["image", *cols]
    assert set(t["fibers"]["image"]) == {"ta.ome.tif"}
    # pct is numerator / denominator
    r = cord.iloc[0]
    if r["n_gfp_cells"] > 0:
        assert r["pct_gfp_gfap"] == pytest.approx(100 * r["n_gfp_gfap_cells"] / r["n_gfp_cells"])
    for n in names:
        stem = n.replace(".ome.tif", "")
        assert (out / "labels" / f"{stem}.ome.tif").is_file()
        assert (out / "qc" / f"{stem}.png").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["schema_version"] == 1
    assert set(run["images"]) == set(names)
    for n in names:
        assert run["images"][n]["status"] == "ok"
        assert len(run["images"][n]["input_hash"]) == 64
    assert run["parameters"]["motor_neurons"]["min_area_um2"] == 300
    assert (out / "report.html").is_file()


def test_rerun_skips_unchanged_and_redoes_changed(study, serial_run, tmp_path):
    imgs, _ = study
    out = tmp_path / "out"
    shutil.copytree(serial_run[0], out)
    before = _read(out)
    reps = run_batch(discover_inputs([imgs]), out, Config())
    assert {o.status for o in reps.outcomes} == {"skipped"}
    after = _read(out)
    for k in before:
        pd.testing.assert_frame_equal(before[k], after[k])
    # changed parameters: everything is redone
    cfg = Config.from_dict({"motor_neurons": {"min_area_um2": 310}})
    reps = run_batch(discover_inputs([imgs]), out, cfg)
    assert {o.status for o in reps.outcomes} == {"ok"}


def test_bad_files_fail_alone(study, tmp_path):
    imgs, names = study
    work = tmp_path / "imgs"
    shutil.copytree(imgs, work)
    (work / "empty.tif").write_bytes(b"")
    (work / "notes.tif").write_text("this is a text file", encoding="utf-8")
    good = work / "ta.ome.tif"
    (work / "truncated.ome.tif").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    # a cord image without any calibration
    arr = np.random.default_rng(0).integers(1, 200, (64, 64), dtype=np.uint16)
    tifffile.imwrite(work / "nocal.tif", arr)
    # channels named nothing spinalquant knows
    noise = np.random.default_rng(1).integers(1, 200, (1, 1, 64, 64), dtype=np.uint16)
    st = Stack(noise, ("Cy5",), (None, 0.5, 0.5))
    save_stack(st, work / "unknown_marker.ome.tif", format="ome")
    # all zeros
    z = Stack(np.zeros((1, 1, 64, 64), np.uint16), ("EGFP",), (None, 0.5, 0.5))
    save_stack(z, work / "zeros.ome.tif", format="ome")
    # non-ASCII name
    shutil.copy(good, work / "muscle_ñé_µ.ome.tif")
    out = tmp_path / "out"
    code = main(["run", str(work), "--out", str(out), "--workers", "1", "--quiet"])
    assert code == 1
    s = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index("image")
    failed = {
        "empty.tif": "empty",
        "notes.tif": "",
        "truncated.ome.tif": "",
        "nocal.tif": "pixel size",
        "unknown_marker.ome.tif": "Cy5",
        "zeros.ome.tif": "zero",
    }
    for name, needle in failed.items():
        assert s.loc[name, "status"] == "failed", name
        assert len(s.loc[name, "error"]) > 15, name
        assert needle.lower() in s.loc[name, "error"].lower(), (name, s.loc[name, "error"])
    for n in [*names, "muscle_ñé_µ.ome.tif"]:
        assert s.loc[n, "status"] == "ok", (n, s.loc[n, "error"])
    # the failure did not take the good images' objects with it
    fib = pd.read_csv(out / "objects" / "fibers.csv")
    assert set(fib["image"]) == {"ta.ome.tif", "muscle_ñé_µ.ome.tif"}
    # with a pixel size for uncalibrated files the run gets further on that one
    code = main(["run", str(work / "nocal.tif"), "--out", str(tmp_path / "o2"), "--pixel-size", "0.5",
                 "--quiet"])
    s2 = pd.read_csv(tmp_path / "o2" / "summary.csv", keep_default_na=False)
    assert "pixel size" not in s2.loc[0, "error"].lower()


def test_unwritable_output_is_clear(study, tmp_path, capsys):
    imgs, _ = study
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["run", str(imgs), "--out", str(blocker / "out"), "--quiet"])
    assert code == 2
    assert "cannot write" in capsys.readouterr().err


def test_existing_results_survive_a_failing_rerun(serial_run, study, tmp_path):
    imgs, _ = study
    out = tmp_path / "out"
    shutil.copytree(serial_run[0], out)
    before = _read(out)
    # the file is replaced by garbage: its old rows are replaced by a failure row,
    # every other image keeps its results
    work = tmp_path / "imgs"
    shutil.copytree(imgs, work)
    (work / "ta.ome.tif").write_bytes(b"garbage")
    code = main(["run", str(work), "--out", str(out), "--quiet"])
    assert code == 1
    after = _read(out)
    keep = before["gfp_cells"]
    pd.testing.assert_frame_equal(keep, after["gfp_cells"])
    s = after["summary"].set_index("image")
    assert s.loc["ta.ome.tif", "status"] == "failed"


def test_dask_local_cluster_matches_serial(study, serial_run, tmp_path):
    imgs, _ = study
    out = tmp_path / "dask"
    code = main(["run", str(imgs), "--out", str(out), "--workers", "2", "--quiet"])
    assert code == 0
    a, b = _read(serial_run[0]), _read(out)
    for k in a:
        cols = [c for c in a[k].columns if c != "pixel_size_um"]
        pd.testing.assert_frame_equal(a[k][cols], b[k][cols])


def test_sigkill_halfway_then_resume_equals_uninterrupted(tmp_path, serial_run):
    imgs = tmp_path / "imgs"
    _write_study(imgs, n_cord=4, muscle=True)
    ref = tmp_path / "ref"
    assert main(["run", str(imgs), "--out", str(ref), "--workers", "1", "--quiet"]) == 0
    out = tmp_path / "killed"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spinalquant.cli", "run", str(imgs), "--out", str(out),
         "--workers", "1", "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    parts = out / ".parts"
    deadline = time.time() + 120
    while time.time() < deadline:
        done = [p for p in parts.glob("*") if p.is_dir() and not p.name.startswith(".")] if parts.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = [json.loads((p / "done.json").read_text()) for p in parts.glob("*")
                if (p / "done.json").is_file()]
    assert len(finished) >= 2, "the run was killed before two images were complete"
    assert {d["status"] for d in finished} == {"ok"}, finished
    assert main(["run", str(imgs), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    a, b = _read(ref), _read(out)
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])
    run = json.loads((out / "run.json").read_text())
    assert sum(v.get("skipped_unchanged", False) for v in run["images"].values()) >= 2


def test_hash_is_content_based(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"1234")
    b = tmp_path / "b.bin"
    b.write_bytes(b"1234")
    assert file_hash(a) == file_hash(b)


def test_existing_scheduler_gets_the_same_tasks(study, serial_run, tmp_path):
    from dask.distributed import LocalCluster

    imgs, _ = study
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        out = tmp_path / "sched"
        code = main(["run", str(imgs), "--out", str(out), "--scheduler", cluster.scheduler_address, "--quiet"])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["scheduler"].startswith("tcp://")
    a, b = _read(serial_run[0]), _read(out)
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])


def test_dry_run_lists_without_writing(study, tmp_path, capsys):
    imgs, names = study
    out = tmp_path / "dry"
    assert main(["run", str(imgs), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert all(n in printed for n in names)
    assert not out.exists()


def test_parquet_tables_match_csv(serial_run):
    pytest.importorskip("pyarrow")
    out = serial_run[0]
    for k in ("gfp_cells", "fibers"):
        a = pd.read_csv(out / "objects" / f"{k}.csv")
        b = pd.read_parquet(out / "objects" / f"{k}.parquet")
        assert len(a) == len(b) and list(a.columns) == list(b.columns)


def test_full_disk_leaves_no_half_written_files(study, tmp_path):
    """A file-size limit makes every large write fail (like a full disk)."""
    imgs, _ = study
    out = tmp_path / "full"
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "from spinalquant.cli import main\n"
        f"sys.exit(main(['run', {str(imgs)!r}, '--out', {str(out)!r}, '--workers', '1', '--quiet']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode in (1, 2), r.stderr
    assert "Traceback" not in r.stderr
    # nothing that looks complete is half-written: every table present parses
    for f in [out / "summary.csv", *(out / "objects").glob("*.csv")] if out.exists() else []:
        if f.exists():
            pd.read_csv(f)
    leftovers = list(out.rglob("*.tmp")) if out.exists() else []
    assert not leftovers, leftovers
    assert "disk is full" in r.stderr


def test_images_over_the_memory_budget_are_tiled(tmp_path):
    ph = make_cord_section(seed=21, shape=(512, 512), n_gfp_cells=12, n_motor_neurons=3,
                           n_small_chat=4, channel_names=("EGFP", "GFAP", "ChAT"))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    save_stack(ph.stack, imgs / "big.ome.tif", format="ome")
    whole = tmp_path / "whole"
    assert main(["run", str(imgs), "--out", str(whole), "-j", "1", "-q"]) == 0
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[image]\nmemory_budget_mb = 1\ntile_um = 120\n", encoding="utf-8")
    tiled = tmp_path / "tiled"
    assert main(["run", str(imgs), "--out", str(tiled), "-j", "1", "-q", "--config", str(cfg)]) == 0
    done = json.loads(next((tiled / ".parts").glob("*/done.json")).read_text())
    assert done["tiled"] is True
    # run.json says how it was tiled and which image-wide values every tile used
    entry = json.loads((tiled / "run.json").read_text())["images"]["big.ome.tif"]
    assert entry["tiling"]["n_tiles"] >= 4
    assert entry["tiling"]["image_wide"]["gfp_threshold"] > 0
    assert "tiling" not in json.loads((whole / "run.json").read_text())["images"]["big.ome.tif"]
    a = pd.read_csv(whole / "summary.csv").iloc[0]
    b = pd.read_csv(tiled / "summary.csv").iloc[0]
    # exact tiled-vs-whole agreement is tests/test_tiling.py's job (larger tiles);
    # here 4 tiles of 120 µm on a 256 µm image: the plumbing, and counts close
    assert a["n_gfp_cells"] == b["n_gfp_cells"]
    assert a["n_gfp_gfap_cells"] == b["n_gfp_gfap_cells"]  # one bleed-through estimate
    assert abs(a["n_motor_neurons"] - b["n_motor_neurons"]) <= 1
    assert (tiled / "qc" / "big.png").is_file() and (tiled / "labels" / "big.ome.tif").is_file()


def test_report_with_cord_images_with_and_without_gfap(tmp_path):
    """A run mixing cord images with and without a GFAP channel still gets its report."""
    from spinalquant.report import write_report

    summary = pd.DataFrame({
        "image": ["with_gfap.tif", "gfp_only.tif"], "status": ["ok", "ok"], "error": ["", ""],
        "section": ["cord", "cord"], "n_gfp_cells": [12, 7], "n_gfp_gfap_cells": [9, np.nan],
        "pct_gfp_gfap": [75.0, np.nan], "n_motor_neurons": [3, 2], "n_astrocytes": [5, np.nan],
    })
    summary.to_csv(tmp_path / "summary.csv", index=False)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "with_gfap.tif" in page and "gfp_only.tif" in page
