"""Outside evaluation (session 5) of fiber segmentation: regressions for defects found.

Each test builds its own small section (not spinalquant.synthetic): Voronoi fibers of a
jittered grid, a border band between them, rendered as H&E RGB or a laminin stain.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from spinalquant.segment.fibers import FiberParams, segment_fibers


def _voronoi(rng, shape, px, spacing_um, border_um):
    """Fiber truth labels (0 = border band) of a jittered-grid Voronoi tessellation."""
    step = spacing_um / px
    gy, gx = np.mgrid[step / 2 : shape[0] + step : step, step / 2 : shape[1] + step : step]
    pts = np.c_[gy.ravel(), gx.ravel()] + rng.uniform(-0.3, 0.3, (gy.size, 2)) * step
    marker = np.zeros(shape, np.int32)
    inside = (pts[:, 0] < shape[0]) & (pts[:, 1] < shape[1])
    pts = pts[inside].astype(int)
    marker[pts[:, 0], pts[:, 1]] = np.arange(1, len(pts) + 1)
    _, (iy, ix) = ndi.distance_transform_edt(marker == 0, return_indices=True)
    cells = marker[iy, ix]
    edge = np.zeros(shape, bool)
    d = cells[1:] != cells[:-1]
    edge[1:] |= d
    edge[:-1] |= d
    d = cells[:, 1:] != cells[:, :-1]
    edge[:, 1:] |= d
    edge[:, :-1] |= d
    band = ndi.distance_transform_edt(~edge) * px <= border_um / 2
    return np.where(band, 0, cells), pts


def _he(rng, truth, pts, px, *, central_nuclei=False, field=None):
    """H&E RGB uint8: pink fibers, pale pink endomysium, purple peripheral nuclei."""
    shape = truth.shape
    rgb = np.empty((*shape, 3), np.float64)
    rgb[:] = (238, 205, 222)  # endomysium
    shade = np.array([228, 148, 182]) * rng.uniform(0.95, 1.03, (truth.max() + 1, 1))
    rgb[truth > 0] = shade[truth[truth > 0]]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    nuc = np.zeros(shape, bool)
    for y, x in pts:
        if central_nuclei:
            nuc |= ((yy - y) / (2.5 / px)) ** 2 + ((xx - x) / (4.0 / px)) ** 2 <= 1
    # peripheral nuclei: on random border pixels
    by, bx = np.nonzero(truth == 0)
    for i in rng.integers(0, by.size, len(pts)):
        nuc |= ((yy - by[i]) / (1.5 / px)) ** 2 + ((xx - bx[i]) / (3.5 / px)) ** 2 <= 1
    rgb[nuc] = (95, 60, 150)
    rgb = ndi.gaussian_filter(rgb, (0.4 / px, 0.4 / px, 0))
    if field is not None:
        rgb *= field[..., None]
    rgb += rng.normal(0, 3, rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _f1(pred, truth, keep=None):
    """F1 at IoU 0.5 over truth fibers not touching the image edge (and in ``keep``)."""
    edge = np.unique(np.concatenate([truth[0], truth[-1], truth[:, 0], truth[:, -1]]))
    ids = [t for t in np.unique(truth) if t and t not in edge]
    if keep is not None:
        ids = [t for t in ids if keep[truth == t].mean() > 0.5]
    hits, matched = 0, set()
    for t in ids:
        m = truth == t
        vals, counts = np.unique(pred[m], return_counts=True)
        for v, c in zip(vals, counts, strict=True):
            if v and c / np.count_nonzero(m | (pred == v)) > 0.5:
                hits += 1
                matched.add(int(v))
    preds = set(np.unique(pred[np.isin(truth, ids)]).tolist()) - {0}
    fp = len(preds - matched)
    return 2 * hits / max(len(ids) + hits + fp, 1), hits, len(ids)


@pytest.mark.parametrize(("seed", "px"), [(0, 0.5), (3, 0.8)])
def test_he_central_nuclei_do_not_split_fibers(seed, px):
    """H&E fibers with a central nucleus were split in 2-4 pieces around it (the
    hematoxylin blob made a hole in the distance map: several seeds). Independent
    phantoms (power-diagram fibers, px 0.35-1.0): F1 0.80-0.90 -> 0.93-0.99."""
    rng = np.random.default_rng(seed)
    shape = (int(240 / px),) * 2
    truth, pts = _voronoi(rng, shape, px, 40.0, 2.0)
    rgb = _he(rng, truth, pts, px, central_nuclei=True)
    lab = segment_fibers(rgb, pixel_size_um=px, stain="he")
    f1, hits, n = _f1(lab, truth)
    assert n >= 8
    assert f1 >= 0.95, (f1, hits, n)  # was 0.86 at both


def test_he_uneven_illumination():
    """Brightfield vignetting scales R, G and B alike (grey optical density); with
    rgb2hed's DAB as third stain it leaked into eosin (-) and hematoxylin (+), so the
    fibers in the dim part of the field became 'pale interstitium' and were lost."""
    rng = np.random.default_rng(1)
    px = 0.6
    shape = (int(240 / px),) * 2
    truth, pts = _voronoi(rng, shape, px, 40.0, 2.0)
    _, xx = np.mgrid[: shape[0], : shape[1]] / shape[0]
    field = 1.0 - 0.4 * xx  # the right side of the field gets 60 % of the light
    rgb = _he(rng, truth, pts, px, field=field)
    lab = segment_fibers(rgb, pixel_size_um=px, stain="he")
    dim = xx > 0.55
    f1, hits, n = _f1(lab, truth, keep=dim)
    assert n >= 5
    assert f1 >= 0.95, (f1, hits, n)  # was 0.86 (2 of 8 dim fibers lost)
    # the same section evenly lit is segmented as well (no accuracy bought elsewhere)
    f1_even, _, _ = _f1(segment_fibers(_he(np.random.default_rng(1), truth, pts, px),
                                       pixel_size_um=px, stain="he"), truth)
    assert f1_even >= 0.95


def test_max_speck_um_validated():
    with pytest.raises(ValueError, match="max_speck_um"):
        FiberParams(max_speck_um=-1.0)


def test_he_atrophic_fibers_in_fibrotic_interstitium():
    """Small angular fibers (150-400 µm², as after denervation) lying off-centre in wide
    pale endomysial fibrosis were rejected as bright-interior objects: their basin took
    in the pale interstitium around them (no ridge inside it), so the basin's core level
    was pale. Here 10 of 12 were found (F1 0.96); independent phantoms: H&E fibers of
    100-500 µm² found 50-75 % -> 80-90 %, F1 0.95 -> 0.97."""
    rng = np.random.default_rng(3)
    px = 0.5
    shape = (int(260 / px),) * 2
    truth, pts = _voronoi(rng, shape, px, 45.0, 2.0)
    # every third cell becomes fibrosis (pale, like endomysium) with one small
    # irregular fiber inside it, 6 µm off the cell's centre
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    small_ids = []
    for k, (y, x) in enumerate(pts[::3]):
        t = 1 + 3 * k
        cell = ndi.binary_dilation(truth == t, iterations=int(1.0 / px))
        truth[cell] = 0
        r_um = rng.uniform(7.0, 10.0)
        a0 = rng.uniform(0, 2 * np.pi)
        y, x = y + 6.0 / px * np.sin(a0), x + 6.0 / px * np.cos(a0)
        ang = np.arctan2(yy - y, xx - x)
        wobble = 1 + 0.2 * np.cos(3 * ang + rng.uniform(0, 6.3))
        fiber = np.hypot(yy - y, xx - x) * px <= r_um * wobble
        truth[fiber & cell] = t
        small_ids.append(t)
    rgb = _he(rng, truth, pts, px)
    lab = segment_fibers(rgb, pixel_size_um=px, stain="he")
    edge = np.unique(np.concatenate([truth[0], truth[-1], truth[:, 0], truth[:, -1]]))
    found = n = 0
    for t in small_ids:
        m = truth == t
        if t in edge or m.sum() * px * px < 100:
            continue
        n += 1
        vals, counts = np.unique(lab[m], return_counts=True)
        found += any(v and c / np.count_nonzero(m | (lab == v)) > 0.5
                     for v, c in zip(vals, counts, strict=True))
    assert n >= 8
    assert found / n >= 0.9, (found, n)  # was 10 / 12
    f1, _, _ = _f1(lab, truth)
    assert f1 >= 0.98, f1  # was 0.96


@pytest.mark.parametrize("kind", ["laminin", "he"])
def test_no_fibers_in_blank_images(kind):
    """A background-only image (no tissue: Poisson noise in the border channel, or a
    white H&E field) gave one or more 'fibers': the watershed cuts noise into cells and
    one passed the shape tests. Their border step is below 1 pixel-noise sigma."""
    found = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        if kind == "he":
            img = np.clip(rng.normal(245, 3, (400, 400, 3)), 0, 255).astype(np.uint8)
        else:
            img = rng.poisson(100, (400, 400)).astype(np.uint16)
        found.append(int(segment_fibers(img, pixel_size_um=0.5, stain=kind).max()))
    assert found == [0, 0, 0]


def test_low_snr_section_still_found():
    """The blank-image rule must not cost real fibers at low SNR (border step 1.4 sigma
    per pixel)."""
    rng = np.random.default_rng(4)
    px = 0.65
    truth, _ = _voronoi(rng, (400, 400), px, 40.0, 2.0)
    img = np.where(truth > 0, 14.0, 28.0)
    img = ndi.gaussian_filter(img, 0.3 / px) + rng.normal(0, 10, truth.shape) + 100
    lab = segment_fibers(np.clip(img, 0, None).astype(np.uint16), pixel_size_um=px)
    f1, _, _ = _f1(lab, truth)
    assert f1 >= 0.9, f1


def _edge_section(seed, px, *, pocket_um=5.0, channel_um=7.0, interior=0.12, dim_edge=None):
    """Laminin section whose lower part is bare slide, with background notches.

    Four round pockets of slide (radius ``pocket_um``) reach into the tissue through
    channels ``channel_um`` wide; a 2 µm basal lamina lines the tissue edge. Fiber
    interiors are ``interior`` x the border level above the slide (autofluorescence);
    ``dim_edge`` (if given) is the interior level of the fibers next to the slide.
    Returns the uint16 image, fiber truth and the slide mask.
    """
    rng = np.random.default_rng(seed)
    shape = (int(200 / px), int(300 / px))
    truth, _ = _voronoi(rng, shape, px, 40.0, 2.0)
    yy, xx = np.mgrid[: shape[0], : shape[1]] * px
    edge_y = 120.0
    slide = yy > edge_y
    for k in range(4):
        cx = 40 + k * 70 + rng.uniform(-5, 5)
        cy = edge_y - 14
        slide |= np.hypot(yy - cy, xx - cx) <= pocket_um
        slide |= (np.abs(xx - cx) <= channel_um / 2) & (yy >= cy) & (yy <= edge_y + 1)
    lamina = (ndi.distance_transform_edt(~slide) * px <= 2.0) & ~slide
    cells = np.where(slide | lamina, 0, truth)
    level = np.full(int(truth.max()) + 1, interior)
    if dim_edge is not None:
        near = ndi.distance_transform_edt(~slide) * px <= 25.0
        level[np.unique(cells[near])] = dim_edge
    level[0] = 0.0
    img = np.where((truth == 0) & ~slide | lamina, 1.0, level[cells])
    img = ndi.gaussian_filter(img, 0.3 / px) * 600 + 100
    return rng.poisson(img).astype(np.uint16), cells, slide


def _on_slide(lab, slide):
    return sum(1 for v in np.unique(lab) if v and slide[lab == v].mean() > 0.5)


@pytest.mark.parametrize(("px", "seeds"), [(0.5, (50, 51, 52)), (0.8, (54, 55))])
def test_slide_pockets_at_tissue_edge_are_not_fibers(px, seeds):
    """Bare slide reaching in between the outermost fibers (a notch in the tissue edge)
    was cut by watershed lines into convex 150-300 µm² pieces reported as fibers (1-2
    per edge image of independent phantoms; 15 in 36 notch sections). Their interior is
    as dark as the slide; a fiber's sarcoplasm is brighter (autofluorescence). Here
    9 (px 0.5) and 4 (px 0.8) were found before."""
    found, f1s = [], []
    for seed in seeds:
        for pocket, channel in ((6.0, 8.0), (5.0, 7.0)):
            img, cells, slide = _edge_section(seed, px, pocket_um=pocket, channel_um=channel)
            lab = segment_fibers(img, pixel_size_um=px)
            found.append(_on_slide(lab, slide))
            f1s.append(_f1(lab, cells)[0])
    assert sum(found) == 0, found
    assert min(f1s) >= 0.75, f1s


def test_dim_fibers_at_tissue_edge_are_kept():
    """The slide rule must not take dim fibers beside the slide (interior 1/4 of the
    typical fiber's above the slide), nor any fiber when the interiors are as dark as
    the slide (background-subtracted image: the rule does not apply)."""
    px = 0.5
    for kwargs in (dict(dim_edge=0.03), dict(interior=0.0)):
        img, cells, _ = _edge_section(53, px, **kwargs)
        lab = segment_fibers(img, pixel_size_um=px)
        ref = segment_fibers(img, pixel_size_um=px, params=FiberParams(min_tissue_level=0))
        f1, hits, n = _f1(lab, cells)
        assert hits >= _f1(ref, cells)[1], kwargs
        assert f1 >= 0.8, (kwargs, f1, hits, n)


def test_min_tissue_level_validated():
    with pytest.raises(ValueError, match="min_tissue_level"):
        FiberParams(min_tissue_level=1.0)
