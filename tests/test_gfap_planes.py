"""The GFAP call in a thick z-stack: each GFP+ cell is read in its own optical sections.

In a reactive (ALS) ventral horn the GFAP meshwork of host astrocytes is dense; in
the max projection of a 16 µm stack it covers a GFAP-negative donor cell and its
background ring alike, whatever plane it lies in. The GFP channel comes from
``tests/independent_phantoms.py`` (cells at random depths, axial profile about their
size); the GFAP channel is built here: GFAP+ cells follow their GFP profile, host
processes are 0.6 µm random walks at random depths (axial σ 1 µm), and GFP bleeds
into GFAP.
"""

from __future__ import annotations

import independent_phantoms as ip  # tests/ is on sys.path (see test_independent_phantoms.py)
import numpy as np
import pytest
from scipy import ndimage as ndi

from spinalquant.segment.gfp_cells import (
    GfapPositivityParams,
    gfap_positivity,
    own_planes,
    segment_gfp_cells,
)


def thick_section(seed, *, px=0.5, size=120.0, n_z=16, step=1.0, frac=0.86, snr=6.0, bleed=0.3,
                  mesh_per_plane=0.05, noise="gaussian", dtype="uint16"):
    """GFP and GFAP (Z, Y, X) stacks, the GFP phantom and each cell label's truth call."""
    gfp = ip.gfp_field(seed, pixel_size_um=px, size_um=size, n_cells=30, noise=noise, dtype=dtype,
                       bg="gradient", n_z=n_z, z_step_um=step, processes=False)
    rng = np.random.default_rng(seed + 1000)
    lab, shape = gfp.labels, gfp.labels.shape
    ids = gfp.truth["label"].to_numpy()
    positive = dict(zip(ids.tolist(), (rng.random(len(ids)) < frac).tolist(), strict=True))
    g = gfp.planes.astype(float)
    excess = g - np.median(g[:, lab == 0], axis=1)[:, None, None]
    texture = 0.6 + 0.4 * np.clip(ip._smooth_field(rng, shape, 0.8 / px), -1.5, 1.5) / 1.5
    sig = np.zeros((n_z, *shape))
    for k, pos in positive.items():
        m = lab == k
        if pos:
            prof = np.clip(excess[:, m].mean(axis=1), 0, None)
            sig[:, m] += rng.uniform(0.6, 1.4) * (prof / max(prof.max(), 1e-9))[:, None] * texture[m]
    depth = (np.arange(n_z) - (n_z - 1) / 2) * step
    drawn, target, width_px = 0, mesh_per_plane * lab.size * n_z, max(1.0, 0.6 / px)
    while drawn * width_px < target:
        walk = np.zeros(shape, bool)
        ip.random_walk(rng, walk, px)
        zc = rng.uniform(depth[0] - 1, depth[-1] + 1)
        if not walk.any():
            continue
        drawn += int(walk.sum())
        line = ndi.gaussian_filter(walk.astype(float), max(0.3 / px, 0.5))
        line /= line[walk].mean()
        sig += rng.uniform(0.5, 1.0) * np.exp(-((depth - zc) ** 2) / 2.0)[:, None, None] * line[None]
    sig += bleed * np.clip(excess / np.percentile(excess[:, lab > 0], 95), 0, None)
    bg = ip.background("gradient", shape, pixel_size_um=px, rng=rng)
    gfap = ip.digitise(sig, bg[None], snr=snr, noise=noise, dtype=dtype, rng=rng)
    return gfp, gfap, positive


def _calls(gfp, lab, calls, truth):
    """(% GFAP+ found, % true, share of per-cell calls right)."""
    right = ip.calls_right(gfp.labels, lab, calls, truth)
    return 100.0 * calls["gfap_positive"].mean(), 100.0 * np.mean(list(truth.values())), np.mean(right)


CASES = {
    "0.5um-gauss-u16": dict(px=0.5, snr=6.0),
    "0.7um-poisson-u8": dict(px=0.7, noise="poisson", dtype="uint8", snr=4.0, size=160.0),
}


