"""Regressions found by the outside evaluation of loading and batch runs (session 5).

Files are written here with tifffile (or are the real vendor files in
``shared/data``) and compared with what was written:

* an ImageJ TIFF calibrated in inches at 72 dpi (what ImageJ keeps from a JPEG)
  was read as 352.8 µm per pixel and analysed at that scale;
* one OME channel without a ``Name`` made every channel anonymous (``C0, C1``),
  so a named GFP channel was not found;
* the second image of a multi-image OME-TIFF, and scenes 1.. of a LIF/CZI, were
  dropped without a word, and could not be read at all;
* the loader's notes (time points dropped, other scenes not read...) never
  reached the run's output;
* an XZ-scan LIF failed in a batch with "no physical pixel size" although it has
  one;
* running other images into an existing results folder dropped the earlier
  images from ``summary.csv`` and ``objects/`` while ``run.json``, ``labels/``
  and ``qc/`` kept them; the same file run again under another name was listed twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from spinalquant.batch import discover_inputs, run_batch
from spinalquant.cli import main
from spinalquant.config import Config
from spinalquant.errors import LoadError, PixelSizeError
from spinalquant.io import load

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIF = DATA / "lif_readlif" / "testdata_2channel_xz.lif"
needs_lif = pytest.mark.skipif(not LIF.is_file(), reason=f"{LIF} is absent (shared test data)")


def _blobs(n_c: int, *, px: float, seed: int, shape=(2, 96, 96), n=4) -> np.ndarray:
    """(C, Z, Y, X) uint16: Poisson background and ``n`` 12 µm bright discs in every channel."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    data = rng.poisson(20, (n_c, z, y, x)).astype(np.float64) * 8 + 100
    yy, xx = np.mgrid[0:y, 0:x]
    for cy, cx in rng.uniform(15, min(y, x) - 15, (n, 2)):
        data[:, :] += 1500 * (np.hypot(yy - cy, xx - cx) < 6 / px)
    return data.astype(np.uint16)


def _ome(path: Path, names: list[str], *, px: float = 0.5, seed: int = 0) -> Path:
    tifffile.imwrite(path, _blobs(len(names), px=px, seed=seed), ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": px, "PhysicalSizeY": px,
                               "Channel": {"Name": names}})
    return path


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize("rgb", [False, True])
def test_imagej_72_dpi_in_inches_is_not_a_calibration(tmp_path, rgb):
    rng = np.random.default_rng(1)
    if rgb:  # a brightfield H&E picture opened from a JPEG in ImageJ and saved as TIFF
        data, axes = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "YXS"
    else:
        data, axes = rng.integers(0, 4000, (3, 48, 64), dtype=np.uint16), "ZYX"
    f = tmp_path / "screen.tif"
    tifffile.imwrite(f, data, imagej=True, resolution=(72, 72), metadata={"axes": axes, "unit": "inch"})
    s = load(f, require_pixel_size=False)
    assert s.pixel_size_um == (None, None, None)  # was (None, 352.8, 352.8)
    assert any("72 pixels per inch" in n for n in s.metadata["notes"])
    with pytest.raises(PixelSizeError, match="screen/print resolution"):
        load(f)
    # a real calibration that ImageJ happens to keep in inches or cm still counts
    for unit, per_um in (("inch", 25400.0), ("cm", 1e4)):
        g = tmp_path / f"fine_{unit}.tif"
        tifffile.imwrite(g, data, imagej=True, resolution=(per_um / 0.3,) * 2,
                         metadata={"axes": axes, "unit": unit})
        assert load(g).pixel_size_um[1:] == pytest.approx((0.3, 0.3))


def test_one_unnamed_ome_channel_does_not_hide_the_others(tmp_path):
    f = tmp_path / "partial.ome.tif"
    data = _blobs(3, px=0.5, seed=2)
    tifffile.imwrite(f, data, ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                               "Channel": {"Name": ["EGFP", "", "ChAT"]}})
    s = load(f)
    assert s.channel_names == ("EGFP", "C1", "ChAT")  # was ('C0', 'C1', 'C2')
    assert s.channel_index("gfp") == 0 and s.channel_index("chat") == 2


