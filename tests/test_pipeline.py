"""analyze(): the composed per-image analysis against phantom ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from spinalquant import Stack, analyze, detect_section
from spinalquant.config import Config
from spinalquant.errors import ImageContentError, MissingChannelError, PixelSizeError
from spinalquant.measure.matching import match_points
from spinalquant.pipeline import CORD_FIGURES, MUSCLE_FIGURES, TABLE_COLUMNS
from spinalquant.roi import polygon_mask
from spinalquant.synthetic import make_cord_section, make_muscle_section


def _yx(df):
    return df[["y_um", "x_um"]].to_numpy()


@pytest.fixture(scope="module")
def cord():
    ph = make_cord_section(seed=5, shape=(640, 640), pixel_size_um=0.5, with_roi=True)
    return ph, analyze(ph.stack)


def test_cord_figures_against_truth(cord):
    ph, res = cord
    assert res.section == "cord"
    s = res.summary
    t = ph.truth
    assert set(CORD_FIGURES) <= set(s)
    assert abs(s["n_gfp_cells"] - len(t["gfp_cells"])) <= max(1, 0.05 * len(t["gfp_cells"]))
    true_pct = 100 * t["gfp_cells"]["gfap_positive"].mean()
    assert abs(s["pct_gfp_gfap"] - true_pct) <= 5.0
    assert s["pct_gfp_gfap"] == pytest.approx(100 * s["n_gfp_gfap_cells"] / s["n_gfp_cells"])
    # the bleed-through subtracted before the calls is reported with them (phantom: 8 %
    # of the GFP signal; the estimate is in raw counts, so only its range is checked)
    coef = res.tables["gfp_cells"]["bleed_coefficient"].dropna().unique()
    assert len(coef) == 1 and s["gfap_bleed_coefficient"] == pytest.approx(coef[0])
    assert 0.0 < s["gfap_bleed_coefficient"] < 0.5
    assert s["n_motor_neurons"] == len(t["motor_neurons"])
    m = match_points(_yx(res.tables["motor_neurons"]), _yx(t["motor_neurons"]), max_dist=6.0)
    assert m["f1"] >= 0.95
    small = match_points(_yx(res.tables["motor_neurons"]), _yx(t["small_chat_cells"]), max_dist=4.0)
    assert small["tp"] == 0  # no small ChAT+ cell counted as a motor neuron
    m = match_points(_yx(res.tables["puncta"]), _yx(t["puncta"]), max_dist=1.0)
    assert m["f1"] >= 0.85
    assert -1 <= s["pearson_gfp_gfap"] <= 1 and 0 <= s["manders_m1_gfp_gfap"] <= 1
    assert s["roi_area_um2"] is None  # no ROI given
    for kind in ("gfp_cells", "astrocytes", "motor_neurons", "puncta"):
        assert list(res.tables[kind].columns[: len(TABLE_COLUMNS[kind])]) == list(TABLE_COLUMNS[kind])
    # label images agree with tables
    assert set(np.unique(res.labels["motor_neurons"])) - {0} == set(res.tables["motor_neurons"]["label"])


def test_roi_restricts_counts(cord):
    ph, _ = cord
    roi = polygon_mask(ph.roi, shape_yx=ph.stack.shape[2:])
    res = analyze(ph.stack, roi_mask=roi)
    t = ph.truth
    assert res.summary["roi_area_um2"] == pytest.approx(roi.sum() * 0.25)
    inside = t["motor_neurons"][t["motor_neurons"]["in_roi"]]
    assert res.summary["n_motor_neurons"] == len(inside)
    n_true = int(t["gfp_cells"]["in_roi"].sum())
    assert abs(res.summary["n_gfp_cells"] - n_true) <= max(1, 0.1 * n_true)
    assert res.summary["motor_neurons_per_mm2"] == pytest.approx(len(inside) / (roi.sum() * 0.25 / 1e6))


def test_channels_by_name_not_position():
    a = make_cord_section(seed=2, shape=(384, 384), n_motor_neurons=3, n_small_chat=5, n_gfp_cells=15, channel_names=("EGFP", "GFAP", "ChAT"))
    b = make_cord_section(seed=2, shape=(384, 384), n_motor_neurons=3, n_small_chat=5, n_gfp_cells=15, channel_names=("ChAT", "GFAP", "EGFP"))
    ra, rb = analyze(a.stack), analyze(b.stack)
    for k in ("n_gfp_cells", "n_gfp_gfap_cells", "n_motor_neurons", "n_astrocytes"):
        assert ra.summary[k] == rb.summary[k]
    assert ra.summary["n_puncta"] is None  # no synaptic channel: figure left empty


def test_only_the_present_channels_are_analysed():
    ph = make_cord_section(seed=4, shape=(384, 384), n_motor_neurons=3, n_small_chat=5, channel_names=("ChAT",))
    res = analyze(ph.stack)
    assert res.summary["n_motor_neurons"] == len(ph.truth["motor_neurons"])
    assert res.summary["n_gfp_cells"] is None and res.summary["pct_gfp_gfap"] is None
    assert set(res.tables) == {"motor_neurons"}


def test_config_mapping_overrides_names():
    ph = make_cord_section(seed=4, shape=(256, 256), n_motor_neurons=2, n_small_chat=3, n_gfp_cells=8, channel_names=("EGFP", "ChAT"))
    renamed = Stack(ph.stack.data, ("Ch1", "Ch2"), ph.stack.pixel_size_um)
    with pytest.raises(MissingChannelError, match="Ch1"):
        detect_section(renamed)
    # the hint's example names one of the file's own channels
    other = Stack(ph.stack.data, ("C0", "C1"), ph.stack.pixel_size_um)
    with pytest.raises(MissingChannelError, match=r'\[channels\] gfp = "C0"'):
        detect_section(other)
    # ... and not the nuclear stain
    dapi = Stack(ph.stack.data, ("DAPI", "NeuN"), ph.stack.pixel_size_um)
    with pytest.raises(MissingChannelError, match=r'\[channels\] gfp = "NeuN"'):
        detect_section(dapi)
    cfg = Config.from_dict({"channels": {"gfp": "Ch1", "chat": 1}})
    res = analyze(renamed, cfg)
    assert res.summary["n_gfp_cells"] == analyze(ph.stack).summary["n_gfp_cells"]


def test_three_d_mode_counts_each_cell_once():
    ph = make_cord_section(seed=6, shape=(384, 384), n_motor_neurons=3, n_small_chat=5, n_gfp_cells=15, n_z=6, channel_names=("EGFP",))
    r2 = analyze(ph.stack)
    r3 = analyze(ph.stack, Config.from_dict({"image": {"mode": "3d"}}))
    n_true = len(ph.truth["gfp_cells"])
    assert abs(r3.summary["n_gfp_cells"] - n_true) <= max(1, 0.1 * n_true)
    assert abs(r3.summary["n_gfp_cells"] - r2.summary["n_gfp_cells"]) <= max(1, 0.1 * n_true)


@pytest.mark.parametrize("stain", ["laminin", "he"])
def test_muscle_figures(stain):
    ph = make_muscle_section(seed=1, shape=(640, 640), pixel_size_um=0.65, stain=stain)
    res = analyze(ph.stack)
    assert res.section == "muscle"
    truth = ph.truth["fibers"]
    truth = truth[~truth["touches_border"]]
    assert set(MUSCLE_FIGURES) <= set(res.summary)
    assert abs(res.summary["n_fibers"] - len(truth)) <= 0.08 * len(truth)
    assert res.summary["fiber_csa_median_um2"] == pytest.approx(truth["area_um2"].median(), rel=0.08)
    assert res.summary["fiber_min_feret_mean_um"] == pytest.approx(truth["min_feret_um"].mean(), rel=0.08)
    assert "fiber_histogram" in res.tables


def test_no_pixel_size_is_an_error_unless_configured():
    ph = make_cord_section(seed=1, shape=(256, 256), n_motor_neurons=2, n_small_chat=3, n_gfp_cells=8, channel_names=("ChAT",))
    bare = Stack(ph.stack.data, ph.stack.channel_names, (None, None, None))
    with pytest.raises(PixelSizeError, match="pixel_size_um"):
        analyze(bare)
    res = analyze(bare, Config.from_dict({"image": {"pixel_size_um": 0.5}}))
    assert res.pixel_size_um == 0.5


def test_inputs_are_not_modified(cord):
    ph, _ = cord
    before = ph.stack.data.copy()
    analyze(ph.stack)
    np.testing.assert_array_equal(before, ph.stack.data)


def test_an_empty_channel_is_named_as_in_the_file():
    ph = make_cord_section(seed=4, shape=(256, 256), n_motor_neurons=2, n_small_chat=3, n_gfp_cells=8,
                           channel_names=("EGFP", "ChAT"))
    data = ph.stack.data.copy()
    data[1] = 0
    blank = Stack(data, ("EGFP", "ChAT-647"), ph.stack.pixel_size_um)
    with pytest.raises(ImageContentError, match=r"CHAT channel \('ChAT-647'\) is empty"):
        analyze(blank)


def test_gfp_and_gfap_alone_keep_the_gfap_positive_donor_cells():
    """With GFAP as the only other marker, a GFAP+ donor cell is "bright in every other
    channel" like an autofluorescent granule; the granule test needs two other markers
    (besides a nuclear stain), so it is not made and no donor cell is lost (1 of 8 was kept)."""
    ph = make_cord_section(seed=1, shape=(256, 256), n_motor_neurons=2, n_gfp_cells=8)
    names = list(ph.stack.channel_names)
    truth = ph.truth["gfp_cells"]
    for keep in (("EGFP", "GFAP"), ("DAPI", "EGFP", "GFAP")):
        idx = [names.index(k) for k in keep]
        s = analyze(Stack(ph.stack.data[idx], keep, ph.stack.pixel_size_um)).summary
        assert s["n_gfp_cells"] == len(truth), (keep, s["n_gfp_cells"])
        assert s["pct_gfp_gfap"] == pytest.approx(100 * truth["gfap_positive"].mean()), keep


@pytest.mark.parametrize("seed", [33, 34])
def test_host_astrocytes_leave_out_the_gfap_positive_donor_cells(seed):
    """``n_astrocytes`` counts every GFAP+ astrocyte, donor-derived ones included (more
    engraftment would read as more astrogliosis); ``n_host_astrocytes`` leaves out those
    on GFP+ cells (``gfp_positive`` in astrocytes.csv)."""
    ph = make_cord_section(seed=seed, shape=(640, 640), pixel_size_um=0.5, n_gfp_cells=30, n_astrocytes=20)
    res = analyze(ph.stack)
    s, astro = res.summary, res.tables["astrocytes"]
    n_donor = int(ph.truth["gfp_cells"]["gfap_positive"].sum())
    assert abs(s["n_host_astrocytes"] - 20) <= 2, s["n_host_astrocytes"]
    # the flagged ones are donor cells: their centres lie on true GFP+ cells
    flagged = astro[astro["gfp_positive"]]
    on_cell = ph.labels["gfp_cells"][(flagged["y_um"] / 0.5).round().astype(int),
                                     (flagged["x_um"] / 0.5).round().astype(int)] > 0
    assert len(flagged) >= 0.8 * n_donor and on_cell.mean() >= 0.95, (len(flagged), n_donor, on_cell.mean())
    assert s["n_host_astrocytes"] == int((~astro["gfp_positive"]).sum())
    assert s["host_astrocytes_per_mm2"] == pytest.approx(s["n_host_astrocytes"] / (320 * 320 / 1e6))
