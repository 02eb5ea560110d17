"""Every scene of a multi-scene file is analysed as an image of its own.

Files are written here with tifffile (a multi-image OME-TIFF; a TIFF with a
thumbnail series) or are the real Leica file in ``shared/data``. Before, a batch
run analysed scene 0 only and said so in a note; now each scene is one row of
``summary.csv`` named ``file [scene name]`` (or ``file #index``), fails alone,
and is skipped alone when a re-run finds it done.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from spinalquant.batch import (
    InputImage,
    check_unique_names,
    discover_inputs,
    output_stem,
    part_key,
    run_batch,
    scene_image_names,
    split_scene,
)
from spinalquant.cli import main
from spinalquant.config import Config
from spinalquant.errors import ConfigError
from spinalquant.io import load
from spinalquant.io._load import image_scenes
from spinalquant.review import load_image_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIF = DATA / "lif_readlif" / "testdata_2channel_xz.lif"
needs_lif = pytest.mark.skipif(not LIF.is_file(), reason=f"{LIF} is absent (shared test data)")
FAST = Config.from_dict({"output": {"report": False}})


def _section(*, px: float, seed: int, n: int, shape=(2, 112, 112)) -> np.ndarray:
    """(2, Z, Y, X) uint16 EGFP/ChAT: Poisson background and ``n`` 12 µm discs in both channels."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    data = rng.poisson(20, (2, z, y, x)).astype(np.float64) * 8 + 100
    yy, xx = np.mgrid[0:y, 0:x]
    centres: list[np.ndarray] = []
    while len(centres) < n:  # apart, so each disc is one cell
        c = rng.uniform(16, min(y, x) - 16, 2)
        if all(np.hypot(*(c - o)) > 16 / px for o in centres):
            centres.append(c)
    for cy, cx in centres:
        data[:, :] += 1500 * (np.hypot(yy - cy, xx - cx) < 6 / px)
    return data.astype(np.uint16)


def _three_scenes(path: Path, names=("L4 left", "L4 right", "no scale")) -> list[int]:
    """A 3-image OME-TIFF; the last image has no pixel size. Returns the discs per image."""
    counts = [2, 4, 3]
    with tifffile.TiffWriter(path, ome=True) as tw:
        for i, (name, n) in enumerate(zip(names, counts, strict=True)):
            meta = {"axes": "CZYX", "Channel": {"Name": ["EGFP", "ChAT"]}}
            if name:
                meta["Name"] = name
            if i < 2:
                meta.update(PhysicalSizeX=1.0, PhysicalSizeY=1.0)
            tw.write(_section(px=1.0, seed=10 + i, n=n), photometric="minisblack", metadata=meta)
    return counts


# ------------------------------------------------------------------ naming
def test_scene_names_unique_readable_and_safe():
    assert scene_image_names("a/L4.lif", [(0, "Series001"), (1, "Series002")]) == [
        "a/L4.lif [Series001]", "a/L4.lif [Series002]"]
    # no names: the index load(path, scene=i) reads
    assert scene_image_names("t.ome.tif", [(0, ""), (2, "")]) == ["t.ome.tif #0", "t.ome.tif #2"]
    # a shared name gets the index too; a path separator in a name is not a folder
    names = scene_image_names("x.czi", [(0, "Pos"), (1, "Pos"), (2, "A/B:C")])
    assert names == ["x.czi [Pos] #0", "x.czi [Pos] #1", "x.czi [A_B:C]"]
    stems = [output_stem(n) for n in names]
    assert stems == ["x [Pos] #0", "x [Pos] #1", "x [A_B_C]"]
    # two names that differ only by unsafe characters would share a file: indexed
    assert scene_image_names("y.lif", [(0, "a:b"), (1, "a?b")]) == ["y.lif [a:b] #0", "y.lif [a?b] #1"]
    for n in names:
        key = part_key(n)
        assert all(c.isalnum() or c in "-_." for c in key)
    assert len({part_key(n) for n in names}) == 3
    # whole files keep their names, brackets in a file name included
    assert split_scene("sub/a [1].tif") == ("sub/a [1].tif", "")
    assert output_stem("sub/a [1].tif") == "sub/a [1]"
    assert split_scene("sub/L4.lif [S 3] #4") == ("sub/L4.lif", " [S 3] #4")
    check_unique_names([InputImage(Path("x.czi"), n, scene=i, n_scenes=3) for i, n in enumerate(names)])
    with pytest.raises(ConfigError, match="same"):
        check_unique_names([InputImage(Path("a.lif"), "a.lif [S1]", 0, 2),
                            InputImage(Path("a [S1].tif"), "a [S1].tif")])


