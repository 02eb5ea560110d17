"""Defects an outside evaluation (session 5) found outside the evaluators' own files."""

from __future__ import annotations

import re

import numpy as np
import pytest

import spinalquant as sq
from spinalquant.batch import discover_inputs, run_batch
from spinalquant.errors import MissingChannelError
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
