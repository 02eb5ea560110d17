"""Astrocyte somata on images generated here, unlike the library's phantom.

GFAP-filled donor cells (10-20 µm bodies with a dimmer nucleus and a
textured cytoplasm, some touching) have several intensity maxima; each must
still count once, next to small stellate host astrocytes with thin processes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from spinalquant.measure.colocalization import measure_gfp_cells
from spinalquant.segment.astrocytes import segment_astrocytes

SIZE_UM = 260.0


def _body(yy, xx, cy, cx, r, rng, *, elong, lobes):
    """Mask of a lobed ellipse of equivalent radius ``r`` µm (coordinates in µm)."""
    ang = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
    v = -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
    u, v = u / np.sqrt(elong), v * np.sqrt(elong)
    theta = np.arctan2(v, u)
    radius = r * (1 + sum(a * np.cos(k * theta + p) for k, a, p in
                          zip((3, 4), rng.uniform(-lobes, lobes, 2), rng.uniform(0, 2 * np.pi, 2),
                              strict=True)))
    return np.hypot(u, v) <= radius


def _segment(yy, xx, p0, p1, w0, w1):
    """Mask of a tapering line from p0 to p1 (µm), width w0 -> w1."""
    d = np.subtract(p1, p0)
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / float(d @ d), 0, 1)
    dist = np.hypot(yy - p0[0] - t * d[0], xx - p0[1] - t * d[1])
    return dist <= 0.5 * (w0 + (w1 - w0) * t)


def _box(c, reach, px, n):
    """Pixel slices of the square of half-side ``reach`` µm around ``c``."""
    return tuple(slice(max(int((v - reach) / px), 0), min(int((v + reach) / px) + 2, n)) for v in c)


def _free(c, r, placed, gap):
    return all(np.hypot(c[0] - q[0], c[1] - q[1]) >= r + s + gap for q, s in placed)


def make_gfap_image(seed: int, px: float, *, peak_photons: float):
    """GFAP plane with donor cells and stellate astrocytes; truth label image (one label per cell)."""
    rng = np.random.default_rng(seed)
    n = round(SIZE_UM / px)
    yy, xx = np.mgrid[:n, :n] * px
    sig = np.zeros((n, n), np.float32)
    truth = np.zeros((n, n), np.int32)
    placed: list[tuple[tuple[float, float], float]] = []
    k = 0
    # donor cells: 14 singles plus 4 touching pairs, radius 5-10 µm
    donors = []
    while len(donors) < 14 + 8:
        r = rng.uniform(5, 10)
        c = tuple(rng.uniform(r + 8, SIZE_UM - r - 8, 2))
        if not _free(c, r, placed, 8):
            continue
        if len(donors) >= 14:  # a touching partner right beside it
            r2 = rng.uniform(5, 10)
            a = rng.uniform(0, 2 * np.pi)
            c2 = (c[0] + (r + r2) * np.sin(a), c[1] + (r + r2) * np.cos(a))
            if not (r2 + 8 < c2[0] < SIZE_UM - r2 - 8 and r2 + 8 < c2[1] < SIZE_UM - r2 - 8):
                continue
            if not _free(c2, r2, placed, 8):
                continue
            donors.append((c2, r2))
            placed.append((c2, r2))
        donors.append((c, r))
        placed.append((c, r))
    texture = 1 + 0.15 * ndi.gaussian_filter(rng.standard_normal((n, n)), 1.0 / px) / (
        ndi.gaussian_filter(rng.standard_normal((n, n)), 1.0 / px).std() + 1e-9
    )
    for (cy, cx), r in donors:
        sl = _box((cy, cx), 2 * r, px, n)
        y, x = yy[sl], xx[sl]
        body = _body(y, x, cy, cx, r, rng, elong=rng.uniform(1.0, 1.6), lobes=0.12)
        body &= truth[sl] == 0  # touching partners do not overlap
        nucleus = np.hypot(y - cy - rng.uniform(-1, 1), x - cx - rng.uniform(-1, 1)) < 0.45 * r
        k += 1
        truth[sl][body] = k
        sig[sl] += rng.uniform(0.5, 1.0) * body * texture[sl] * (1 - 0.35 * nucleus)
    # stellate host astrocytes: 4 µm soma radius, 4-7 thin tapering processes
    n_astro = 0
    while n_astro < 14:
        c = tuple(rng.uniform(30, SIZE_UM - 30, 2))
        if not _free(c, 4.0, placed, 14):
            continue
        placed.append((c, 4.0))
        n_astro += 1
        sl = _box(c, 27.0, px, n)
        y, x = yy[sl], xx[sl]
        cell = _body(y, x, c[0], c[1], 4.0, rng, elong=rng.uniform(1.0, 1.3), lobes=0.1)
        k += 1
        truth[sl][cell] = k
        for a in rng.uniform(0, 2 * np.pi, rng.integers(4, 8)):
            length = rng.uniform(10, 25)
            cell |= _segment(y, x, c, (c[0] + length * np.sin(a), c[1] + length * np.cos(a)), 1.5, 0.6)
        sig[sl] = np.maximum(sig[sl], rng.uniform(0.5, 1.0) * cell)
    # meshwork of out-of-section processes
    for _ in range(40):
        p0 = rng.uniform(0, SIZE_UM, 2)
        p1 = p0 + rng.uniform(-30, 30, 2)
        sl = _box(0.5 * (p0 + p1), 16.0, px, n)
        sig[sl] += 0.25 * _segment(yy[sl], xx[sl], p0, p1, 0.8, 0.8) * (truth[sl] == 0)
    sig = ndi.gaussian_filter(sig, 0.3 / px)  # optics
    illum = 1 - 0.4 * ((yy / SIZE_UM - 0.4) ** 2 + (xx / SIZE_UM - 0.6) ** 2)
    photons = rng.poisson((5 + peak_photons * sig) * illum)
    img = photons * 8.0 + rng.normal(100, 5, (n, n))
    return np.clip(img, 0, 4095).astype(np.uint16), truth, len(donors), n_astro


def _score(lab, truth, px):
    """Detections per truth cell (by the truth label under each detection's centroid)."""
    table = measure_gfp_cells(lab, pixel_size_um=px)
    rows = np.clip(np.rint(table["y_um"].to_numpy() / px).astype(int), 0, truth.shape[0] - 1)
    cols = np.clip(np.rint(table["x_um"].to_numpy() / px).astype(int), 0, truth.shape[1] - 1)
    # a detection a pixel or two off a small soma still belongs to it
    near = ndi.grey_dilation(truth, size=max(3, round(2.0 / px) | 1))
    hit = np.where(truth[rows, cols] > 0, truth[rows, cols], near[rows, cols])
    per = np.bincount(hit[hit > 0], minlength=int(truth.max()) + 1)[1:]
    tp = int((per > 0).sum())
    fp = len(table) - tp  # detections outside every cell and extra pieces of one cell
    fn = int((per == 0).sum())
    return dict(n=len(table), truth=int(truth.max()), split=int((per > 1).sum()), tp=tp, fp=fp, fn=fn,
                f1=2 * tp / (2 * tp + fp + fn), per_cell=per.tolist())


@pytest.mark.parametrize(("seed", "px", "peak"), [(11, 0.3, 60.0), (12, 0.55, 40.0), (13, 0.8, 80.0)])
def test_gfap_filled_donor_cells_count_once(seed, px, peak):
    img, truth, n_donor, n_astro = make_gfap_image(seed, px, peak_photons=peak)
    lab = segment_astrocytes(img, pixel_size_um=px)
    s = _score(lab, truth, px)
    assert s["f1"] >= 0.90, s
    assert abs(s["n"] - s["truth"]) <= 0.10 * s["truth"], s
    # truth labels: donor cells first (the last 8 in touching pairs), then host astrocytes
    per = np.array(s["per_cell"])
    donors, hosts = per[:n_donor], per[n_donor:]
    assert len(hosts) == n_astro
    # each large GFAP-filled cell counts once, almost always; so does each host astrocyte
    assert np.count_nonzero(donors == 1) >= 0.9 * n_donor, s
    assert np.count_nonzero(donors > 1) <= 0.1 * n_donor, s
    assert np.count_nonzero(hosts == 1) >= 0.9 * n_astro, s
    # touching donor cells are still told apart
    assert np.count_nonzero(donors[-8:] == 1) >= 6, s