def test_thumbnail_series_is_not_a_scene(tmp_path):
    f = tmp_path / "with_thumb.tif"
    img = _section(px=1.0, seed=1, n=3, shape=(1, 128, 128))[:, 0]
    with tifffile.TiffWriter(f) as tw:
        tw.write(img, photometric="minisblack", resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
        tw.write(img[0, ::4, ::4], photometric="minisblack")  # a thumbnail
    assert image_scenes(f) == [(0, "")]
    (item,) = discover_inputs([tmp_path])
    assert item == InputImage(f, "with_thumb.tif")


# ------------------------------------------------------------------- batch
def test_each_scene_one_row_failing_scene_alone_rerun_skips(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    counts = _three_scenes(src / "cord.ome.tif")
    single = src / "single.ome.tif"
    tifffile.imwrite(single, _section(px=1.0, seed=3, n=3), ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0,
                               "Channel": {"Name": ["EGFP", "ChAT"]}})
    items = discover_inputs([src])
    names = ["cord.ome.tif [L4 left]", "cord.ome.tif [L4 right]", "cord.ome.tif [no scale]",
             "single.ome.tif"]
    assert [i.image for i in items] == names
    assert [(i.scene, i.n_scenes) for i in items] == [(0, 3), (1, 3), (2, 3), (0, 1)]

    out = tmp_path / "out"
    code = main(["run", str(src), "--out", str(out), "--workers", "1", "--quiet",
                 "--config", str(_config(tmp_path))])
    err = capsys.readouterr().err
    assert code == 1  # one scene failed
    assert "4 image(s) (the scenes of 2 file(s))" in err and "[4/4]" in err
    s = pd.read_csv(out / "summary.csv")
    assert list(s["image"]) == names
    assert list(s["status"]) == ["ok", "ok", "failed", "ok"]
    assert "pixel size" in s.loc[2, "error"] and s.loc[2, "error"].startswith("cord.ome.tif [no scale]")
    # each scene measured from its own pixels: the discs written into it
    assert list(s["n_gfp_cells"][:2]) == counts[:2] and s.loc[3, "n_gfp_cells"] == 3
    cells = pd.read_csv(out / "objects" / "gfp_cells.csv")
    assert cells.groupby("image").size().to_dict() == {names[0]: 2, names[1]: 4, names[3]: 3}
    # pictures per scene, under safe names; the single file's as before
    for stem in ("cord [L4 left]", "cord [L4 right]", "single"):
        assert (out / "qc" / f"{stem}.png").is_file() and (out / "labels" / f"{stem}.ome.tif").is_file()
    assert not (out / "qc" / "cord [no scale].png").exists()
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert [run["images"][n].get("scene") for n in names] == [0, 1, 2, None]
    # no "only scene 0 was read" note: every scene was
    assert not any("images in the file" in note for v in run["images"].values()
                   for note in v.get("notes", []))
    # napari review reads a scene's results back under its name
    res = load_image_results(out, names[1])
    assert res.summary["n_gfp_cells"] == 4 and res.labels["gfp_cells"].max() == 4

    # re-run: every finished scene skipped, the failed one tried again, tables unchanged
    rep = run_batch(discover_inputs([src]), out, _cfg(tmp_path))
    assert [o.status for o in rep.outcomes] == ["skipped", "skipped", "failed", "skipped"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), s)
    # the file changed: all its scenes are redone, the other file is not
    _three_scenes(src / "cord.ome.tif", names=("L4 left", "L4 right", "no scale"))
    with tifffile.TiffFile(src / "cord.ome.tif") as tif:
        assert len(tif.series) == 3
    with open(src / "cord.ome.tif", "ab") as fh:
        fh.write(b"\0")  # same pixels, another file content
    rep = run_batch(discover_inputs([src]), out, _cfg(tmp_path))
    assert [o.status for o in rep.outcomes] == ["ok", "ok", "failed", "skipped"]


def _config(tmp_path: Path) -> Path:
    f = tmp_path / "fast.toml"
    f.write_text("[output]\nreport = false\n", encoding="utf-8")
    return f


def _cfg(tmp_path: Path) -> Config:
    from spinalquant.config import load_config

    return load_config(_config(tmp_path))


