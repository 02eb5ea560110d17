"""Defects an outside evaluation (session 5) found outside the evaluators' own files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import spinalquant as sq
from spinalquant.batch import discover_inputs, earlier_images, run_batch
from spinalquant.errors import ConfigError, MissingChannelError
from spinalquant.io import save_stack
from spinalquant.pipeline import detect_section
from spinalquant.report import write_report
from spinalquant.review import save_review
from spinalquant.synthetic import make_cord_section


def test_report_links_to_qc_images_whose_names_need_quoting(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    ph = make_cord_section(seed=3, shape=(160, 160), n_gfp_cells=4, n_motor_neurons=1, n_small_chat=1)
    save_stack(ph.stack, src / "sec #2 50%.ome.tif", format="ome")
    out = tmp_path / "out"
    run_batch(discover_inputs([src]), out)
    text = write_report(out).read_text(encoding="utf-8")
    hrefs = re.findall(r"<a href='([^']*)'", text)
    assert hrefs == ["qc/sec%20%232%2050%25.png"]  # was qc/sec #2 50%.png: '#' starts a fragment
    assert (out / "qc" / "sec #2 50%.png").is_file()


def test_a_reviewed_multi_file_ome_dataset_is_not_redone(tmp_path):
    from test_eval6_io import _two_file_ome  # tests/ is on sys.path

    src = tmp_path / "mm"
    src.mkdir()
    _two_file_ome(src)
    out = tmp_path / "out"
    res = sq.analyze(sq.load(src / "a.ome.tif"))
    save_review(out, "a.ome.tif", res, source_path=src / "a.ome.tif")
    # the part's hash covers both files, as a batch run's does (was the first file's only,
    # so the next run redid the image and replaced the reviewed result)
    rep = run_batch(discover_inputs([src]), out)
    assert [o.status for o in rep.outcomes] == ["skipped"]


@pytest.mark.parametrize(("names", "example"), [
    (("Mono", "FITC"), "FITC"),  # example-multichannel.nd2: was gfp = "Mono"
    (("DIC", "Cy3", "DAPI"), "Cy3"),
    (("BF",), "BF"),  # nothing else to suggest
])
def test_mapping_hint_suggests_a_fluorescence_channel(names, example):
    st = sq.Stack(np.ones((len(names), 1, 8, 8), np.uint16), names, (None, 0.5, 0.5))
    with pytest.raises(MissingChannelError, match=f'gfp = "{example}"'):
        detect_section(st)


@pytest.mark.parametrize("side", [1, 2, 3, 4])
def test_outline_of_a_label_one_to_four_pixels_wide(side):
    from spinalquant.measure.synapses import outline_length_um

    lab = np.zeros((20, 20), np.int32)
    lab[8:8 + side, 8:8 + side] = 1
    # was 0 for 1-2 pixels (the smoothed mask never reached one half) and 8.2 instead
    # of ~12 pixel units for 3: the unsmoothed 0.5 contour of a k-pixel square runs
    # k - 1 along each side and cuts each corner by a half-pixel diagonal
    got = outline_length_um(lab, pixel_size_um=0.5)[1]
    assert got == pytest.approx(0.5 * (4 * (side - 1) + 2 * np.sqrt(2)), rel=1e-6)


def _cord_file(path, seed):
    ph = make_cord_section(seed=seed, shape=(160, 160), n_gfp_cells=3, n_motor_neurons=1, n_small_chat=1)
    save_stack(ph.stack, path, format="ome")


def test_a_corrupt_ome_tiff_fails_alone(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _cord_file(src / "good.ome.tif", 1)
    _cord_file(src / "bad.ome.tif", 2)
    raw = bytearray((src / "bad.ome.tif").read_bytes())
    raw[26], raw[66] = 165, 232  # two bytes of the first IFD: tifffile raises TypeError
    (src / "bad.ome.tif").write_bytes(bytes(raw))
    items = discover_inputs([src])  # was: TypeError out of the multi-file OME check
    rep = run_batch(items, tmp_path / "out")
    status = {o.image: o.status for o in rep.outcomes}
    assert status == {"bad.ome.tif": "failed", "good.ome.tif": "ok"}


def test_earlier_results_are_kept_and_not_overwritten_by_another_name(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _cord_file(src / "s.ome.tif", 1)
    out = tmp_path / "out"
    run_batch(discover_inputs([src]), out)
    qc = (out / "qc" / "s.png").read_bytes()
    # the input folder moves away (an unmounted share): nothing is dropped
    src.rename(tmp_path / "elsewhere")
    other = tmp_path / "other"
    other.mkdir()
    _cord_file(other / "t.ome.tif", 3)
    rep = run_batch(discover_inputs([other]), out)
    assert rep.earlier == ["s.ome.tif"]  # was [] and s.ome.tif left the tables for good
    assert list(pd.read_csv(out / "summary.csv")["image"]) == ["s.ome.tif", "t.ome.tif"]
    # a new image that would write the earlier one's pictures is refused before anything runs
    _cord_file(other / "s.tif", 4)
    with pytest.raises(ConfigError, match="earlier run"):
        run_batch(discover_inputs([other / "s.tif"]), out)
    assert (out / "qc" / "s.png").read_bytes() == qc  # was overwritten with another image's objects
    assert list(pd.read_csv(out / "summary.csv")["image"]) == ["s.ome.tif", "t.ome.tif"]


def test_looking_up_earlier_images_changes_nothing(tmp_path):
    src = tmp_path / "top"
    (src / "A").mkdir(parents=True)
    _cord_file(src / "A" / "a.ome.tif", 1)
    out = tmp_path / "out"
    run_batch(discover_inputs([src]), out)  # image "A/a.ome.tif"
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    kept, superseded = earlier_images(out, ["a.ome.tif"], {str((src / "A" / "a.ome.tif").resolve())})
    assert (kept, superseded) == ([], ["A/a.ome.tif"])
    # its part and pictures are removed only once a run has finished (was: at once)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