def test_multi_image_ome_tiff_says_so_and_each_image_can_be_read(tmp_path):
    f = tmp_path / "two.ome.tif"
    truth = [(["EGFP", "ChAT"], 0.5), (["GFAP", "SYP"], 0.25)]
    arrays = [_blobs(2, px=px, seed=i) for i, (_, px) in enumerate(truth)]
    with tifffile.TiffWriter(f, ome=True) as tw:
        for arr, (names, px) in zip(arrays, truth, strict=True):
            tw.write(arr, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": px, "PhysicalSizeY": px,
                               "Channel": {"Name": names}})
    first = load(f)
    assert first.channel_names == ("EGFP", "ChAT") and first.metadata["n_series"] == 2
    assert any("2 images in the file" in n and "not analysed" in n for n in first.metadata["notes"])
    for i, (names, px) in enumerate(truth):
        s = load(f, scene=i)
        assert s.channel_names == tuple(names)
        assert s.pixel_size_um[1:] == pytest.approx((px, px))
        np.testing.assert_array_equal(s.data, arrays[i])
    with pytest.raises(LoadError, match="holds 2 image series"):
        load(f, scene=2)


@needs_lif
def test_lif_scenes_each_readable():
    import liffile

    s0 = load(LIF, require_pixel_size=False)
    assert any("3 scenes in the file" in n for n in s0.metadata["notes"])
    # scene 1 "xzy" is a volume stored as XZ frames (Y, C, Z, X): bioio-lif cannot read it
    s1 = load(LIF, require_pixel_size=False, scene=1)
    with liffile.LifFile(LIF) as lif:
        ref = lif.images[1].asarray()
    assert s1.metadata["scene"] == "xzy" and s1.shape == (2, 128, 23, 128)
    np.testing.assert_array_equal(s1.data, np.moveaxis(ref, 0, 2))
    assert s1.pixel_size_um[0] == pytest.approx(1 / 7.1287, rel=1e-3)
    assert s1.pixel_size_um[2] == pytest.approx(1 / 7.1286, rel=1e-3)
    s2 = load(LIF, require_pixel_size=False, scene=2)
    assert s2.metadata["scene"] == "xz" and s2.shape == (2, 512, 1, 512)
    with pytest.raises(LoadError, match="holds 3 scenes"):
        load(LIF, scene=3)