def test_unnamed_scenes_and_scene_sidecar_roi(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # a plain multi-series TIFF: no scene names, no channel names (mapped by index)
    with tifffile.TiffWriter(src / "t.tif") as tw:
        for i, n in enumerate((2, 4, 3)):
            cal = {"resolution": (1e4, 1e4), "resolutionunit": "CENTIMETER"} if i < 2 else {}
            tw.write(_section(px=1.0, seed=20 + i, n=n), photometric="minisblack",
                     metadata={"axes": "CZYX"}, **cal)
    # an ROI for scene 1 only, named after the scene's output stem; a file-wide one is not applied
    import roifile

    half = roifile.ImagejRoi.frompoints(np.array([[0, 0], [55, 0], [55, 111], [0, 111]], float))
    half.tofile(src / "t #1.roi")
    half.tofile(src / "t.roi")  # names no scene: which one would it outline?
    items = discover_inputs([src])
    assert [i.image for i in items] == ["t.tif #0", "t.tif #1", "t.tif #2"]
    out = tmp_path / "out"
    cfg = Config.from_dict({"output": {"report": False}, "channels": {"gfp": 0, "chat": 1}})
    rep = run_batch(items, out, cfg)
    assert [o.status for o in rep.outcomes] == ["ok", "ok", "failed"]
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    done = json.loads((out / ".parts" / part_key("t.tif #1") / "done.json").read_text())
    assert done["roi_files"] == ["t #1.roi"] and done["scene"] == 1
    s = pd.read_csv(out / "summary.csv")
    full = load(src / "t.tif", scene=1)
    area = full.shape[2] * full.shape[3] * 1.0
    assert s.loc[1, "roi_area_um2"] == pytest.approx(area / 2, rel=0.05)
    assert np.isnan(s.loc[0, "roi_area_um2"])  # no ROI: the whole scene
    assert "t.roi names the whole file" in " ".join(run["images"]["t.tif #0"]["notes"])
    # scene 1 has 4 discs spread over it: the outlined half holds some, not all
    assert s.loc[0, "n_gfp_cells"] == 2 and 0 < s.loc[1, "n_gfp_cells"] < 4
    assert (out / "qc" / "t #0.png").is_file()
    assert set(run["images"]) == set(s["image"])


def test_single_scene_file_names_unchanged(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "L4_s1.ome.tif"
    tifffile.imwrite(f, _section(px=1.0, seed=4, n=2), ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0,
                               "Channel": {"Name": ["EGFP", "ChAT"]}})
    (item,) = discover_inputs([tmp_path])
    assert item == InputImage(f, "sub/L4_s1.ome.tif") and item.scene == 0 and item.n_scenes == 1
    assert output_stem(item.image) == "sub/L4_s1"
    out = tmp_path / "out"
    run_batch([item], out, FAST)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert "scene" not in run["images"]["sub/L4_s1.ome.tif"]
    assert (out / "qc" / "sub" / "L4_s1.png").is_file()


@needs_lif
def test_real_lif_every_scene_is_an_image(tmp_path):
    items = discover_inputs([LIF])
    assert [i.image for i in items] == [f"{LIF.name} [xzt]", f"{LIF.name} [xzy]", f"{LIF.name} [xz]"]
    cfg = Config.from_dict({"output": {"report": False, "qc": False},
                            "channels": {"gfp": "Green", "chat": "Red"}})
    rep = run_batch(items, tmp_path / "out", cfg)
    by = {o.image: o for o in rep.outcomes}
    # the two XZ scans fail as XZ scans, alone; the XYZ volume stored as XZ frames is analysed
    for name in (f"{LIF.name} [xzt]", f"{LIF.name} [xz]"):
        assert by[name].status == "failed" and by[name].error.startswith(f"{name}: this is an XZ scan")
    assert by[f"{LIF.name} [xzy]"].status == "ok", by[f"{LIF.name} [xzy]"].error
    s = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(s) == 3
    # scene 1's own calibration (y 0.229, x 0.140 µm: their mean), not scene 0's
    assert s.loc[1, "pixel_size_um"] == pytest.approx(np.mean(load(LIF, scene=1).pixel_size_um[1:]))
    assert s.loc[1, "pixel_size_um"] == pytest.approx(0.18467, rel=1e-3)
    rep = run_batch(discover_inputs([LIF]), tmp_path / "out", cfg)
    assert [o.status for o in rep.outcomes] == ["failed", "skipped", "failed"]


# ------------------------------------------------------------------ napari
def test_napari_reader_opens_each_scene_under_its_name(tmp_path):
    from spinalquant.napari._reader import read_image

    f = tmp_path / "cord.ome.tif"
    _three_scenes(f)
    layers = read_image(f)
    metas = [ld[1]["metadata"]["spinalquant"] for ld in layers]
    names = ["cord.ome.tif [L4 left]", "cord.ome.tif [L4 right]", "cord.ome.tif [no scale]"]
    assert [m["image"] for m in metas] == [n for n in names for _ in range(2)]
    assert [m["scene"] for m in metas] == [0, 0, 1, 1, 2, 2]
    assert len({m["source"] for m in metas}) == 3  # the widget groups layers by scene
    assert [ld[1]["name"] for ld in layers[:2]] == ["[L4 left] EGFP", "[L4 left] ChAT"]
    assert [ld[1].get("visible", True) for ld in layers] == [True, True] + [False] * 4
    # each scene's own pixels
    for i, ld in enumerate(layers[::2]):
        np.testing.assert_array_equal(np.asarray(ld[0]), load(f, scene=i, require_pixel_size=False).data[0, :])
    (one, _) = read_image(f, scene=1)
    assert one[1]["metadata"]["spinalquant"]["image"] == names[1]
    # a single-scene file opens as before: no scene keys, the file as the source
    g = tmp_path / "single.ome.tif"
    tifffile.imwrite(g, _section(px=1.0, seed=3, n=2), ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 1.0, "Channel": {"Name": ["EGFP", "ChAT"]}})
    meta = read_image(g)[0][1]["metadata"]["spinalquant"]
    assert meta["source"] == str(g) and "image" not in meta and "scene" not in meta


