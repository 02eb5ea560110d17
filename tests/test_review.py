"""Review logic without Qt: edits, recompute, save into a results folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest

from spinalquant.batch import InputImage, part_key, run_batch
from spinalquant.config import Config
from spinalquant.io import save_stack
from spinalquant.pipeline import analyze
from spinalquant.review import (
    config_to_toml,
    flip_gfap,
    label_edits,
    load_image_results,
    recompute,
    result_images,
    save_review,
)
from spinalquant.synthetic import make_cord_section, make_muscle_section

SHAPE = (288, 288)
FAST = Config.from_dict({"output": {"qc": False, "report": False}})


def _cord(seed: int):
    return make_cord_section(seed=seed, shape=SHAPE, n_gfp_cells=10, n_motor_neurons=3,
                             n_small_chat=3, n_granules=3)


@pytest.fixture(scope="module")
def cord_results():
    res = analyze(_cord(21).stack)
    assert res.tables["motor_neurons"].shape[0] >= 2, "phantom must give >= 2 motor neurons"
    assert res.tables["gfp_cells"].shape[0] >= 4
    return res


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A results folder of two cord images made by the batch runner."""
    root = tmp_path_factory.mktemp("review")
    imgs = root / "imgs"
    imgs.mkdir()
    for i, seed in enumerate((31, 32)):
        save_stack(_cord(seed).stack, imgs / f"cord_{i}.ome.tif", format="ome")
    items = [InputImage(imgs / f"cord_{i}.ome.tif", f"cord_{i}.ome.tif") for i in range(2)]
    return root, imgs, items


# ------------------------------------------------------------------- edits
def test_label_edits_names_each_action():
    before = np.zeros((30, 30), np.int32)
    before[2:8, 2:8] = 1
    before[2:8, 12:18] = 2
    before[20:28, 2:10] = 3
    before[20:28, 20:28] = 4
    after = before.copy()
    after[after == 2] = 0                 # delete 2
    after[after == 4] = 1                 # merge 4 into 1
    after[24:28, 2:10] = 5                # split 5 off 3
    after[12:16, 22:26] = 6               # paint a new object 6
    edits = {(e["action"], e["label"]): e for e in label_edits("k", before, after)}
    assert set(edits) == {("delete", 2), ("merge", 4), ("split", 5), ("add", 6)}
    assert edits[("merge", 4)]["into"] == 1
    assert edits[("split", 5)]["from"] == 3
    assert label_edits("k", before, before) == []
    grown = before.copy()
    grown[8, 2:8] = 1
    assert label_edits("k", before, grown) == [{"kind": "k", "action": "modify", "label": 1}]


def test_flip_gfap_toggles_and_keeps_input():
    t = pd.DataFrame({"label": [1, 2, 3],
                      "gfap_positive": pd.array([True, False, pd.NA], dtype="boolean")})
    first = flip_gfap(t, 1)
    assert first == {1: False}
    assert flip_gfap(t, 3, first) == {1: False, 3: True}
    assert first == {1: False}
    with pytest.raises(KeyError):
        flip_gfap(t, 9)


# --------------------------------------------------------------- recompute
def test_recompute_without_edits_reproduces_the_analysis(cord_results):
    new = recompute(cord_results, dict(cord_results.labels))
    for kind in ("gfp_cells", "astrocytes", "motor_neurons", "puncta"):
        pd.testing.assert_frame_equal(new.tables[kind], cord_results.tables[kind],
                                      check_dtype=False, obj=kind)
    for key in ("n_gfp_cells", "n_gfp_gfap_cells", "n_motor_neurons", "n_puncta",
                "puncta_per_motor_neuron", "pct_gfp_gfap"):
        assert new.summary[key] == pytest.approx(cord_results.summary[key]), key
    assert new.provenance["edits"] == []


def test_deleting_a_motor_neuron_updates_its_figures(cord_results):
    mn = cord_results.tables["motor_neurons"]
    victim = int(mn["label"].iloc[0])
    lab = cord_results.labels["motor_neurons"].copy()
    lab[lab == victim] = 0
    new = recompute(cord_results, {"motor_neurons": lab})
    t = new.tables["motor_neurons"]
    assert len(t) == len(mn) - 1 and victim not in set(t["label"])
    assert new.summary["n_motor_neurons"] == len(mn) - 1
    assert new.summary["puncta_per_motor_neuron"] == pytest.approx(t["n_puncta"].mean())
    kept = mn[mn["label"] != victim].reset_index(drop=True)
    np.testing.assert_allclose(t["area_um2"], kept["area_um2"])
    assert new.provenance["edits"] == [{"kind": "motor_neurons", "action": "delete", "label": victim}]
    # the input Results is not modified
    assert len(cord_results.tables["motor_neurons"]) == len(mn)
    assert (cord_results.labels["motor_neurons"] == victim).any()