def _score_both(case, seed):
    gfp, gfap, truth = thick_section(seed, **CASES[case])
    px = gfp.pixel_size_um
    lab = segment_gfp_cells(gfp.planes.max(axis=0), pixel_size_um=px)
    out = {}
    for own in (True, False):
        calls = gfap_positivity(lab, gfap, gfp=gfp.planes, pixel_size_um=px,
                                params=GfapPositivityParams(cell_planes=own))
        out[own] = (calls["gfap_positive"].sum(), len(calls), *_calls(gfp, lab, calls, truth))
    return out, sum(truth.values()), len(truth)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cells_read_in_their_own_planes(case):
    """Seeds 70-73 with the image's own bleed-through estimate, the four images' cells
    pooled as the study pools them.

    Measured, own planes (whole-stack max projection in brackets): 0.5 µm/px Gaussian,
    pooled −5.9 points (−30.7), calls right 1.00 / 0.80 / 0.95 / 1.00 (0.90 / 0.36 / 0.65 /
    0.82); 0.7 µm/px Poisson uint8, −2.8 (−15.5), 1.00 / 1.00 / 0.93 / 0.97. Known weakness:
    seed 71 (92 % GFAP+, two negative cells) reads 72 %, because the bleed-through
    estimate takes a weak GFAP+ cell into its negatives' group (0.39 against the 0.21 of
    a GFP-only control, with which every call is right). ``benchmarks/bench_gfap.py``
    measures seeds 74-81 and more set-ups.
    """
    found = {True: [0, 0], False: [0, 0]}
    n_true = n_all = 0
    rights = []
    for seed in (70, 71, 72, 73):
        out, t, n = _score_both(case, seed)
        n_true, n_all = n_true + t, n_all + n
        *_, pct, true_pct, right = out[True]
        assert right >= 0.75, f"{case} seed {seed}: {pct:.1f} % found vs {true_pct:.1f} %, {right:.3f} right"
        rights.append(right)
        for own, (p, nf, *_) in out.items():
            found[own][0] += int(p)
            found[own][1] += nf
    true_pct = 100.0 * n_true / n_all
    err = {own: 100.0 * p / n - true_pct for own, (p, n) in found.items()}
    msg = (case, true_pct, err, rights)
    assert abs(err[True]) <= 8.0, msg
    assert np.mean(rights) >= 0.90, msg
    # the cells' own planes are what does it: the whole-stack projection is clearly worse
    assert abs(err[False]) >= abs(err[True]) + 5.0, msg


def test_own_planes_follow_the_cell_not_a_process_above_it():
    lab = np.zeros((40, 40), np.int32)
    lab[5:15, 5:15] = 1
    lab[25:35, 25:35] = 2
    g = np.full((6, 40, 40), 10.0)
    g[0:2, 5:15, 5:15] += 100  # cell 1 in planes 0-1
    g[3:6, 25:35, 25:35] += 80 * np.array([0.4, 1.0, 0.8])[:, None, None]  # cell 2 peaks in plane 4
    g[2, 5:15, 5:15] += 30  # a dim tail: 30 % of the peak
    planes = own_planes(g, labels=lab, pixel_size_um=1.0)
    assert planes.tolist() == [[True, True, False, False, False, False],
                               [False, False, False, False, True, True]]
    # a cell without any excess keeps every plane
    flat = own_planes(np.full((3, 40, 40), 5.0), labels=lab, pixel_size_um=1.0)
    assert flat.all()


def test_stacks_need_both_channels_and_matching_shapes():
    lab = np.zeros((20, 20), np.int32)
    lab[5:10, 5:10] = 1
    f = np.zeros((3, 20, 20))
    with pytest.raises(ValueError, match="needs the GFP z-stack"):
        gfap_positivity(lab, f, pixel_size_um=1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        gfap_positivity(lab, f, gfp=np.zeros((2, 20, 20)), pixel_size_um=1.0)
    with pytest.raises(ValueError, match="do not match"):
        gfap_positivity(lab[:10], f, gfp=f, pixel_size_um=1.0)


def test_a_single_plane_stack_gives_the_plane_result():
    rng = np.random.default_rng(3)
    lab = np.zeros((60, 60), np.int32)
    for k, (y, x) in enumerate([(10, 10), (10, 40), (40, 10), (40, 40)], start=1):
        lab[y:y + 10, x:x + 10] = k
    g = 100 + rng.normal(0, 3, lab.shape) + 400 * (lab > 0)
    f = 80 + rng.normal(0, 3, lab.shape) + 0.1 * g + 200 * np.isin(lab, [1, 3])
    flat = gfap_positivity(lab, f, gfp=g, pixel_size_um=1.0)
    stacked = gfap_positivity(lab, f[None], gfp=g[None], pixel_size_um=1.0)
    assert flat.equals(stacked)
    assert flat["gfap_positive"].tolist() == [True, False, True, False]
