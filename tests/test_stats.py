"""Group statistics: sample sheets, per-animal aggregation, tests checked against scipy and hand
calculations, run_stats/CLI on a results folder, and an end-to-end synthetic study."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from spinalquant.stats import (
    GroupSizeError,
    SampleSheetError,
    aggregate_per_animal,
    compare_groups,
    describe_groups,
    dunn_test,
    hedges_g,
    match_images,
    read_sample_sheet,
    run_stats,
)


# ------------------------------------------------------------ sample sheet
def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_sample_sheet_reads_factors_and_strips(tmp_path):
    p = _write(
        tmp_path / "s.csv", "Image, Animal ,group,sex\n a.tif ,m1,vehicle,F\nb.tif,m2,Muse,M\n"
    )
    df = read_sample_sheet(p)
    assert df["image"].tolist() == ["a.tif", "b.tif"]
    assert df["animal"].tolist() == ["m1", "m2"]
    assert df["sex"].tolist() == ["F", "M"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("image,group\na.tif,vehicle\n", ["missing column", "animal"]),
        ("image,animal,group\na.tif,m1,vehicle\na.tif,m2,Muse\n", ["more than once", "a.tif"]),
        ("image,animal,group\na.tif,m1,vehicle\nb.tif,m1,Muse\n", ["more than one group", "m1"]),
        ("image,animal,group\na.tif,,vehicle\n", ["empty 'animal'", "line(s) 2"]),
        ("image,animal,group\n", ["no rows"]),
    ],
)
def test_sample_sheet_errors_are_clear(tmp_path, text, words):
    p = _write(tmp_path / "s.csv", text)
    with pytest.raises(SampleSheetError) as exc:
        read_sample_sheet(p)
    for w in words:
        assert w in str(exc.value)


def test_sample_sheet_missing_file(tmp_path):
    with pytest.raises(SampleSheetError, match="not found"):
        read_sample_sheet(tmp_path / "nope.csv")


def test_match_images_by_path_name_and_stem():
    res = ["cord/m1_s1.ome.tif", "cord/m1_s2.ome.tif", "muscle/m1_TA.tif"]
    m = match_images(res, ["cord/m1_s1.ome.tif", "m1_s2.ome.tif", "m1_TA", "other.tif"])
    assert m == {
        "cord/m1_s1.ome.tif": "cord/m1_s1.ome.tif",
        "m1_s2.ome.tif": "cord/m1_s2.ome.tif",
        "m1_TA": "muscle/m1_TA.tif",
    }
    with pytest.raises(SampleSheetError, match="several results"):
        match_images(["a/x.tif", "b/x.tif"], ["x.tif"])


# --------------------------------------------------------- hand calculations
def test_dunn_matches_hand_calculation_without_ties():
    # ranks = values; mean ranks 2, 5, 8; N = 9; var0 = 9*10/12 = 7.5; se = sqrt(7.5 * 2/3) = sqrt(5)
    d = dunn_test({"a": [1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]}, adjust="holm")
    assert d[["group_a", "group_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    z = np.array([-3, -6, -3]) / math.sqrt(5)
    np.testing.assert_allclose(d["z"], z, rtol=1e-12)
    p = 2 * sps.norm.sf(np.abs(z))
    np.testing.assert_allclose(d["p"], p, rtol=1e-12)
    # Holm: smallest p (a-c) x3; the two others x2, then monotone: both 2 * p_ab
    np.testing.assert_allclose(d["p_adj"], [2 * p[0], 3 * p[1], 2 * p[0]], rtol=1e-12)
    assert d["p_adj"].iloc[1] == pytest.approx(0.021871, abs=1e-6)
    bonf = dunn_test({"a": [1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]}, adjust="bonferroni")
    np.testing.assert_allclose(bonf["p_adj"], np.minimum(3 * p, 1), rtol=1e-12)


def test_dunn_tie_correction_matches_hand_calculation():
    # values 1,1,2 | 2,3,3 -> ranks 1.5,1.5,3.5 | 3.5,5.5,5.5; three ties of size 2: T = 3 * (8 - 2) = 18
    # var0 = 6*7/12 - 18 / (12 * 5) = 3.2; se = sqrt(3.2 * 2/3); z = (6.5/3 - 14.5/3) / se
    d = dunn_test({"a": [1, 1, 2], "b": [2, 3, 3]}, adjust="none")
    z = (6.5 / 3 - 14.5 / 3) / math.sqrt(3.2 * 2 / 3)
    assert d["z"].iloc[0] == pytest.approx(z, rel=1e-12)
    assert d["z"].iloc[0] == pytest.approx(-1.825742, abs=1e-6)
    assert d["p_adj"].iloc[0] == d["p"].iloc[0]


def test_dunn_two_groups_equals_mann_whitney_normal_approximation():
    # with two groups Dunn's z is the tie-corrected Mann-Whitney z (no continuity correction)
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 9), rng.normal(0.8, 1, 11)
    d = dunn_test({"a": a, "b": b})
    mw = sps.mannwhitneyu(a, b, method="asymptotic", use_continuity=False)
    assert d["p"].iloc[0] == pytest.approx(mw.pvalue, rel=1e-9)


def test_hedges_g_hand_calculation():
    # means 2 and 4, both SD 1 -> d = -2; J = 1 - 3 / (4 * 6 - 9) = 0.8 -> g = -1.6
    g, lo, hi = hedges_g([1, 2, 3], [3, 4, 5])
    assert g == pytest.approx(-1.6)
    se = math.sqrt(6 / 9 + 1.6**2 / 12)
    assert (lo, hi) == pytest.approx((-1.6 - 1.959964 * se, -1.6 + 1.959964 * se), abs=1e-5)
    assert all(math.isnan(v) for v in hedges_g([1.0], [2.0, 3.0]))


def _animals(groups: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    k = 0
    for g, vals in groups.items():
        for v in vals:
            k += 1
            rows.append({"animal": f"m{k}", "group": g, "v": v})
    return pd.DataFrame(rows)


def test_compare_groups_known_answer():
    # a = 1,2,3; b = 4,5,6: SSb = 13.5, SSw = 4, F = 13.5 / (4/4) = 13.5, eta2 = 13.5/17.5
    res = compare_groups(_animals({"a": [1, 2, 3], "b": [4, 5, 6]}), "v")
    omni = res.iloc[0]
    assert omni["comparison"] == "all groups"
    assert omni["anova_f"] == pytest.approx(13.5)
    assert omni["eta_squared"] == pytest.approx(13.5 / 17.5)
    # Kruskal: H = 12/(6*7) * (6^2/3 + 15^2/3) - 3*7 = 3.857142...; epsilon2 = H / (N - 1)
    h = 12 / 42 * (36 / 3 + 225 / 3) - 21
    assert omni["kruskal_h"] == pytest.approx(h)
    assert omni["epsilon_squared"] == pytest.approx(h / 5)
    pair = res.iloc[1]
    assert pair["comparison"] == "a vs b"
    assert pair["diff"] == pytest.approx(-3.0)
    # 2 groups: Tukey p equals the pooled t-test p; CI = diff +- t * sqrt(2 * MSE / n)
    assert pair["tukey_p"] == pytest.approx(sps.ttest_ind([1, 2, 3], [4, 5, 6]).pvalue, rel=1e-6)
    half = sps.t.ppf(0.975, 4) * math.sqrt(2 * 1.0 / 3)
    assert (pair["diff_ci_low"], pair["diff_ci_high"]) == pytest.approx(
        (-3 - half, -3 + half), rel=1e-4
    )
    assert (pair["ci_low_a"], pair["ci_high_a"]) == pytest.approx(
        sps.t.interval(0.95, 2, loc=2, scale=1 / math.sqrt(3))
    )


def test_compare_groups_agrees_with_scipy_three_groups():
    rng = np.random.default_rng(11)
    data = {
        "vehicle": rng.normal(6, 1.2, 5),
        "MSC": rng.normal(8, 1.2, 6),
        "Muse": rng.normal(10, 1.2, 5),
    }
    df = _animals({k: list(v) for k, v in data.items()})
    res = compare_groups(df, "v", adjust="bonferroni")
    arrays = list(data.values())
    omni = res.iloc[0]
    f = sps.f_oneway(*arrays)
    k = sps.kruskal(*arrays)
    assert omni["anova_p"] == pytest.approx(f.pvalue, rel=1e-10)
    assert omni["kruskal_p"] == pytest.approx(k.pvalue, rel=1e-10)
    t = sps.tukey_hsd(*arrays)
    ci = t.confidence_interval(0.95)
    pairs = res.iloc[1:]
    assert pairs["comparison"].tolist() == ["vehicle vs MSC", "vehicle vs Muse", "MSC vs Muse"]
    for (_, r), (i, j) in zip(pairs.iterrows(), [(0, 1), (0, 2), (1, 2)], strict=True):
        assert r["tukey_p"] == pytest.approx(t.pvalue[i, j], rel=1e-8)
        assert r["diff"] == pytest.approx(t.statistic[i, j], rel=1e-10)
        assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx(
            (ci.low[i, j], ci.high[i, j])
        )
        assert r["n_a"] == len(arrays[i])
    assert pairs["dunn_p_adj"].tolist() == pytest.approx(
        np.minimum(3 * pairs["dunn_p"].to_numpy(), 1)
    )
    assert res.iloc[2]["tukey_p"] < 0.01  # 4-unit difference with SD 1.2 is found


def test_compare_groups_one_animal_group_says_why():
    df = _animals({"vehicle": [5, 6, 7], "MSC": [8]})
    with pytest.raises(GroupSizeError) as exc:
        compare_groups(df, "v")
    msg = str(exc.value)
    assert "'MSC' has 1 animal" in msg and "m4" in msg and "at least 2 animals" in msg


def test_compare_groups_skips_missing_values_and_needs_two_groups():
    df = _animals({"a": [1, 2, 3], "b": [np.nan, np.nan]})
    with pytest.raises(GroupSizeError, match="two groups"):
        compare_groups(df, "v")
    df = _animals({"a": [1, 2, 3], "b": [4, 5, np.nan, 6]})
    assert compare_groups(df, "v").iloc[1]["n_b"] == 3


def test_compare_groups_constant_data_does_not_warn():
    res = compare_groups(_animals({"a": [2, 2, 2], "b": [2, 2]}), "v")
    assert math.isnan(res.iloc[0]["anova_p"]) and "same value" in res.iloc[0]["note"]
    res = compare_groups(_animals({"a": [1, 1], "b": [3, 3]}), "v")
    assert res.iloc[0]["anova_p"] == 0.0 and "no spread within groups" in res.iloc[0]["note"]


def test_describe_groups_ci():
    d = describe_groups(_animals({"a": [1, 3, 5, 7]}), "v")
    lo, hi = sps.t.interval(0.95, 3, loc=4, scale=np.std([1, 3, 5, 7], ddof=1) / 2)
    assert (d.loc[0, "ci_low"], d.loc[0, "ci_high"]) == pytest.approx((lo, hi))


# ------------------------------------------------------------- aggregation
def _results_folder(
    tmp_path: Path, *, seed: int = 0, failed: tuple[str, ...] = ()
) -> tuple[Path, pd.DataFrame]:
    """A fake 'spinalquant run' output: 3 groups x 3 animals x 2 cord sections + 1 muscle."""
    rng = np.random.default_rng(seed)
    res = tmp_path / "results"
    (res / "objects").mkdir(parents=True)
    level = {"vehicle": 6.0, "MSC": 8.0, "Muse": 10.0}
    summ, mns, fibers, sheet = [], [], [], []
    k = 0
    for g, mu in level.items():
        for _ in range(3):
            k += 1
            animal = f"m{k:02d}"
            for s in (1, 2):
                img = f"cord/{animal}_s{s}.ome.tif"
                sheet.append(
                    {"image": img, "animal": animal, "group": g, "sex": "F" if k % 2 else "M"}
                )
                if img in failed:
                    summ.append(
                        {"image": img, "status": "failed", "error": "missing ChAT channel"}
                    )
                    continue
                n = round(mu + rng.normal(0, 0.7))
                pp = rng.normal(mu / 2, 0.3, n)
                summ.append(
                    {
                        "image": img,
                        "status": "ok",
                        "error": "",
                        "section": "cord",
                        "n_motor_neurons": n,
                        "pct_gfp_gfap": rng.uniform(70, 95),
                        "puncta_per_motor_neuron": float(pp.mean() * 1.2),
                    }
                )
                mns += [
                    {"image": img, "label": i + 1, "puncta_per_100um": v} for i, v in enumerate(pp)
                ]
            img = f"muscle/{animal}_TA.ome.tif"
            sheet.append(
                {"image": img, "animal": animal, "group": g, "sex": "F" if k % 2 else "M"}
            )
            area = rng.gamma(9, 100 * mu / 9, 60)
            summ.append(
                {
                    "image": img,
                    "status": "ok",
                    "error": "",
                    "section": "muscle",
                    "n_fibers": 60,
                    "fiber_csa_mean_um2": float(area.mean()),
                }
            )
            fibers += [
                {"image": img, "label": i + 1, "area_um2": a, "min_feret_um": math.sqrt(a) * 0.9}
                for i, a in enumerate(area)
            ]
    pd.DataFrame(summ).to_csv(res / "summary.csv", index=False)
    pd.DataFrame(mns).to_csv(res / "objects" / "motor_neurons.csv", index=False)
    pd.DataFrame(fibers).to_csv(res / "objects" / "fibers.csv", index=False)
    return res, pd.DataFrame(sheet)


def test_aggregate_per_animal_means_sections_and_pools_objects(tmp_path):
    res, sheet = _results_folder(tmp_path, failed=("cord/m01_s2.ome.tif",))
    summ = pd.read_csv(res / "summary.csv")
    objs = {
        "motor_neurons": pd.read_csv(res / "objects" / "motor_neurons.csv"),
        "fibers": pd.read_csv(res / "objects" / "fibers.csv"),
    }
    per = aggregate_per_animal(summ, objs, sheet)
    assert len(per) == 9 and per["animal"].is_unique
    assert per["sex"].notna().all()  # constant within animal -> kept
    m02 = per.set_index("animal").loc["m02"]
    rows = summ[summ["image"].str.startswith("cord/m02")]
    assert m02["n_motor_neurons"] == pytest.approx(rows["n_motor_neurons"].mean())
    assert m02["n_images"] == 3
    mn = objs["motor_neurons"]
    sel = mn[mn["image"].str.startswith("cord/m02")]
    assert m02["puncta_per_100um"] == pytest.approx(sel["puncta_per_100um"].mean())
    assert m02["n_objects_puncta_per_100um"] == len(sel)
    fb = objs["fibers"]
    assert m02["fiber_area_um2"] == pytest.approx(
        fb[fb["image"] == "muscle/m02_TA.ome.tif"]["area_um2"].mean()
    )
    # the failed section of m01 is excluded: its mean is its one good section
    m01 = per.set_index("animal").loc["m01"]
    assert m01["n_images"] == 2
    assert (
        m01["n_motor_neurons"]
        == summ.loc[summ["image"] == "cord/m01_s1.ome.tif", "n_motor_neurons"].item()
    )
    # measures absent from the data are dropped, not NaN columns
    assert "n_astrocytes" not in per.columns


# ------------------------------------------------------------ run_stats + CLI
def test_run_stats_writes_tables_and_plots(tmp_path):
    res, sheet = _results_folder(tmp_path, failed=("cord/m03_s1.ome.tif",))
    sheet = pd.concat(
        [
            sheet,
            pd.DataFrame(
                [{"image": "cord/m99_s1.ome.tif", "animal": "m99", "group": "Muse", "sex": "F"}]
            ),
        ]
    )
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    rep = run_stats(
        res,
        tmp_path / "samples.csv",
        measures=["n_motor_neurons", "puncta_per_100um", "pct_gfp_gfap", "fiber_area_um2"],
    )
    out = res / "stats"
    for f in ("stats.csv", "per_animal.csv", "groups.csv", "excluded.csv", "notes.txt"):
        assert (out / f).is_file()
    st = pd.read_csv(out / "stats.csv")
    # one row per measure x comparison: 1 omnibus + 3 pairs
    assert st.groupby("measure").size().eq(4).all()
    assert set(st["measure"]) == {
        "n_motor_neurons",
        "puncta_per_100um",
        "pct_gfp_gfap",
        "fiber_area_um2",
    }
    mn = st[st["measure"] == "n_motor_neurons"].set_index("comparison")
    assert mn.loc["vehicle vs Muse", "tukey_p"] < 0.01
    assert mn.loc["vehicle vs Muse", "diff"] == pytest.approx(-4, abs=1.0)
    assert (
        mn.loc["vehicle vs Muse", "diff_ci_low"]
        < mn.loc["vehicle vs Muse", "diff"]
        < mn.loc["vehicle vs Muse", "diff_ci_high"]
    )
    assert pd.read_csv(out / "per_animal.csv")["group"].tolist()[:3] == ["vehicle"] * 3
    ex = pd.read_csv(out / "excluded.csv")
    assert set(ex["image"]) == {"cord/m03_s1.ome.tif", "cord/m99_s1.ome.tif"}
    notes = (out / "notes.txt").read_text()
    assert "m99_s1" in notes and "failed image(s) excluded" in notes
    assert len(rep.per_animal) == 9
    for name in ("n_motor_neurons", "puncta_per_100um", "pct_gfp_gfap", "fiber_csa_distribution"):
        for ext in ("png", "svg"):
            f = out / "plots" / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 5000, f
    assert b"<svg" in (out / "plots" / "n_motor_neurons.svg").read_bytes()[:400]


def test_run_stats_lists_unlisted_images(tmp_path):
    res, sheet = _results_folder(tmp_path)
    sheet[~sheet["image"].isin(["cord/m02_s1.ome.tif", "muscle/m05_TA.ome.tif"])].to_csv(
        tmp_path / "samples.csv", index=False
    )
    with pytest.raises(SampleSheetError) as exc:
        run_stats(res, tmp_path / "samples.csv", plots=False)
    assert "cord/m02_s1.ome.tif" in str(exc.value) and "muscle/m05_TA.ome.tif" in str(exc.value)


def test_run_stats_one_animal_group_reports_error_row(tmp_path):
    res, sheet = _results_folder(tmp_path)
    sheet.loc[sheet["animal"] == "m01", "group"] = "solo"
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    rep = run_stats(res, tmp_path / "samples.csv", tmp_path / "st", plots=False)
    err = rep.stats[rep.stats["error"].notna()]
    assert set(err["measure"]) >= {"n_motor_neurons", "pct_gfp_gfap"}
    assert err["error"].str.contains("'solo' has 1 animal").all()


def test_cli_stats(tmp_path, capsys):
    from spinalquant.cli import main

    res, sheet = _results_folder(tmp_path)
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    assert (
        main(
            [
                "stats",
                str(res),
                "--samples",
                str(tmp_path / "samples.csv"),
                "--no-plots",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert (tmp_path / "o" / "stats.csv").is_file()
    assert "n_motor_neurons" in capsys.readouterr().err
    assert main(["stats", str(res)]) == 2
    assert "--samples" in capsys.readouterr().err
    assert (
        main(["stats", str(tmp_path / "nowhere"), "--samples", str(tmp_path / "samples.csv")]) == 2
    )
    assert "summary.csv" in capsys.readouterr().err
    _write(tmp_path / "bad.csv", "image,group\nx,y\n")
    assert main(["stats", str(res), "--samples", str(tmp_path / "bad.csv")]) == 2
    assert "missing column" in capsys.readouterr().err


# ------------------------------------------------------- end to end (pipeline)
def _run_study(tmp_path: Path, effect: float | None, seed: int) -> pd.DataFrame:
    from spinalquant.cli import main
    from spinalquant.study import make_study

    study = make_study(
        tmp_path / "study",
        groups={"vehicle": 0.0, "Muse": 1.0},
        animals_per_group=3,
        sections_per_animal=1,
        muscle_sections_per_animal=0,
        effect=effect,
        seed=seed,
        shape=(256, 256),
        pixel_size_um=0.9,
        n_motor_neurons=8,
        n_gfp_cells=5,
    )
    true_mn = study.truth.groupby("group")["n_motor_neurons"].mean()
    if effect:
        assert true_mn["vehicle"] < 0.8 * true_mn["Muse"]
    cfg = tmp_path / "fast.toml"  # tables only: no label images, QC or report (speed)
    cfg.write_text("[output]\nlabels = false\nqc = false\nreport = false\n", encoding="utf-8")
    code = main(
        [
            "run",
            str(study.folder),
            "--out",
            str(tmp_path / "res"),
            "-j",
            "1",
            "-q",
            "--config",
            str(cfg),
        ]
    )
    assert code == 0
    code = main(
        ["stats", str(tmp_path / "res"), "--samples", str(study.samples_csv), "--no-plots"]
    )
    assert code == 0
    st = pd.read_csv(tmp_path / "res" / "stats" / "stats.csv")
    return st[st["measure"] == "n_motor_neurons"].set_index("comparison")


def test_study_effect_is_found(tmp_path):
    st = _run_study(tmp_path, effect=0.6, seed=1)
    assert st.loc["vehicle vs Muse", "tukey_p"] < 0.05
    assert st.loc["vehicle vs Muse", "diff"] < -2


def test_study_without_effect_finds_nothing(tmp_path):
    st = _run_study(tmp_path, effect=None, seed=2)
    assert st.loc["vehicle vs Muse", "tukey_p"] > 0.05
    assert st.loc["all groups", "kruskal_p"] > 0.05


# ------------------------------------------------------------------ make_study
def test_make_study_writes_images_sheet_and_truth(tmp_path):
    from spinalquant.io import load
    from spinalquant.study import make_study

    s = make_study(
        tmp_path / "st",
        groups={"vehicle": 0.0, "Muse": 1.0},
        animals_per_group=1,
        sections_per_animal=1,
        muscle_sections_per_animal=1,
        effect=0.5,
        seed=3,
        shape=(192, 192),
        pixel_size_um=0.8,
        n_motor_neurons=4,
        n_gfp_cells=3,
    )
    sheet = read_sample_sheet(s.samples_csv)
    assert sheet["image"].tolist() == [
        "m01_L4_s1.ome.tif",
        "m01_TA_s1.ome.tif",
        "m02_L4_s1.ome.tif",
        "m02_TA_s1.ome.tif",
    ]
    assert sheet["group"].tolist() == ["vehicle", "vehicle", "Muse", "Muse"]
    st = load(s.folder / "m01_L4_s1.ome.tif")
    assert st.yx_um == pytest.approx(0.8)
    assert {"EGFP", "GFAP", "ChAT"} <= set(st.channel_names)
    assert load(s.folder / "m02_TA_s1.ome.tif").yx_um == pytest.approx(1.0)
    feret = s.truth.set_index("image")["mean_min_feret_um"]
    assert feret["m01_TA_s1.ome.tif"] < feret["m02_TA_s1.ome.tif"]  # vehicle fibers atrophic
    again = make_study(
        tmp_path / "st2",
        groups={"vehicle": 0.0, "Muse": 1.0},
        animals_per_group=1,
        sections_per_animal=1,
        muscle_sections_per_animal=0,
        effect=0.5,
        seed=3,
        shape=(192, 192),
        pixel_size_um=0.8,
        n_motor_neurons=4,
        n_gfp_cells=3,
    )
    assert again.truth["seed"].iloc[0] == s.truth["seed"].iloc[0]  # same seed, same study


@pytest.mark.parametrize(
    "kwargs",
    [
        {"effect": 1.5},
        {"groups": {"a": 2.0}},
        {"sections_per_animal": 0, "muscle_sections_per_animal": 0},
        {"animals_per_group": 0},
    ],
)
def test_make_study_rejects_bad_arguments(tmp_path, kwargs):
    from spinalquant.study import make_study

    with pytest.raises(ValueError):
        make_study(tmp_path, **kwargs)


def test_distribution_axis_says_objects_and_animals():
    """The violins' n counts objects (fibers), unlike the other plots' animals: say both."""
    from spinalquant.plots import plot_distribution

    df = pd.DataFrame({"area_um2": np.arange(12.0), "group": ["a"] * 6 + ["b"] * 6,
                       "animal": ["m1", "m1", "m2", "m2", "m3", "m3", "m4", "m4", "m4", "m5", "m5", "m5"]})
    fig = plot_distribution(df, "area_um2")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["a\n6 objects\n3 animals", "b\n6 objects\n2 animals"]