def test_gfap_flip_changes_pct_by_one_cell(cord_results):
    t = cord_results.tables["gfp_cells"]
    n = len(t)
    npos = int(t["gfap_positive"].fillna(False).sum())
    cell = int(t.loc[t["gfap_positive"].fillna(False).astype(bool), "label"].iloc[0])
    new = recompute(cord_results, {}, gfap_overrides=flip_gfap(t, cell))
    assert new.summary["n_gfp_gfap_cells"] == npos - 1
    assert new.summary["pct_gfp_gfap"] == pytest.approx(100.0 * (npos - 1) / n)
    row = new.tables["gfp_cells"].set_index("label").loc[cell]
    assert not bool(row["gfap_positive"])
    assert {"kind": "gfp_cells", "action": "flip_gfap", "label": cell,
            "gfap_positive": False} in new.provenance["edits"]


def test_deleting_a_gfp_cell_keeps_the_other_calls(cord_results):
    t = cord_results.tables["gfp_cells"]
    victim = int(t["label"].iloc[0])
    lab = cord_results.labels["gfp_cells"].copy()
    lab[lab == victim] = 0
    new = recompute(cord_results, {"gfp_cells": lab})
    rest = t[t["label"] != victim].reset_index(drop=True)
    got = new.tables["gfp_cells"]
    assert got["label"].tolist() == rest["label"].tolist()
    assert got["gfap_positive"].tolist() == rest["gfap_positive"].tolist()
    assert new.summary["n_gfp_cells"] == len(t) - 1


def test_deleting_a_donor_cell_makes_its_astrocyte_a_host_astrocyte(cord_results):
    astro = cord_results.tables["astrocytes"]
    donors = astro[astro["gfp_positive"]]
    assert len(donors) >= 1, "phantom must have an astrocyte on a GFP+ cell"
    a = cord_results.labels["astrocytes"] == int(donors["label"].iloc[0])
    lab = cord_results.labels["gfp_cells"].copy()
    lab[np.isin(lab, np.unique(lab[a]))] = 0  # the GFP+ cell(s) under that astrocyte
    new = recompute(cord_results, {"gfp_cells": lab})
    assert new.summary["n_host_astrocytes"] == cord_results.summary["n_host_astrocytes"] + 1
    assert new.summary["n_astrocytes"] == cord_results.summary["n_astrocytes"]