# -------------------------------------------------------------------- batch
def test_loader_notes_reach_the_run_output(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    # an ImageJ time series (T=3) of a cord section, and a two-image OME-TIFF
    series = np.stack([_blobs(2, px=0.5, seed=t) for t in range(3)]).transpose(0, 2, 1, 3, 4)
    tifffile.imwrite(src / "timecourse.tif", series, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TZCYX", "unit": "micron", "Labels": ["EGFP", "ChAT"] * 6})
    with tifffile.TiffWriter(src / "two.ome.tif", ome=True) as tw:
        for i in range(2):
            tw.write(_blobs(2, px=0.5, seed=5 + i), photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                               "Channel": {"Name": ["EGFP", "ChAT"]}})
    # the slice labels name the channels of every time point
    assert load(src / "timecourse.tif").channel_names == ("EGFP", "ChAT")  # was ('C0', 'C1')
    out = tmp_path / "out"
    code = main(["run", str(src), "--out", str(out), "--workers", "1", "--quiet"])
    assert code == 0
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    notes = {k: " ".join(v.get("notes", [])) for k, v in run["images"].items()}
    assert "only T=0 was read" in notes["timecourse.tif"]
    # each image of the two-image OME-TIFF is analysed (tests/test_scenes.py): no note
    # that only one was read
    assert {"two.ome.tif [Image0]", "two.ome.tif [Image1]"} <= set(notes)
    assert not any("images in the file" in n for n in notes.values())
    assert "note: timecourse.tif: time series" in capsys.readouterr().err


@needs_lif
def test_xz_scan_fails_in_batch_as_an_xz_scan(tmp_path):
    rep = run_batch(discover_inputs([LIF]), tmp_path / "out")
    assert len(rep.outcomes) == 3  # one per scene (tests/test_scenes.py)
    for o in (rep.outcomes[0], rep.outcomes[2]):  # "xzt" and "xz"
        assert o.status == "failed"
        assert "XZ scan" in o.error and "no physical pixel size" not in o.error


def test_earlier_images_in_the_results_folder_are_kept(tmp_path, capsys):
    top = tmp_path / "data"
    for sub, names, seed in (("A", ["EGFP", "ChAT"], 0), ("B", ["GFP", "GFAP"], 1)):
        (top / sub).mkdir(parents=True)
        _ome(top / sub / f"{sub.lower()}1.ome.tif", names, seed=seed)
    out = tmp_path / "out"
    cfg = Config()
    run_batch(discover_inputs([top / "A"]), out, cfg)
    before = pd.read_csv(out / "objects" / "gfp_cells.csv")
    assert set(before["image"]) == {"a1.ome.tif"} and len(before) > 0
    # B into the same folder: A's results stay in every table, as in run.json and qc/
    code = main(["run", str(top / "B"), "--out", str(out), "--workers", "1", "--quiet"])
    assert code == 0
    assert "also keep 1 image(s)" in capsys.readouterr().err
    s = pd.read_csv(out / "summary.csv")
    assert list(s["image"]) == ["a1.ome.tif", "b1.ome.tif"]  # was ['b1.ome.tif']
    after = pd.read_csv(out / "objects" / "gfp_cells.csv")
    kept = after.loc[after["image"] == "a1.ome.tif", list(before.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before, check_dtype=False)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert set(run["images"]) == set(s["image"])
    # their common parent: the same two files under new names, each listed once
    rep = run_batch(discover_inputs([top]), out, cfg)
    assert rep.earlier == []
    s = pd.read_csv(out / "summary.csv")
    assert list(s["image"]) == ["A/a1.ome.tif", "B/b1.ome.tif"]
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert set(run["images"]) == set(s["image"])
    assert not (out / "qc" / "a1.png").exists() and (out / "qc" / "A" / "a1.png").is_file()
    assert set(pd.read_csv(out / "objects" / "gfp_cells.csv")["image"]) == set(s["image"])
    # an image whose file is out of reach (deleted, or on a share not mounted) keeps its
    # results: they are never dropped because an input cannot be found (review, session 5)
    (top / "B" / "b1.ome.tif").unlink()
    _ome(top / "A" / "a2.ome.tif", ["EGFP", "ChAT"], seed=3)
    rep = run_batch(discover_inputs([top / "A"]), out, cfg)
    assert rep.earlier == ["B/b1.ome.tif"]
    assert list(pd.read_csv(out / "summary.csv")["image"]) == ["B/b1.ome.tif", "a1.ome.tif", "a2.ome.tif"]
    assert set(json.loads((out / "run.json").read_text(encoding="utf-8"))["images"]) == {
        "B/b1.ome.tif", "a1.ome.tif", "a2.ome.tif"}


def test_results_inside_the_input_folder_are_not_inputs(tmp_path):
    src = tmp_path / "sections"
    src.mkdir()
    _ome(src / "s1.ome.tif", ["EGFP", "ChAT"])
    run_batch(discover_inputs([src]), src)  # --out is the input folder
    assert (src / "labels" / "s1.ome.tif").is_file() and (src / "qc" / "s1.png").is_file()
    # was ['labels/s1.ome.tif', 'qc/s1.png', 's1.ome.tif']: its label image was analysed
    # as a cord section (channel 'gfp_cells' matches GFP)
    assert [i.image for i in discover_inputs([src])] == ["s1.ome.tif"]


def test_microscope_files_of_unread_types_are_named(tmp_path, capsys):
    src = tmp_path / "mixed"
    (src / "olympus").mkdir(parents=True)
    _ome(src / "s1.ome.tif", ["EGFP", "ChAT"])
    for name in ("olympus/a.oib", "olympus/b.OIB", "c.ims", "readme.txt", ".DS_Store", "._s1.ome.tif"):
        (src / name).write_bytes(b"\0\5\26\7 not an image")
    code = main(["run", str(src), "--out", str(tmp_path / "out"), "--dry-run"])
    assert code == 0
    err = capsys.readouterr().err  # they used to be passed over without a word
    assert "3 image file(s) of types spinalquant does not read were skipped (1 .ims, 2 .oib)" in err
    assert [i.image for i in discover_inputs([src])] == ["s1.ome.tif"]


def test_non_square_pixels_are_noted(tmp_path):
    f = tmp_path / "aniso.tif"
    data = _blobs(2, px=0.3, seed=4).transpose(1, 0, 2, 3)  # (Z, C, Y, X)
    tifffile.imwrite(f, data, imagej=True, resolution=(1 / 0.3, 1 / 0.6),
                     metadata={"axes": "ZCYX", "unit": "micron", "spacing": 1.5})
    s = load(f)
    assert s.pixel_size_um == pytest.approx((1.5, 0.6, 0.3))
    # the analysis measures with the mean (Stack.yx_um): said, not silent
    assert any("not square" in n and "0.45" in n for n in s.metadata["notes"])
    square = tmp_path / "square.tif"
    tifffile.imwrite(square, data, imagej=True, resolution=(1 / 0.3, 1 / 0.3),
                     metadata={"axes": "ZCYX", "unit": "micron", "spacing": 1.5})
    assert not any("square" in n for n in load(square).metadata["notes"])


def test_a_failed_reanalysis_leaves_no_stale_pictures(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = _ome(src / "s1.ome.tif", ["EGFP", "ChAT"])
    _ome(src / "s2.ome.tif", ["EGFP", "ChAT"], seed=1)
    out = tmp_path / "out"
    run_batch(discover_inputs([src]), out)
    pictures = [out / "labels" / "s1.ome.tif", out / "qc" / "s1.png"]
    assert all(f.is_file() for f in pictures)
    # the file is replaced by a broken copy: its row says failed, its objects left the
    # tables, and its old overlay (was kept) would show cells that no table has
    good.write_bytes(good.read_bytes()[:2000])
    rep = run_batch(discover_inputs([src]), out)
    assert {o.image: o.status for o in rep.outcomes} == {"s1.ome.tif": "failed", "s2.ome.tif": "skipped"}
    assert not any(f.exists() for f in pictures)
    assert (out / "qc" / "s2.png").is_file() and (out / "labels" / "s2.ome.tif").is_file()
    # analysed again without QC pictures: no overlay of the earlier parameters is left
    run_batch(discover_inputs([src / "s2.ome.tif"]), out, Config.from_dict({"output": {"qc": False}}))
    assert not (out / "qc" / "s2.png").exists() and (out / "labels" / "s2.ome.tif").is_file()


def _two_file_ome(folder: Path, seed: int = 0) -> np.ndarray:
    """A multi-file OME-TIFF (as Micro-Manager writes one): EGFP planes in a.ome.tif,
    ChAT planes in b.ome.tif after a large first page. Returns the (C, Z, Y, X) truth."""
    import uuid

    rng = np.random.default_rng(seed)
    truth = rng.integers(100, 4000, (2, 4, 32, 40), dtype=np.uint16)
    ids = [f"urn:uuid:{uuid.UUID(int=int(rng.integers(1 << 62)))}" for _ in range(2)]
    tiffdata = "".join(
        f'<TiffData FirstC="{c}" IFD="{c}" PlaneCount="4"><UUID FileName="{n}">{u}</UUID></TiffData>'
        for c, (n, u) in enumerate(zip(("a.ome.tif", "b.ome.tif"), ids, strict=True)))
    xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas'
           '/OME/2016-06" UUID="{uuid}"><Image ID="Image:0" Name="mm"><Pixels ID="Pixels:0" '
           'DimensionOrder="XYZCT" Type="uint16" SizeX="40" SizeY="32" SizeZ="4" SizeC="2" '
           'SizeT="1" PhysicalSizeX="0.5" PhysicalSizeY="0.5" PhysicalSizeZ="2">'
           '<Channel ID="Channel:0:0" Name="EGFP" SamplesPerPixel="1"/>'
           '<Channel ID="Channel:0:1" Name="ChAT" SamplesPerPixel="1"/>' + tiffdata +
           "</Pixels></Image></OME>")
    with tifffile.TiffWriter(folder / "a.ome.tif") as tw:
        for z, plane in enumerate(truth[0]):
            tw.write(plane, description=xml.replace("{uuid}", ids[0]) if z == 0 else None,
                     metadata=None, contiguous=False)
    with tifffile.TiffWriter(folder / "b.ome.tif") as tw:
        tw.write(np.zeros((300, 300), np.uint16), description=xml.replace("{uuid}", ids[1]),
                 metadata=None, contiguous=False)
        for plane in truth[1]:
            tw.write(plane, metadata=None, contiguous=False)
    return truth


def test_multi_file_ome_tiff(tmp_path):
    src = tmp_path / "mm"
    src.mkdir()
    truth = _two_file_ome(src)
    # b.ome.tif is larger than a.ome.tif: its planes were checked against a's size
    s = load(src / "a.ome.tif")  # was LoadError 'the file is truncated'
    assert s.channel_names == ("EGFP", "ChAT") and s.pixel_size_um == pytest.approx((2.0, 0.5, 0.5))
    np.testing.assert_array_equal(s.data, truth)
    # a folder run analyses the dataset once, from its first file (was twice)
    assert [i.image for i in discover_inputs([src])] == ["a.ome.tif"]
    assert [i.image for i in discover_inputs([src / "b.ome.tif", src / "a.ome.tif"])] == ["a.ome.tif"]
    assert [i.image for i in discover_inputs([src / "b.ome.tif"])] == ["b.ome.tif"]  # asked for
    # without its second file the dataset is refused (was: the ChAT planes read as zeros)
    (src / "b.ome.tif").rename(tmp_path / "elsewhere.tif")
    with pytest.raises(LoadError, match=r"4 of the 8 planes .* missing \(b\.ome\.tif\)"):
        load(src / "a.ome.tif")


def test_colour_czi_is_rgb_in_rgb_order(tmp_path):
    pyczi = pytest.importorskip("pylibCZIrw.czi", reason="pylibCZIrw writes the test CZI")
    from spinalquant.pipeline import detect_section

    rgb = np.random.default_rng(6).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    rgb[10:20, 10:30] = (200, 60, 20)
    f = tmp_path / "he.czi"
    with pyczi.create_czi(str(f), exist_ok=True) as w:  # Bgr24: samples stored B, G, R
        w.write(data=np.ascontiguousarray(rgb[..., ::-1]), plane={"C": 0, "Z": 0, "T": 0})
        w.write_metadata(document_name="he", scale_x=0.5e-6, scale_y=0.5e-6)
    s = load(f)
    # was ('C0', 'C1', 'C2'), rgb False, and every channel the blue sample (bioio-czi's
    # lazy colour read), so an H&E CZI could not be told from a fluorescence image
    assert s.rgb and s.channel_names == ("R", "G", "B")
    np.testing.assert_array_equal(s.data[:, 0], np.moveaxis(rgb, -1, 0))
    assert s.pixel_size_um[1:] == pytest.approx((0.5, 0.5))
    assert detect_section(s) == "muscle"


def test_czi_scenes_missing_from_its_metadata_are_noted(tmp_path):
    pyczi = pytest.importorskip("pylibCZIrw.czi", reason="pylibCZIrw writes the test CZI")
    rng = np.random.default_rng(7)
    f = tmp_path / "three_scenes.czi"
    with pyczi.create_czi(str(f), exist_ok=True) as w:
        for scene in range(3):
            for c in range(2):
                w.write(data=rng.integers(0, 4000, (48, 64), dtype=np.uint16),
                        plane={"C": c, "Z": 0, "T": 0}, scene=scene, location=(scene * 1000, 0))
        w.write_metadata(document_name="s", channel_names={0: "EGFP", 1: "ChAT"},
                         scale_x=0.3e-6, scale_y=0.3e-6)
    s = load(f)
    assert s.shape == (2, 1, 48, 64) and s.channel_names == ("EGFP", "ChAT")
    # bioio-czi lists one scene (the metadata name none of them): said, not silent (was: no note)
    assert any("image data of 3 scenes" in n for n in s.metadata["notes"])


def test_multi_file_ome_rerun_sees_a_change_in_any_file(tmp_path):
    src = tmp_path / "mm"
    src.mkdir()
    _two_file_ome(src)
    out = tmp_path / "out"
    run_batch(discover_inputs([src]), out)
    assert {o.status for o in run_batch(discover_inputs([src]), out).outcomes} == {"skipped"}
    data = tifffile.imread(src / "b.ome.tif", key=1)
    with tifffile.TiffFile(src / "b.ome.tif") as tif:
        offset = tif.pages[1].dataoffsets[0]
    raw = bytearray((src / "b.ome.tif").read_bytes())
    raw[offset:offset + data.nbytes] = (data + 1).tobytes()  # only the second file changes
    (src / "b.ome.tif").write_bytes(bytes(raw))
    rep = run_batch(discover_inputs([src]), out)
    assert [o.status for o in rep.outcomes] == ["ok"]  # was 'skipped': only a.ome.tif was hashed


def test_a_thumbnail_series_is_not_another_image(tmp_path):
    f = tmp_path / "with_thumb.ome.tif"
    big = _blobs(2, px=0.5, seed=8)
    with tifffile.TiffWriter(f, ome=True) as tw:
        tw.write(big, photometric="minisblack",
                 metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                           "Channel": {"Name": ["EGFP", "ChAT"]}})
        tw.write(big[:, :, ::4, ::4], photometric="minisblack", metadata={"axes": "CZYX"})
    s = load(f)
    assert s.metadata["n_series"] == 2 and s.shape == (2, 2, 96, 96)
    assert not any("images in the file" in n for n in s.metadata["notes"])


def test_files_spinalquant_did_not_write_are_not_overwritten(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _ome(src / "s1.ome.tif", ["EGFP", "ChAT"])
    mine = tmp_path / "my_analysis"
    (mine / "qc").mkdir(parents=True)
    (mine / "summary.csv").write_text("animal,count\nm1,12\n", encoding="utf-8")
    (mine / "qc" / "s1.png").write_bytes(b"my own picture")
    code = main(["run", str(src), "--out", str(mine), "--workers", "1", "--quiet"])
    assert code == 2  # was 0, and both files were replaced
    assert "already holds summary.csv, qc" in capsys.readouterr().err
    assert (mine / "summary.csv").read_text(encoding="utf-8") == "animal,count\nm1,12\n"
    assert (mine / "qc" / "s1.png").read_bytes() == b"my own picture"
    # a results folder of spinalquant's own is re-used as before
    out = tmp_path / "out"
    assert main(["run", str(src), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert main(["run", str(src), "--out", str(out), "--workers", "1", "--quiet"]) == 0


def test_errors_name_the_image_not_the_machine_path(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "broken.tif").write_bytes(b"II*\0garbage")
    rep = run_batch(discover_inputs([src.resolve()]), tmp_path / "out")
    (o,) = rep.outcomes
    # was '/tmp/.../in/sub/broken.tif: the file is truncated ...'
    assert o.error.startswith("sub/broken.tif: the file is truncated or corrupt")
    assert str(tmp_path) not in pd.read_csv(tmp_path / "out" / "summary.csv")["error"][0]