@pytest.mark.napari
def test_widget_analyses_and_saves_a_scene_into_its_own_part(make_napari_viewer, qtbot, tmp_path):
    from spinalquant.napari._widget import SpinalquantWidget

    src = tmp_path / "in"
    src.mkdir()
    _three_scenes(src / "cord.ome.tif")
    out = tmp_path / "out"
    run_batch(discover_inputs([src]), out, FAST)
    before = pd.read_csv(out / "summary.csv")
    viewer = make_napari_viewer()
    viewer.open(str(src / "cord.ome.tif"), plugin="spinalquant")
    widget = SpinalquantWidget(viewer)
    key = next(k for k in widget.sources() if k.endswith("[L4 right]"))
    widget.source_combo.setCurrentIndex(widget.source_combo.findData(key))
    worker = widget.analyse()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    name = "cord.ome.tif [L4 right]"
    qtbot.waitUntil(lambda: name in widget.sessions, timeout=10_000)
    assert widget.sessions[name].current.summary["n_gfp_cells"] == 4
    widget.save(str(out))
    after = pd.read_csv(out / "summary.csv")
    assert list(after["image"]) == list(before["image"])  # the scene's row replaced, not added
    assert after.loc[1, "n_gfp_cells"] == 4
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["images"][name]["review"]["reviewed"] is True
    # the next batch run keeps the reviewed scene (same input hash as the batch's)
    rep = run_batch(discover_inputs([src]), out, FAST)
    assert [o.status for o in rep.outcomes] == ["skipped", "skipped", "failed"]


def test_results_of_scene_0_only_are_replaced_by_every_scene(tmp_path):
    # a results folder written before scenes were inputs: the file analysed as scene 0
    src = tmp_path / "in"
    src.mkdir()
    f = src / "cord.ome.tif"
    _three_scenes(f)
    out = tmp_path / "out"
    run_batch([InputImage(f, "cord.ome.tif")], out, FAST)
    assert (out / "qc" / "cord.png").is_file()
    rep = run_batch(discover_inputs([src]), out, FAST)
    assert rep.earlier == []
    s = pd.read_csv(out / "summary.csv")
    assert list(s["image"]) == ["cord.ome.tif [L4 left]", "cord.ome.tif [L4 right]",
                                "cord.ome.tif [no scale]"]
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert set(run["images"]) == set(s["image"])
    assert not (out / "qc" / "cord.png").exists() and not (out / "labels" / "cord.ome.tif").exists()
    assert set(pd.read_csv(out / "objects" / "gfp_cells.csv")["image"]) == set(s["image"][:2])


def test_cli_scene_option_keeps_the_other_scenes_results(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _three_scenes(src / "cord.ome.tif")
    tifffile.imwrite(src / "single.ome.tif", _section(px=1.0, seed=3, n=3), ome=True,
                     photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0,
                               "Channel": {"Name": ["EGFP", "ChAT"]}})
    out = tmp_path / "out"
    cfg = str(_config(tmp_path))
    assert main(["run", str(src), "--out", str(out), "-j", "1", "-q", "-c", cfg]) == 1
    first = pd.read_csv(out / "summary.csv")
    # scene 1 only (single-scene files still run): the other scenes' rows stay
    assert main(["run", str(src), "--out", str(out), "-j", "1", "-q", "-c", cfg,
                 "--scene", "1", "--force"]) == 0
    err = capsys.readouterr().err
    assert "[1/2] ok      cord.ome.tif [L4 right]" in err and "[2/2] ok      single.ome.tif" in err
    again = pd.read_csv(out / "summary.csv")
    assert set(again["image"]) == set(first["image"]) and len(again) == 4
    assert (out / "qc" / "cord [L4 left].png").is_file()
    assert main(["run", str(src / "cord.ome.tif"), "--out", str(tmp_path / "o2"), "--scene", "7"]) == 2
    assert "no scene 7 of" in capsys.readouterr().err
