"""Regressions found by the outside evaluation on unseen files (session 4).

* A truncated OME-TIFF written by tifffile (its OME-XML lies at the end of the
  file) opened as a one-page plain TIFF: the error blamed the pixel size, and with
  a pixel size given it was analysed as a single unnamed channel.
* Two INPUT folders holding the same relative path, or ``a.tif`` beside
  ``a.ome.tif``, silently overwrote each other's results.
* A cord channel named only by its dye (``"Alexa Fluor 488"`` for GFP) was skipped
  without a word: the image was ``ok`` with empty GFP figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from spinalquant.batch import InputImage, check_unique_names, discover_inputs, run_batch
from spinalquant.cli import app
from spinalquant.errors import ConfigError, LoadError
from spinalquant.io import load


def _cord_file(path: Path, names: list[str], *, px: float = 0.5, seed: int = 0,
               bigtiff: bool = False) -> Path:
    """A small (C, Z, Y, X) uint16 OME-TIFF written by tifffile, with a few bright blobs."""
    rng = np.random.default_rng(seed)
    c, z, y, x = len(names), 2, 96, 96
    data = rng.poisson(20, (c, z, y, x)).astype(np.float64) * 8 + 100
    yy, xx = np.mgrid[0:y, 0:x]
    for cy, cx in rng.uniform(15, 80, (4, 2)):
        data[:, :] += 1500 * (np.hypot(yy - cy, xx - cx) < 12 / px / 2)
    tifffile.imwrite(
        path, data.astype(np.uint16), ome=True, photometric="minisblack", bigtiff=bigtiff,
        metadata={"axes": "CZYX", "PhysicalSizeX": px, "PhysicalSizeY": px,
                  "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm",
                  "Channel": {"Name": names}},
    )
    return path


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("fraction", [0.3, 0.66, 0.95, 0.9999])
def test_truncated_tifffile_ome_is_a_load_error(tmp_path, fraction, bigtiff):
    full = _cord_file(tmp_path / "full.ome.tif", ["EGFP", "GFAP", "ChAT", "SYP"], bigtiff=bigtiff)
    raw = full.read_bytes()
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    # the pixel size given explicitly: the file must still be refused, not read as one page
    with pytest.raises(LoadError, match=r"cut\.ome\.tif: the file is truncated"):
        load(cut, pixel_size_um=0.5)
    assert load(full).shape == (4, 2, 96, 96)  # the intact file still loads


def test_truncated_file_fails_in_batch_with_the_reason(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    full = _cord_file(src / "ok.ome.tif", ["EGFP", "ChAT"])
    (src / "cut.ome.tif").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    rep = run_batch(discover_inputs([src]), tmp_path / "out")
    status = {o.image: (o.status, o.error) for o in rep.outcomes}
    assert status["ok.ome.tif"][0] == "ok"
    assert status["cut.ome.tif"][0] == "failed"
    assert "truncated" in status["cut.ome.tif"][1]
    assert "pixel size" not in status["cut.ome.tif"][1]


def test_same_image_name_from_two_inputs_is_refused(tmp_path):
    for sub in ("A", "B"):
        (tmp_path / sub).mkdir()
        _cord_file(tmp_path / sub / "sec.ome.tif", ["EGFP", "ChAT"])
    with pytest.raises(ConfigError, match=r"same image name 'sec\.ome\.tif'.*common parent"):
        discover_inputs([tmp_path / "A", tmp_path / "B"])
    # their common parent names them A/sec.ome.tif and B/sec.ome.tif: fine
    names = [i.image for i in discover_inputs([tmp_path])]
    assert names == ["A/sec.ome.tif", "B/sec.ome.tif"]
    # the CLI: a usage error (exit 2) before anything is written
    res = CliRunner().invoke(app, ["run", str(tmp_path / "A"), str(tmp_path / "B"),
                                   "--out", str(tmp_path / "out"), "-j", "1", "-q"])
    assert res.exit_code == 2
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_same_output_stem_is_refused(tmp_path):
    a = InputImage(tmp_path / "m.tif", "m.tif")
    b = InputImage(tmp_path / "m.ome.tif", "m.ome.tif")
    with pytest.raises(ConfigError, match=r"labels/m\.ome\.tif and qc/m\.png"):
        check_unique_names([a, b])
    check_unique_names([a, InputImage(tmp_path / "sub" / "m.ome.tif", "sub/m.ome.tif")])


def test_unrecognised_dye_name_gives_a_note(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _cord_file(src / "af.ome.tif", ["Alexa Fluor 488", "ChAT 647"])
    _cord_file(src / "named.ome.tif", ["EGFP", "ChAT 647"], seed=1)
    out = tmp_path / "out"
    rep = run_batch(discover_inputs([src]), out)
    notes = {o.image: o.notes for o in rep.outcomes}
    assert [o.status for o in rep.outcomes] == ["ok", "ok"]
    assert len(notes["af.ome.tif"]) == 1
    assert "'Alexa Fluor 488'" in notes["af.ome.tif"][0]
    assert '[channels] gfp = "Alexa Fluor 488"' in notes["af.ome.tif"][0]
    assert notes["named.ome.tif"] == []  # GFAP/synapse absent but nothing unrecognised
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["images"]["af.ome.tif"]["notes"] == notes["af.ome.tif"]
    # a re-run skips the unchanged image and still reports its note
    again = run_batch(discover_inputs([src]), out)
    assert {o.image: o.status for o in again.outcomes}["af.ome.tif"] == "skipped"
    assert {o.image: o.notes for o in again.outcomes}["af.ome.tif"] == notes["af.ome.tif"]


def test_results_of_a_killed_run_inside_the_input_are_not_inputs(tmp_path):
    # `spinalquant run study/ --out study/results` killed before run.json was written:
    # the restart must not analyse results/labels/*.ome.tif and results/qc/*.png
    src = tmp_path / "study"
    src.mkdir()
    _cord_file(src / "sec.ome.tif", ["EGFP", "ChAT 647"])
    out = src / "results"
    run_batch(discover_inputs([src]), out)
    assert (out / "labels" / "sec.ome.tif").is_file()
    (out / "run.json").unlink()
    assert [i.image for i in discover_inputs([src])] == ["sec.ome.tif"]
    # a run marks its folder from the start, before any image is done
    fresh = src / "results2"
    run_batch([], fresh)
    (fresh / "labels").mkdir()
    (out / "labels" / "sec.ome.tif").rename(fresh / "labels" / "sec.ome.tif")
    (fresh / "run.json").unlink(missing_ok=True)
    assert [i.image for i in discover_inputs([src])] == ["sec.ome.tif"]


@pytest.mark.parametrize(("channel", "value"), [(1, 100), (0, 4095), (1, 0)])
def test_constant_marker_channel_fails_the_image(tmp_path, channel, value):
    # a detector left off (every pixel at its offset) or a saturated channel used to
    # give "0 % GFAP+" or "0 GFP cells" with status ok; all zeros was already refused
    src = tmp_path / "in"
    src.mkdir()
    path = _cord_file(src / "sec.ome.tif", ["EGFP", "GFAP-Cy3", "ChAT 647"])
    data = tifffile.imread(path)
    data[channel] = value
    tifffile.imwrite(path, data, ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                               "Channel": {"Name": ["EGFP", "GFAP-Cy3", "ChAT 647"]}})
    _cord_file(src / "good.ome.tif", ["EGFP", "GFAP-Cy3", "ChAT 647", "DAPI"], seed=3)
    rep = run_batch(discover_inputs([src]), tmp_path / "out")
    by = {o.image: o for o in rep.outcomes}
    assert by["good.ome.tif"].status == "ok"
    assert by["sec.ome.tif"].status == "failed"
    name = ["EGFP", "GFAP-Cy3"][channel]
    assert f"channel '{name}' is constant (every pixel is {value})" in by["sec.ome.tif"].error


def test_missing_pixel_size_message_names_the_cli_option(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    data = np.random.default_rng(2).integers(100, 900, (2, 48, 48)).astype(np.uint16)
    tifffile.imwrite(src / "raw.tif", data, imagej=True,
                     metadata={"axes": "CYX", "Labels": ["EGFP", "ChAT"]})
    rep = run_batch(discover_inputs([src]), tmp_path / "out")
    err = rep.outcomes[0].error
    assert rep.outcomes[0].status == "failed"
    assert "raw.tif: the file has no physical pixel size" in err
    assert "--pixel-size" in err and "[image] pixel_size_um" in err
