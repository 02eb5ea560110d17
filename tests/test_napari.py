"""napari plugin: readers, sample data, and the analyse/review widget in a real viewer.

Viewer tests need a display: run them under Xvfb, e.g.
``QT_QPA_PLATFORM=offscreen xvfb-run -a python -m pytest tests/test_napari.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinalquant.batch import InputImage, run_batch
from spinalquant.config import Config
from spinalquant.io import save_stack
from spinalquant.synthetic import make_cord_section

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
FAST = Config.from_dict({"output": {"qc": False, "report": False}})


def _cord(seed: int):
    return make_cord_section(seed=seed, shape=(288, 288), n_gfp_cells=10, n_motor_neurons=3,
                             n_small_chat=3, n_granules=3)


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("napari")
    imgs = root / "imgs"
    imgs.mkdir()
    items = []
    for i, seed in enumerate((41, 42)):
        f = imgs / f"cord_{i}.ome.tif"
        save_stack(_cord(seed).stack, f, format="ome")
        items.append(InputImage(f, f.name))
    out = root / "out"
    run_batch(items, out, FAST, workers=1)
    return out


# ------------------------------------------------------------ pure readers
def test_reader_claims_images_and_results_only(tmp_path, results_folder):
    from spinalquant.napari._reader import get_reader

    assert get_reader(str(SAMPLES / "cord_L4_01.ome.tif")) is not None
    assert get_reader(str(results_folder)) is not None
    assert get_reader(str(results_folder / "labels" / "cord_0.ome.tif")) is not None
    assert get_reader(str(tmp_path)) is None  # a plain folder
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_reader_channel_layers_named_coloured_scaled():
    from spinalquant.napari._reader import read

    f = SAMPLES / "cord_L5_02.tif"
    if not f.is_file():
        pytest.skip("sample_images/cord_L5_02.tif not present")
    layers = read(str(f))
    images = {kw["name"]: (data, kw) for data, kw, kind in layers if kind == "image"}
    assert set(images) == {"GFAP", "EGFP", "ChAT", "Synaptophysin", "DAPI"}
    assert images["EGFP"][1]["colormap"] == "green"
    assert images["GFAP"][1]["colormap"] == "magenta"
    assert images["ChAT"][1]["colormap"] == "cyan"
    assert images["DAPI"][1]["colormap"] == "blue"
    assert images["EGFP"][1]["scale"] == pytest.approx((0.62, 0.62))
    assert images["EGFP"][0].shape == (512, 512)
    assert [kind for *_, kind in layers].count("shapes") == 1  # the sidecar ROI


def test_reader_rgb_and_results(results_folder):
    from spinalquant.napari._reader import read

    he = SAMPLES / "ta_he_01.tif"
    if he.is_file():
        (data, kw, kind), = read(str(he))
        assert kind == "image" and kw["rgb"] and data.shape[-1] == 3
    layers = read(str(results_folder))
    labels = [(d, kw) for d, kw, kind in layers if kind == "labels"]
    kinds = {(kw["metadata"]["spinalquant"]["image"], kw["metadata"]["spinalquant"]["kind"])
             for _, kw in labels}
    assert ("cord_0.ome.tif", "motor_neurons") in kinds and ("cord_1.ome.tif", "gfp_cells") in kinds
    mn = pd.read_csv(results_folder / "objects" / "motor_neurons.csv").query("image == 'cord_0.ome.tif'")
    data, kw = next((d, kw) for d, kw in labels if kw["metadata"]["spinalquant"]["kind"] == "motor_neurons")
    assert kw["features"]["index"].tolist() == mn["label"].tolist()
    assert set(np.unique(data)) - {0} == set(mn["label"])
    assert any(kind == "points" for *_, kind in layers)


# ------------------------------------------------------------------ viewer
def _layer(viewer, image: str, kind: str):
    for lyr in viewer.layers:
        meta = lyr.metadata.get("spinalquant", {})
        if meta.get("image") == image and meta.get("kind") == kind:
            return lyr
    raise LookupError(f"no {kind} layer for {image}")


@pytest.mark.napari
def test_open_results_delete_neuron_save(make_napari_viewer, results_folder, tmp_path):
    import shutil

    from spinalquant.napari._widget import SpinalquantWidget

    out = tmp_path / "out"
    shutil.copytree(results_folder, out)
    before = pd.read_csv(out / "objects" / "motor_neurons.csv")
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="spinalquant")
    widget = SpinalquantWidget(viewer)
    mn_layer = _layer(viewer, "cord_0.ome.tif", "motor_neurons")
    assert "area_um2" in mn_layer.features and len(mn_layer.features) >= 2
    viewer.layers.selection.active = mn_layer

    # click-to-inspect: select a neuron, the widget shows its row
    victim = int(mn_layer.features["label"].iloc[-1])
    if mn_layer.selected_label == victim:
        mn_layer.selected_label = victim + 1
    mn_layer.selected_label = victim
    assert widget.object_table.rowCount() > 3
    assert f"motor_neurons {victim}" in widget.selected_label.text()

    # delete it with the layer's own data (as the eraser/fill tools do) and save
    data = mn_layer.data.copy()
    data[data == victim] = 0
    mn_layer.data = data
    widget.save()
    after = pd.read_csv(out / "objects" / "motor_neurons.csv")
    n0 = (before["image"] == "cord_0.ome.tif").sum()
    assert (after["image"] == "cord_0.ome.tif").sum() == n0 - 1
    assert (after["image"] == "cord_1.ome.tif").sum() == (before["image"] == "cord_1.ome.tif").sum()
    summ = pd.read_csv(out / "summary.csv").set_index("image")
    assert summ.loc["cord_0.ome.tif", "n_motor_neurons"] == n0 - 1
    run = json.loads((out / "run.json").read_text())
    assert run["images"]["cord_0.ome.tif"]["review"]["reviewed"] is True
    assert len(mn_layer.features) == n0 - 1


@pytest.mark.napari
def test_analyse_flip_gfap_save(make_napari_viewer, qtbot, tmp_path):
    from spinalquant.napari._widget import SpinalquantWidget

    f = tmp_path / "cord.ome.tif"
    save_stack(_cord(43).stack, f, format="ome")
    viewer = make_napari_viewer()
    viewer.open(str(f), plugin="spinalquant")
    assert {lyr.name for lyr in viewer.layers} >= {"EGFP", "GFAP", "ChAT"}
    widget = SpinalquantWidget(viewer)
    assert widget.channel_combos["gfp"].currentText() == "EGFP"
    assert widget.channel_combos["chat"].currentText() == "ChAT"
    worker = widget.analyse()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: "cord.ome.tif" in widget.sessions, timeout=10_000)
    gfp = _layer(viewer, "cord.ome.tif", "gfp_cells")
    assert _layer(viewer, "cord.ome.tif", "puncta").data.shape[1] == 2
    assert _layer(viewer, "cord.ome.tif", "motor_neurons").scale[-1] == pytest.approx(0.5)
    feats = gfp.features
    n = len(feats)
    pos = [lab for lab, p in zip(feats["label"], feats["gfap_positive"], strict=True) if p is True]
    assert n >= 3 and pos
    pct0 = widget.sessions["cord.ome.tif"].current.summary["pct_gfp_gfap"]
    assert pct0 == pytest.approx(100.0 * len(pos) / n)
    # the GFAP+ colour is distinct from the GFAP- colour
    colours = gfp.colormap.color_dict
    neg = [lab for lab in feats["label"] if lab not in pos]
    if neg:
        assert not np.allclose(colours[pos[0]], colours[neg[0]])

    viewer.layers.selection.active = gfp
    gfp.selected_label = int(pos[0])
    assert f"gfp_cells {pos[0]}" in widget.selected_label.text() or gfp.selected_label == pos[0]
    widget.flip_gfap()
    pct1 = widget.sessions["cord.ome.tif"].current.summary["pct_gfp_gfap"]
    assert pct1 == pytest.approx(100.0 * (len(pos) - 1) / n)
    assert gfp.features.set_index("label").loc[pos[0], "gfap_positive"] is False

    out = tmp_path / "results"
    widget.save(str(out))
    s = pd.read_csv(out / "summary.csv")
    assert s.loc[0, "image"] == "cord.ome.tif"
    assert s.loc[0, "pct_gfp_gfap"] == pytest.approx(pct1)
    edits = json.loads((out / "run.json").read_text())["images"]["cord.ome.tif"]["review"]["edits"]
    assert edits == [{"kind": "gfp_cells", "action": "flip_gfap", "label": int(pos[0]),
                      "gfap_positive": False}]
