"""Fixes from the user-facing evaluation (report, napari review, group statistics, notebooks).

Viewer tests need a display: ``xvfb-run -a python -m pytest tests/test_eval5.py``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from spinalquant.batch import InputImage, run_batch
from spinalquant.config import Config
from spinalquant.io import save_stack
from spinalquant.report import format_number, write_report
from spinalquant.synthetic import make_cord_section, make_muscle_section

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ report
def test_format_number_never_scientific():
    values = [34219.288, 123456.7, 0.0776397, 82.3529, 7.0, 1.234e-5, -0.0001234, 0.0]
    texts = [format_number(v) for v in values]
    assert texts[:5] == ["34219", "123457", "0.07764", "82.35", "7"]
    assert not any("e" in t for t in texts), texts
    for v, t in zip(values, texts, strict=True):  # still the value, to 4 significant digits
        assert float(t) == pytest.approx(v, rel=1e-3, abs=1e-12)
    assert format_number(float("nan")) == ""


def _fake_results(out: Path) -> None:
    """A results folder as `spinalquant run` writes it (tables only, no analysis)."""
    (out / "objects").mkdir(parents=True)
    pd.DataFrame([
        {"image": "a.tif", "status": "ok", "error": "", "section": "cord", "pixel_size_um": 0.5,
         "n_gfp_cells": 7, "n_gfp_gfap_cells": 6, "pct_gfp_gfap": 85.714, "n_astrocytes": 11,
         "n_motor_neurons": 4, "roi_area_um2": 34219.288, "gfp_cells_per_mm2": 204.56},
        {"image": "b.tif", "status": "ok", "error": "", "section": "cord", "pixel_size_um": 0.5,
         "n_gfp_cells": 0, "n_gfp_gfap_cells": 0, "pct_gfp_gfap": None, "n_astrocytes": 3,
         "n_motor_neurons": 2, "roi_area_um2": 125000.0, "gfp_cells_per_mm2": 0.0},
    ]).to_csv(out / "summary.csv", index=False)
    run = {"spinalquant_version": "0", "finished": "now", "images": {
        "a.tif": {"status": "ok", "notes": ["channel(s) ['Alexa Fluor 488'] match no marker"],
                  "review": {"reviewed": True, "time": "T", "user": "me",
                             "edits": [{"kind": "motor_neurons", "action": "delete", "label": 2}]}},
        "b.tif": {"status": "ok"},
    }}
    (out / "run.json").write_text(json.dumps(run))


def test_report_plain_numbers_notes_and_review_marks(tmp_path):
    _fake_results(tmp_path)
    text = write_report(tmp_path).read_text(encoding="utf-8")
    cells = re.findall(r"<td>([^<]*)</td>", text)
    assert "34219" in cells and "125000" in cells
    assert not [c for c in cells if re.search(r"\de[+-]\d", c)], "scientific notation in the table"
    notes = text[text.index("<h2>Notes</h2>"):]
    assert "a.tif" in notes and "Alexa Fluor 488" in notes
    assert "reviewed by hand" in notes and "1 edit(s)" in notes
    assert "b.tif" not in notes


def test_report_without_notes_has_no_notes_section(tmp_path):
    _fake_results(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"images": {"a.tif": {"status": "ok"}}}))
    assert "<h2>Notes</h2>" not in write_report(tmp_path).read_text(encoding="utf-8")


def test_fiber_histograms_share_bin_edges(tmp_path, monkeypatch):
    """Overlaid CSA histograms of two images are drawn on the same bins (comparable)."""
    from matplotlib.axes import Axes

    _fake_results(tmp_path)
    rng = np.random.default_rng(0)
    fib = pd.concat([
        pd.DataFrame({"image": "a.tif", "area_um2": rng.normal(1500, 300, 80)}),
        pd.DataFrame({"image": "b.tif", "area_um2": rng.normal(3000, 900, 60)}),
    ])
    fib.to_csv(tmp_path / "objects" / "fibers.csv", index=False)
    seen = []
    original = Axes.hist

    def spy(self, x, *args, **kwargs):
        seen.append(np.asarray(kwargs.get("bins")))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "hist", spy)
    write_report(tmp_path)
    assert len(seen) == 2 and seen[0].ndim == 1 and len(seen[0]) == 31
    np.testing.assert_array_equal(seen[0], seen[1])


# ------------------------------------------------------------------ stats
def test_motor_neuron_axis_label_is_per_section():
    from spinalquant.stats import DEFAULT_MEASURES

    label = DEFAULT_MEASURES["n_motor_neurons"].label
    assert "ventral horn" not in label and "per section" in label  # counts are per image


# ------------------------------------------------------------------ notebook
def test_study_notebook_cleans_up_and_states_reachable_kruskal_p():
    nb = nbformat.read(REPO / "notebooks" / "03_study.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert "p ≥ 0.004" not in text and "p ≥ 0.027" in text  # 3 x 3 animals: H <= 7.2
    assert "shutil.rmtree(WORK)" in nb.cells[-1].source


def test_kruskal_floor_for_three_groups_of_three():
    from scipy.stats import kruskal

    assert kruskal([1, 2, 3], [4, 5, 6], [7, 8, 9]).pvalue == pytest.approx(0.0273, abs=5e-4)


# ------------------------------------------------------------------ napari
@pytest.fixture(scope="module")
def cord_and_muscle(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval5")
    items = []
    cord = make_cord_section(seed=41, shape=(256, 256), n_gfp_cells=8, n_motor_neurons=3,
                             n_small_chat=2, n_granules=2)
    musc = make_muscle_section(seed=3, shape=(256, 256))
    for name, ph in (("a_cord.ome.tif", cord), ("b_muscle.ome.tif", musc)):
        f = root / name
        save_stack(ph.stack, f, format="ome")
        items.append(InputImage(f, f.name))
    out = root / "out"
    run_batch(items, out, Config.from_dict({"output": {"qc": False}}), workers=1)
    assert (out / "report.html").is_file()
    return out


@pytest.mark.napari
def test_results_folder_review_controls_and_report(make_napari_viewer, cord_and_muscle, tmp_path):
    from test_napari import _layer  # tests/ is on sys.path

    from spinalquant.napari._widget import SpinalquantWidget

    out = tmp_path / "out"
    shutil.copytree(cord_and_muscle, out)
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="spinalquant")  # cord first, then the muscle image
    widget = SpinalquantWidget(viewer)  # opened after the folder, as from the Plugins menu
    # the widget shows the folder it reviews, and a summary, before any click
    assert str(out) in widget.out_label.text()
    assert widget.summary_table.rowCount() > 2
    # Flip GFAP follows the image shown, not the last layer read (a muscle image)
    gfp = _layer(viewer, "a_cord.ome.tif", "gfp_cells")
    viewer.layers.selection.active = gfp
    assert widget.flip_btn.isEnabled()
    viewer.layers.selection.active = _layer(viewer, "b_muscle.ome.tif", "fibers")
    assert not widget.flip_btn.isEnabled()
    # a missing label gives a plain message (no KeyError quotes)
    viewer.layers.selection.active = gfp
    widget.flip_gfap(label=9999)
    assert widget.status.text() == "error: no GFP+ cell with label 9999"

    # delete a motor neuron, save: report.html is rewritten with the new count
    mn = _layer(viewer, "a_cord.ome.tif", "motor_neurons")
    viewer.layers.selection.active = mn
    n0 = len(mn.features)
    victim = int(mn.features["label"].iloc[0])
    data = mn.data.copy()
    data[data == victim] = 0
    mn.data = data
    widget.save()
    assert "report.html updated" in widget.status.text()
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "reviewed by hand" in report
    row = report[report.index("<td class='l'>a_cord.ome.tif</td>"):]
    row = row[:row.index("</tr>")]
    summary = pd.read_csv(out / "summary.csv").set_index("image")
    assert summary.loc["a_cord.ome.tif", "n_motor_neurons"] == n0 - 1
    table = pd.read_csv(out / "summary.csv")
    shown = [c for c in table.columns if table[c].notna().any() or c in ("image", "status")]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    assert cells[shown.index("n_motor_neurons")] == str(n0 - 1)


def _cord_stack():
    return make_cord_section(seed=41, shape=(256, 256), n_gfp_cells=8, n_motor_neurons=3,
                             n_small_chat=2, n_granules=2).stack


@pytest.mark.napari
def test_uncalibrated_file_needs_a_pixel_size(make_napari_viewer, qtbot, tmp_path):
    """An ImageJ TIFF without calibration is not analysed at napari's default 1 µm/px."""
    import tifffile

    from spinalquant.napari._widget import SpinalquantWidget

    st = _cord_stack()
    f = tmp_path / "nopx.tif"
    tifffile.imwrite(f, st.data.max(axis=1), imagej=True,
                     metadata={"axes": "CYX", "Labels": list(st.channel_names)})
    viewer = make_napari_viewer()
    viewer.open(str(f), plugin="spinalquant")
    widget = SpinalquantWidget(viewer)
    assert widget.pixel_spin.value() == 0
    assert widget.analyse() is None
    assert "no pixel size" in widget.status.text()
    widget.pixel_spin.setValue(0.5)  # the user types it in
    stack, _ = widget.current_stack()
    assert stack.pixel_size_um[1:] == (0.5, 0.5)
    worker = widget.analyse()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: "nopx.tif" in widget.sessions, timeout=10_000)
    assert widget.sessions["nopx.tif"].current.pixel_size_um == pytest.approx(0.5)


