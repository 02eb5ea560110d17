"""Central nuclei from a nuclear-stain image: a channel without nuclei gives none.

Otsu alone splits any image in two, so a DAPI channel holding only noise (or
uneven illumination) used to give "nuclei" everywhere and a large
``pct_central_nuclei``. The nuclei must stand significantly above their
local background (:func:`~spinalquant.measure.morphology.nucleus_mask`).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from spinalquant.measure.morphology import fiber_summary, measure_fibers, nucleus_mask

FIBER_UM = 40.0  # side of the square fibers
GAP_UM = 4.0  # interstitial space between fibers


def _fibers(px: float, n: int = 5) -> np.ndarray:
    """An n x n grid of square fibers (labels 1..n²) with interstitial gaps."""
    pitch = round((FIBER_UM + GAP_UM) / px)
    side = round(FIBER_UM / px)
    size = n * pitch + pitch // 2
    lab = np.zeros((size, size), np.int32)
    for i in range(n):
        for j in range(n):
            y0, x0 = pitch // 2 + i * pitch, pitch // 2 + j * pitch
            lab[y0 : y0 + side, x0 : x0 + side] = 1 + i * n + j
    return lab


def _camera(signal: np.ndarray, rng, *, bg_photons: float, gain: float = 6.0) -> np.ndarray:
    """Photon counts (Poisson) of ``signal`` photons over an uneven background, plus read noise, uint16."""
    ny, nx = signal.shape
    yy, xx = np.mgrid[:ny, :nx] / max(ny, nx)
    illum = np.clip(1 - 0.9 * ((yy - 0.35) ** 2 + (xx - 0.6) ** 2), 0.45, 1)
    counts = rng.poisson((bg_photons + signal) * illum) * gain + rng.normal(100, 4, signal.shape)
    return np.clip(counts, 0, 65535).astype(np.uint16)


def _nuclei_signal(lab: np.ndarray, px: float, rng, central: set[int]) -> np.ndarray:
    """Two peripheral nuclei per fiber (1 µm under the outline) and one central one in ``central``."""
    sig = np.zeros(lab.shape, np.float32)
    yy, xx = np.mgrid[: lab.shape[0], : lab.shape[1]]
    for k in range(1, int(lab.max()) + 1):
        rows, cols = np.nonzero(lab == k)
        y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        spots = [(y0 + 2.5 / px, cx + rng.uniform(-8, 8) / px, 1.5, 5.0),  # flat, under the top edge
                 (cy + rng.uniform(-8, 8) / px, x1 - 2.5 / px, 5.0, 1.5)]  # under the right edge
        if k in central:
            spots.append((cy + rng.uniform(-5, 5) / px, cx + rng.uniform(-5, 5) / px, 2.5, 3.5))
        for sy, sx, ry, rx in spots:
            inside = ((yy - sy) * px / ry) ** 2 + ((xx - sx) * px / rx) ** 2 <= 1
            sig[inside] = rng.uniform(40, 80)
    return ndi.gaussian_filter(sig, 0.3 / px)


@pytest.mark.parametrize("px", [0.3, 0.65, 1.0, 1.5])
def test_blank_nuclear_channel_gives_no_central_nuclei(px):
    rng = np.random.default_rng(int(px * 100))
    lab = _fibers(px)
    for bg in (4.0, 1.0):  # a few photons per pixel: strongly skewed (Poisson) noise
        dapi = _camera(np.zeros(lab.shape, np.float32), rng, bg_photons=bg)
        df = measure_fibers(lab, pixel_size_um=px, nuclei=dapi, nuclei_kind="intensity")
        assert len(df) == 25 and int(df["central_nuclei"].sum()) == 0
        assert fiber_summary(df)["pct_central_nuclei"] == 0.0
        # the mask itself: a few stray specks at most, none nucleus-sized (4 µm², 2 x 2 px)
        specks, n = ndi.label(nucleus_mask(dapi, pixel_size_um=px))
        assert n < 100 and np.bincount(specks.ravel())[1:].max(initial=0) < max(4 / px**2, 4)


@pytest.mark.parametrize(("px", "seed"), [(0.3, 1), (0.65, 2), (1.0, 3), (1.5, 4)])
def test_real_nuclei_still_found_under_uneven_background(px, seed):
    rng = np.random.default_rng(seed)
    lab = _fibers(px)
    central = {int(k) for k in rng.choice(np.arange(1, 26), 6, replace=False)}
    dapi = _camera(_nuclei_signal(lab, px, rng, central), rng, bg_photons=4.0)
    df = measure_fibers(lab, pixel_size_um=px, nuclei=dapi, nuclei_kind="intensity")
    got = set(df.loc[df["has_central_nucleus"], "label"].tolist())
    assert got == central
    assert fiber_summary(df)["pct_central_nuclei"] == pytest.approx(100 * 6 / 25)


def test_nucleus_mask_validation():
    with pytest.raises(ValueError, match="noise_k"):
        nucleus_mask(np.zeros((8, 8)), pixel_size_um=1.0, noise_k=-1)
    with pytest.raises(ValueError, match="2-D"):
        nucleus_mask(np.zeros((2, 8, 8)), pixel_size_um=1.0)
    assert not nucleus_mask(np.full((8, 8), 7, np.uint16), pixel_size_um=1.0).any()
