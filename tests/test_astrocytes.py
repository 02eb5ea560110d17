"""GFAP+ astrocyte somata and GFAP area fraction on cord phantoms and toy images."""

from __future__ import annotations

import numpy as np
import pytest

from spinalquant.errors import ConfigError
from spinalquant.measure.colocalization import measure_gfp_cells
from spinalquant.measure.matching import match_points
from spinalquant.segment.astrocytes import AstrocyteParams, gfap_area_fraction, segment_astrocytes

synthetic = pytest.importorskip("spinalquant.synthetic")


def _check_somata(seed, snr, px):
    shape = (900, 900) if px < 0.4 else (640, 640)
    ph = synthetic.make_cord_section(seed=seed, shape=shape, pixel_size_um=px, snr=snr)
    gfap = ph.stack.data[ph.stack.channel_names.index("GFAP")].max(axis=0)
    lab = segment_astrocytes(gfap, pixel_size_um=px)
    table = measure_gfp_cells(lab, pixel_size_um=px)
    truth = ph.truth["astrocytes"]
    m = match_points(table[["y_um", "x_um"]].to_numpy(), truth[["y_um", "x_um"]].to_numpy(), max_dist=5.0)
    assert m["f1"] >= 0.90, m
    assert abs(len(table) - len(truth)) <= 0.12 * len(truth), m
    # somata, not the process network: the median soma area stays near the truth's
    ratio = float(np.median(table["area_um2"])) / float(np.median(truth["area_um2"]))
    assert 0.5 <= ratio <= 2.0, ratio


@pytest.mark.parametrize(("seed", "snr", "px"), [(0, 8.0, 0.5), (1, 4.0, 0.5), (3, 5.0, 0.7)])
def test_astrocyte_somata_on_phantom(seed, snr, px):
    """Somata among processes and a fibrous GFAP meshwork."""
    _check_somata(seed, snr, px)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("snr", "px"), [(4.0, 0.3), (4.0, 0.7), (5.0, 0.7), (8.0, 0.5), (8.0, 0.3)])
def test_astrocyte_somata_sweep(seed, snr, px):
    _check_somata(seed, snr, px)


def test_processes_are_not_somata():
    img = np.full((100, 100), 10.0)
    yy, xx = np.mgrid[:100, :100]
    img[(yy - 50) ** 2 + (xx - 30) ** 2 < 36] = 200
    img[49:51, 36:95] = 200  # a long 1 µm-wide process
    img[10:12, 5:95] = 200  # an isolated process
    img += np.random.default_rng(0).normal(0, 3, img.shape)
    lab = segment_astrocytes(img.astype(np.float32), pixel_size_um=0.5)
    assert lab.max() == 1
    assert lab[50, 30] > 0 and lab[50, 80] == 0 and lab[11, 50] == 0


def test_gfap_area_fraction():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 5, (200, 200))
    img[:, :50] += 100  # 25 % GFAP+
    f = gfap_area_fraction(img, pixel_size_um=1.0, background_size_um=0)
    assert f == pytest.approx(0.25, abs=0.02)
    mask = np.zeros(img.shape, bool)
    mask[:, :100] = True
    assert gfap_area_fraction(img, pixel_size_um=1.0, mask=mask, background_size_um=0) == pytest.approx(
        0.5, abs=0.03
    )
    # phantom: the GFAP+ area (somata + processes) is not in its truth tables;
    # it must exceed the somata alone and stay a minority of the tissue
    ph = synthetic.make_cord_section(
        seed=2, shape=(512, 512), pixel_size_um=0.5, n_motor_neurons=4, n_gfp_cells=20
    )
    gfap = ph.stack.data[ph.stack.channel_names.index("GFAP")].max(axis=0)
    frac = gfap_area_fraction(gfap, pixel_size_um=0.5)
    assert (ph.labels["astrocytes"] > 0).mean() < frac < 0.5


def test_validation():
    with pytest.raises(ConfigError):
        AstrocyteParams(soma_diameter_um=0)
    with pytest.raises(ValueError, match="pixel_size_um"):
        segment_astrocytes(np.zeros((10, 10)), pixel_size_um=-1)


def test_window_anchored_at_its_origin_sees_the_whole_images_background():
    # soma response and GFAP residual of a window cut off the background blocks
    # (origin not a multiple of the block size) equal the whole image's inside
    from spinalquant.segment.astrocytes import gfap_residual, soma_response
    from spinalquant.segment.gfp_cells import background_block_px, background_reach_um

    px, origin = 0.5, (45, 19)
    ph = synthetic.make_cord_section(seed=33, shape=(600, 620), pixel_size_um=px, n_motor_neurons=2,
                                     n_gfp_cells=10)
    gfap = ph.stack.data[ph.stack.channel_names.index("GFAP")].max(axis=0)
    p = AstrocyteParams(origin_px=origin)
    assert p.origin_px == origin and origin[0] % background_block_px(p.background_size_um, px)
    y0, x0 = origin
    win = gfap[y0 : y0 + 540, x0 : x0 + 580]
    m = int(np.ceil((background_reach_um(p.background_size_um) + 4 * p.soma_diameter_um / 8
                     + 2 * p.process_width_um) / px))
    inside = (slice(m, 540 - m), slice(m, 580 - m))
    cut = (slice(y0, y0 + 540), slice(x0, x0 + 580))
    for whole, anchored, plain in [
        (soma_response(gfap, pixel_size_um=px), soma_response(win, pixel_size_um=px, params=p),
         soma_response(win, pixel_size_um=px)),
        (gfap_residual(gfap, pixel_size_um=px), gfap_residual(win, pixel_size_um=px, origin_px=origin),
         gfap_residual(win, pixel_size_um=px)),
    ]:
        ref = whole[cut][inside]
        tol = 8 * np.finfo(np.float32).eps * float(np.abs(whole).max())
        np.testing.assert_allclose(anchored[inside], ref, rtol=0, atol=tol)
        assert np.abs(plain[inside] - ref).max() > 100 * tol
    # the GFAP area fraction of the window's interior at a given threshold is the whole image's
    whole = gfap_residual(gfap, pixel_size_um=px)[cut][inside]
    thr = float(np.percentile(whole, 80))
    mask = np.zeros(win.shape, bool)
    mask[inside] = True
    got = gfap_area_fraction(win, pixel_size_um=px, mask=mask, threshold=thr, origin_px=origin)
    assert got == pytest.approx(float((whole > thr).mean()), abs=1e-4) and 0.15 < got < 0.25
    with pytest.raises(ConfigError, match="origin_px"):
        AstrocyteParams(origin_px=(0, 1.5))