def test_new_gfp_cell_is_called_from_the_gfap_plane(cord_results):
    lab = cord_results.labels["gfp_cells"].copy()
    free = np.argwhere(lab == 0)
    y, x = free[len(free) // 2]
    new_id = int(lab.max()) + 1
    lab[max(0, y - 6): y + 6, max(0, x - 6): x + 6] = np.where(
        lab[max(0, y - 6): y + 6, max(0, x - 6): x + 6] == 0, new_id,
        lab[max(0, y - 6): y + 6, max(0, x - 6): x + 6])
    new = recompute(cord_results, {"gfp_cells": lab})
    row = new.tables["gfp_cells"].set_index("label").loc[new_id]
    assert not pd.isna(row["gfap_positive"])  # called, not unknown
    assert row["area_um2"] > 0
    no_planes = recompute(
        type(cord_results)(cord_results.section, cord_results.summary, cord_results.tables,
                           cord_results.labels, {}, cord_results.pixel_size_um), {"gfp_cells": lab})
    assert pd.isna(no_planes.tables["gfp_cells"].set_index("label").loc[new_id, "gfap_positive"])


def test_muscle_delete_fiber_updates_summary():
    ph = make_muscle_section(seed=5, shape=(320, 320), pixel_size_um=0.8)
    res = analyze(ph.stack)
    fib = res.tables["fibers"]
    assert len(fib) >= 3
    victim = int(fib["label"].iloc[1])
    lab = res.labels["fibers"].copy()
    lab[lab == victim] = 0
    new = recompute(res, {"fibers": lab})
    rest = fib[fib["label"] != victim]
    assert new.summary["n_fibers"] == len(fib) - 1
    assert new.summary["fiber_csa_mean_um2"] == pytest.approx(rest["area_um2"].mean())
    assert victim not in set(new.tables["fibers"]["label"])


# -------------------------------------------------------------------- save
def test_save_review_replaces_only_that_image(study):
    root, _imgs, items = study
    out = root / "out"
    run_batch(items, out, FAST, workers=1)
    before = {k: pd.read_csv(out / "objects" / f"{k}.csv") for k in ("motor_neurons", "gfp_cells")}
    summ0 = pd.read_csv(out / "summary.csv").set_index("image")
    assert result_images(out) == ["cord_0.ome.tif", "cord_1.ome.tif"]

    res = load_image_results(out, "cord_0.ome.tif")
    assert set(res.labels) >= {"motor_neurons", "gfp_cells"}
    mn = res.tables["motor_neurons"]
    victim = int(mn["label"].iloc[0])
    lab = res.labels["motor_neurons"].copy()
    lab[lab == victim] = 0
    new = recompute(res, {"motor_neurons": lab})
    save_review(out, "cord_0.ome.tif", new)

    after = pd.read_csv(out / "objects" / "motor_neurons.csv")
    b0, a0 = (before["motor_neurons"].query("image == 'cord_0.ome.tif'"),
              after.query("image == 'cord_0.ome.tif'"))
    assert len(a0) == len(b0) - 1
    pd.testing.assert_frame_equal(  # the other image's rows are untouched
        after.query("image == 'cord_1.ome.tif'").reset_index(drop=True),
        before["motor_neurons"].query("image == 'cord_1.ome.tif'").reset_index(drop=True))
    summ = pd.read_csv(out / "summary.csv").set_index("image")
    assert summ.loc["cord_0.ome.tif", "n_motor_neurons"] == len(a0)
    pd.testing.assert_series_equal(summ.loc["cord_1.ome.tif"], summ0.loc["cord_1.ome.tif"])
    assert list(summ.index) == list(summ0.index)
    run = json.loads((out / "run.json").read_text())
    review = run["images"]["cord_0.ome.tif"]["review"]
    assert review["reviewed"] is True and review["n_saves"] == 1
    assert {"kind": "motor_neurons", "action": "delete", "label": victim} in review["edits"]
    assert "review" not in run["images"]["cord_1.ome.tif"]
    done = json.loads((out / ".parts" / part_key("cord_0.ome.tif") / "done.json").read_text())
    assert done["reviewed"] is True
    # the saved labels are the edited ones
    assert not (load_image_results(out, "cord_0.ome.tif").labels["motor_neurons"] == victim).any()

    # a re-run with the same parameters keeps the review (unchanged inputs are skipped)
    run_batch(items, out, FAST, workers=1)
    again = pd.read_csv(out / "summary.csv").set_index("image")
    assert again.loc["cord_0.ome.tif", "n_motor_neurons"] == len(a0)
    run = json.loads((out / "run.json").read_text())
    assert run["images"]["cord_0.ome.tif"]["review"]["reviewed"] is True


def test_save_review_into_a_new_folder(tmp_path, cord_results):
    f = tmp_path / "img.ome.tif"
    save_stack(_cord(21).stack, f, format="ome")
    t = cord_results.tables["gfp_cells"]
    cell = int(t["label"].iloc[0])
    new = recompute(cord_results, {}, gfap_overrides=flip_gfap(t, cell))
    out = tmp_path / "results"
    summary = save_review(out, "img.ome.tif", new, source_path=f)
    assert summary["image"].tolist() == ["img.ome.tif"]
    s = pd.read_csv(out / "summary.csv")
    assert s.loc[0, "pct_gfp_gfap"] == pytest.approx(new.summary["pct_gfp_gfap"])
    assert (out / "labels" / "img.ome.tif").is_file()
    assert (out / "qc" / "img.png").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["images"]["img.ome.tif"]["review"]["edits"][0]["action"] == "flip_gfap"
    assert len(pd.read_csv(out / "objects" / "gfp_cells.csv")) == len(t)


# ------------------------------------------------------------------ config
def test_config_to_toml_round_trips():
    cfg = Config.from_dict({"motor_neurons": {"min_area_um2": 275}, "channels": {"gfp": "Ch 2", "chat": 3},
                            "image": {"pixel_size_um": 0.31}})
    back = Config.from_dict(tomllib.loads(config_to_toml(cfg)))
    assert back.to_dict() == cfg.to_dict()
    assert Config.from_dict(tomllib.loads(config_to_toml(Config()))).to_dict() == Config().to_dict()


def test_core_and_plugin_modules_import_without_qt():
    code = ("import sys, spinalquant, spinalquant.pipeline, spinalquant.batch, spinalquant.review, "
            "spinalquant.napari, spinalquant.napari._reader, spinalquant.napari._layers, "
            "spinalquant.napari._sample_data; "
            "bad = [m for m in ('qtpy', 'napari', 'PyQt5', 'magicgui') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