@pytest.mark.napari
def test_analysis_error_is_shown_not_raised(make_napari_viewer, qtbot, tmp_path):
    """An all-zero image ends with an error in the widget, not an exception in the GUI thread."""
    import dataclasses

    from spinalquant.napari._widget import SpinalquantWidget

    st = _cord_stack()
    f = tmp_path / "zeros.ome.tif"
    save_stack(dataclasses.replace(st, data=np.zeros_like(st.data)), f, format="ome")
    viewer = make_napari_viewer()
    viewer.open(str(f), plugin="spinalquant")
    widget = SpinalquantWidget(viewer)
    assert widget.analyse() is not None
    qtbot.waitUntil(lambda: widget.analyse_btn.isEnabled(), timeout=60_000)
    qtbot.wait(200)  # let any queued error slot run (pytest-qt fails the test on a raise)
    assert widget.status.text().startswith("error") and "empty" in widget.status.text()
    assert "zeros.ome.tif" not in widget.sessions


def test_qc_header_title_is_whole_and_clear_of_the_legend():
    """A long file name (plus ' (reviewed)') ran under the legend on 512-px-wide cord images."""
    from spinalquant import analyze
    from spinalquant.report import _header_figure, qc_image

    res = analyze(_cord_stack())
    title = "SOD1-G93A_m12_L4_section3_20x_Muse.ome.tif (reviewed)"
    fig = _header_figure(res, title, 512)
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    texts = fig.texts
    assert texts[0].get_text() == title and texts[0].get_fontsize() >= 10
    for t in texts:
        box = t.get_window_extent(renderer)
        assert box.x1 <= 512
        assert not (box.x1 > legend.x0 and box.y1 > legend.y0 and box.y0 < legend.y1), t.get_text()
    assert texts[1].get_fontsize() >= 7
    assert qc_image(res, title=title).shape == (256 + 90, 480, 3)  # 90-px header, min width 480


def test_notebook_prose_matches_what_is_shown():
    nb2 = nbformat.read(REPO / "notebooks" / "02_accuracy.ipynb", as_version=4)
    text2 = "\n".join(c.source for c in nb2.cells if c.cell_type == "markdown")
    assert "the plots show motor\nneurons and fibers" in text2  # no GFP-cell area plot is drawn
    nb3 = nbformat.read(REPO / "notebooks" / "03_study.ipynb", as_version=4)
    i = next(k for k, c in enumerate(nb3.cells) if "true_group" in c.source)
    note = nb3.cells[i + 1]
    assert note.cell_type == "markdown" and "fiber CSA comes out a few per cent high" in note.source
