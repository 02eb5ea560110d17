"""An independent phantom generator for spinalquant's cord and muscle segmentations.

Written without looking at :mod:`spinalquant.synthetic`, on purpose with other
choices: additive Gaussian read noise or Poisson noise with an explicit camera
gain and offset, uint8 / 12-bit-in-uint16 / float32 data, backgrounds that are a
vignetting gradient, stripes or an autofluorescent haze, cells that are
ellipses with a soft textured interior, 1-7 z planes, and truth that is known
exactly (label images on pixel centres, positions, areas).

This module is a helper, not a test file (pytest only collects ``test_*.py``).
Every generator takes a seed and uses its own ``numpy.random.Generator``.

Examples
--------
>>> ph = gfp_field(0, pixel_size_um=0.5, size_um=80.0, n_cells=4)
>>> ph.planes.shape[1:] == ph.labels.shape, len(ph.truth) == ph.labels.max()
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, cKDTree
from scipy.special import erf
from skimage.segmentation import find_boundaries

__all__ = [
    "Phantom",
    "background",
    "digitise",
    "fiber_field",
    "gfp_field",
    "min_feret_um",
    "motor_neuron_field",
    "puncta_field",
]

DTYPES = ("uint8", "uint12", "uint16", "float32")
BACKGROUNDS = ("flat", "gradient", "stripes", "haze")


@dataclass(frozen=True)
class Phantom:
    """One generated channel with its ground truth.

    Attributes
    ----------
    planes : ndarray, shape (Z, Y, X)
        The channel as it would be stored (dtype as requested).
    labels : ndarray of int32, shape (Y, X)
        True objects (0 = background); empty for puncta.
    truth : DataFrame
        One row per true object: ``label``, ``y_um``, ``x_um``, ``area_um2`` and
        kind-specific columns (``kind``, ``min_feret_um``, ``touches_border``).
    pixel_size_um : float
    extra : dict
        Other truth (e.g. ``small_cells`` for the ChAT field, ``somata`` labels
        used to cluster puncta).
    """

    planes: np.ndarray
    labels: np.ndarray
    truth: pd.DataFrame
    pixel_size_um: float
    extra: dict = field(default_factory=dict)

    def projection(self) -> np.ndarray:
        """Maximum projection over z, shape (Y, X), dtype preserved."""
        return self.planes.max(axis=0)


# ------------------------------------------------------------------ pieces
def _grid(n: int, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (µm), each (n, n)."""
    c = (np.arange(n) + 0.5) * px
    return np.meshgrid(c, c, indexing="ij")


def random_walk(rng: np.random.Generator, mask: np.ndarray, px: float, *, length_um: float = 40.0) -> None:
    """Draw one astrocyte process into ``mask`` (in place): a random walk of unit steps
    from a uniform start, turning by N(0, 0.15) rad a step, ``length_um`` long or until it
    leaves the image."""
    y, x = rng.uniform(0, mask.shape[0]), rng.uniform(0, mask.shape[1])
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(int(length_um / px)):
        ang += rng.normal(0, 0.15)
        y, x = y + np.sin(ang), x + np.cos(ang)
        if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]):
            break
        mask[int(y), int(x)] = True


def calls_right(truth_labels: np.ndarray, labels: np.ndarray, calls: pd.DataFrame,
                truth_call: dict) -> list[bool]:
    """Per found cell whose pixels are mostly on a truth cell: is its ``gfap_positive``
    call that of the truth cell under most of its pixels?"""
    right = []
    for k, pos in zip(calls["label"], calls["gfap_positive"], strict=True):
        under = truth_labels[labels == k]
        under = under[under > 0]
        if under.size > 0.5 * np.count_nonzero(labels == k):
            right.append(bool(pos) == bool(truth_call[int(np.bincount(under).argmax())]))
    return right


def _smooth_field(rng: np.random.Generator, shape, scale_px: float) -> np.ndarray:
    """Zero-mean, unit-std random field with correlation length ``scale_px``."""
    f = ndi.gaussian_filter(rng.normal(size=shape), max(scale_px, 0.5))
    return (f - f.mean()) / (f.std() + 1e-12)


def background(kind: str, shape, *, pixel_size_um: float, rng: np.random.Generator,
               strength: float = 1.0) -> np.ndarray:
    """A relative background (mean ~1) of one kind.

    ``flat``: 1. ``gradient``: radial vignetting (corners at 55 %) times a linear
    ramp. ``stripes``: 1 + 0.25 sin along x, period 18 µm (resonant-scanner
    banding / section-thickness ridges). ``haze``: 1 + broad autofluorescent
    blobs (sigma 20-50 µm) up to ~+120 %. ``strength`` scales the variation of
    every kind (0 = flat).
    """
    if kind not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}; got {kind!r}")
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    if kind == "flat":
        return np.ones(shape)
    if kind == "gradient":
        r2 = ((yy / ny - 0.5) ** 2 + (xx / nx - 0.5) ** 2) / 0.5
        return 1.0 + strength * ((1.0 - 0.45 * r2) * (0.8 + 0.4 * xx / nx) - 1.0)
    if kind == "stripes":
        return 1.0 + strength * 0.25 * np.sin(2 * np.pi * xx * pixel_size_um / 18.0 + rng.uniform(0, 6.3))
    out = np.ones(shape)
    n_blobs = max(2, int(ny * nx * pixel_size_um**2 / 8000))
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        s = rng.uniform(20, 50) / pixel_size_um
        out += strength * rng.uniform(0.4, 1.2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return out


def digitise(signal: np.ndarray, bg: np.ndarray, *, snr: float, noise: str, dtype: str,
             rng: np.random.Generator) -> np.ndarray:
    """Scale, add noise and store.

    Parameters
    ----------
    signal : ndarray (Z, Y, X)
        Object signal, 1.0 = a nominal object.
    bg : ndarray (Y, X)
        Relative background, mean ~1.
    snr : float
        Nominal object amplitude over the background noise std (at bg = 1).
    noise : {"gaussian", "poisson"}
        ``gaussian``: additive read noise only (an EMCCD/sCMOS after
        denoising looks like this). ``poisson``: photons with a mean
        background of 20 photons, camera gain 2.7 ADU/photon, offset 180 ADU
        and 1.5 ADU read noise.
    dtype : {"uint8", "uint12", "uint16", "float32"}
        ``uint12`` is 12-bit data in a uint16 container (max 4095).

    Returns
    -------
    ndarray (Z, Y, X) of the requested dtype.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}; got {dtype!r}")
    if noise == "gaussian":
        sd = 1.0
        x = 4.0 * bg + snr * sd * signal + rng.normal(0, sd, signal.shape)
    elif noise == "poisson":
        bg_ph = 20.0
        amp_ph = snr * np.sqrt(bg_ph)
        lam = bg_ph * bg + amp_ph * signal
        x = rng.poisson(np.clip(lam, 0, None)).astype(float)
        adu = 2.7 * x + 180.0 + rng.normal(0, 1.5, x.shape)
        # in units of the background's noise std (background ~4.5) for the scaling below
        x = (adu - 180.0) / (2.7 * np.sqrt(bg_ph))
    else:
        raise ValueError(f"noise must be 'gaussian' or 'poisson'; got {noise!r}")
    # x is now in units of background-noise std; map a nominal object to ~55 %
    # of the type's range so bright cells (1.5x) stay below saturation mostly
    top = 4.0 + snr * 1.0
    if dtype == "float32":
        return (x / top * 0.6).astype(np.float32)  # arbitrary units, may be < 0
    full = {"uint8": 255.0, "uint12": 4095.0, "uint16": 65535.0}[dtype]
    offset = 0.06 * full
    y = offset + x / top * 0.55 * full
    y = np.clip(np.rint(y), 0, full)
    return y.astype(np.uint8 if dtype == "uint8" else np.uint16)


def _z_profile(nz: int, z_um: np.ndarray, step_um: float, sigma_um: np.ndarray) -> np.ndarray:
    """Relative brightness (n_obj, nz) of objects at depths ``z_um`` in each plane."""
    planes = (np.arange(nz) - (nz - 1) / 2) * step_um
    return np.exp(-((planes[None, :] - z_um[:, None]) ** 2) / (2 * sigma_um[:, None] ** 2))


def _soft(dist_um: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased inside (1) / outside (0) from a signed distance (µm, < 0 inside)."""
    return np.clip(0.5 - dist_um / px, 0.0, 1.0)


def _place(rng, n, radii, size_um, *, margin, gap, others=()):
    """Dart-throw ``n`` discs of ``radii`` (µm) at least ``gap`` µm apart; returns (k, 2)."""
    pts: list[np.ndarray] = []
    rs: list[float] = []
    fixed = list(others)
    for i in range(n):
        for _ in range(400):
            p = rng.uniform(margin + radii[i], size_um - margin - radii[i], 2)
            ok = all(np.hypot(*(p - q)) > radii[i] + r + gap for q, r in zip(pts, rs, strict=True))
            ok = ok and all(np.hypot(*(p - q)) > radii[i] + r + gap for q, r in fixed)
            if ok:
                pts.append(p)
                rs.append(radii[i])
                break
    return np.array(pts).reshape(-1, 2), np.array(rs)


def _psf(img: np.ndarray, sigma_um: float, px: float) -> np.ndarray:
    return ndi.gaussian_filter(img, sigma_um / px) if img.ndim == 2 else np.stack(
        [ndi.gaussian_filter(p, sigma_um / px) for p in img])


# ------------------------------------------------------------------ GFP cells
def gfp_field(
    seed: int,
    *,
    pixel_size_um: float,
    size_um: float = 200.0,
    n_cells: int = 30,
    diameter_um: tuple[float, float] = (8.0, 20.0),
    aspect: tuple[float, float] = (1.0, 1.5),
    touching_fraction: float = 0.3,
    processes: bool = True,
    snr: float = 8.0,
    noise: str = "gaussian",
    dtype: str = "uint16",
    bg: str = "gradient",
    bg_strength: float = 1.0,
    n_z: int = 3,
    z_step_um: float = 2.0,
) -> Phantom:
    """GFP+ donor cells: textured ellipses, some in touching pairs, thin processes.

    Cells have equivalent diameters uniform in ``diameter_um``, axis ratio
    uniform in ``aspect`` (1-1.5),
    brightness 0.6-1.4 x nominal with a +-12 % texture, a 0.3 µm PSF, and
    (``processes``) one or two 0.8 µm-wide, 4-10 µm processes on a third of the
    cells (not part of the truth, as in a manual outline). ``touching_fraction``
    of the cells are placed as a neighbour of another cell with their edges
    0-1 µm apart (overlapping pixels go to the nearer centre).

    Returns
    -------
    Phantom
        ``truth`` columns ``label, y_um, x_um, area_um2, diameter_um``.
    """
    rng = np.random.default_rng(seed)
    px = float(pixel_size_um)
    n = round(size_um / px)
    yy, xx = _grid(n, px)
    d_eq = rng.uniform(*diameter_um, n_cells)
    aspect = rng.uniform(*aspect, n_cells)
    a = 0.5 * d_eq * np.sqrt(aspect)  # semi-axes with a*b = (d/2)^2
    b = 0.5 * d_eq / np.sqrt(aspect)
    theta = rng.uniform(0, np.pi, n_cells)
    n_touch = round(touching_fraction * n_cells / 2)
    n_free = n_cells - n_touch
    centres, _ = _place(rng, n_free, a[:n_free] + 1.0, size_um, margin=2.0, gap=3.0)
    n_free = len(centres)
    cells = [(c, i) for i, c in enumerate(centres)]
    # touching partners: next to a free cell, edges ~0-1 µm apart along a random direction
    placed = [(c, a[i] + 1.0) for c, i in cells]
    j = n_free
    for host in rng.permutation(n_free):
        if j >= n_cells or len(cells) >= n_free + n_touch:
            break
        hc = centres[host]
        for _ in range(40):
            ang = rng.uniform(0, 2 * np.pi)
            u = np.array([np.sin(ang), np.cos(ang)])
            # radii of both ellipses along u (approximately: along their own axes)
            def rad(k, u=u):
                t = np.arctan2(u[0], u[1]) - theta[k]
                return a[k] * b[k] / np.hypot(b[k] * np.cos(t), a[k] * np.sin(t))
            p = hc + u * (rad(host) + rad(j) + rng.uniform(-0.5, 0.5))
            if np.any(p < a[j] + 2) or np.any(p > size_um - a[j] - 2):
                continue
            ok = all(np.hypot(*(p - q)) > a[j] + r + 1.0 for q, r in placed
                     if not np.allclose(q, hc))
            if ok:
                cells.append((p, j))
                placed.append((p, a[j] + 1.0))
                j += 1
                break
    idx = np.array([i for _, i in cells])
    cen = np.array([c for c, _ in cells])
    k = len(cen)
    a, b, theta, d_eq = a[idx], b[idx], theta[idx], d_eq[idx]
    bright = rng.uniform(0.6, 1.4, k)
    z_c = rng.uniform(-0.5, 0.5, k) * max(z_step_um * (n_z - 1), 2.0)
    zprof = _z_profile(n_z, z_c, z_step_um, d_eq / 2.5)  # (k, nz)

    texture = 1.0 + 0.12 * _smooth_field(rng, (n, n), 1.0 / px)
    best = np.full((n, n), np.inf)
    lab = np.zeros((n, n), np.int32)
    sig = np.zeros((n_z, n, n))
    for m in range(k):
        cy, cx = cen[m]
        h = int(np.ceil((a[m] + 3) / px))
        iy0, ix0 = max(0, int(cy / px) - h), max(0, int(cx / px) - h)
        sl = (slice(iy0, int(cy / px) + h + 1), slice(ix0, int(cx / px) + h + 1))
        dy, dx = yy[sl] - cy, xx[sl] - cx
        c, s = np.cos(theta[m]), np.sin(theta[m])
        u, v = dx * c + dy * s, -dx * s + dy * c
        rho = np.hypot(u / a[m], v / b[m])
        dist = (rho - 1.0) * np.sqrt(a[m] * b[m])  # approximate signed distance (µm)
        inside = rho < 1.0
        closer = inside & (rho < best[sl])
        best[sl] = np.where(closer, rho, best[sl])
        lab[sl][closer] = m + 1
        prof = _soft(dist, px) * bright[m]
        for z in range(n_z):
            sig[z][sl] = np.maximum(sig[z][sl], prof * zprof[m, z])
    sig *= texture[None]
    if processes:
        proc = np.zeros((n, n), bool)
        for m in rng.choice(k, size=k // 3, replace=False):
            for _ in range(rng.integers(1, 3)):
                ang = rng.uniform(0, 2 * np.pi)
                length = rng.uniform(4, 10)
                t = np.linspace(0, np.sqrt(a[m] * b[m]) + length, 200)
                py = (cen[m][0] + t * np.sin(ang)) / px
                pxx = (cen[m][1] + t * np.cos(ang)) / px
                ok = (py >= 0) & (py < n) & (pxx >= 0) & (pxx < n)
                proc[py[ok].astype(int), pxx[ok].astype(int)] = True
        proc = ndi.distance_transform_edt(~proc) * px <= 0.4
        level = 0.5 * np.median(bright)
        sig = np.maximum(sig, (proc & (lab == 0))[None] * level * zprof.max(axis=0).mean())
    sig = _psf(sig, 0.3, px)
    img = digitise(sig, background(bg, (n, n), pixel_size_um=px, rng=rng, strength=bg_strength)[None], snr=snr,
                   noise=noise, dtype=dtype, rng=rng)
    truth = _label_table(lab, px)
    truth["diameter_um"] = d_eq
    return Phantom(img, lab, truth, px)


def _label_table(lab: np.ndarray, px: float) -> pd.DataFrame:
    ids = np.arange(1, int(lab.max()) + 1)
    area = ndi.sum_labels(np.ones_like(lab), lab, ids) * px * px
    com = np.array(ndi.center_of_mass(np.ones_like(lab), lab, ids)).reshape(-1, 2)
    return pd.DataFrame({"label": ids, "y_um": (com[:, 0] + 0.5) * px,
                         "x_um": (com[:, 1] + 0.5) * px, "area_um2": area})


# ------------------------------------------------------------ motor neurons
def motor_neuron_field(
    seed: int,
    *,
    pixel_size_um: float,
    size_um: float = 360.0,
    n_neurons: int = 7,
    n_small: int = 8,
    diameter_um: tuple[float, float] = (25.0, 45.0),
    touching_pair: bool = True,
    c_boutons: bool = True,
    stump_length_um: tuple[float, float] = (20.0, 45.0),
    stump_width_um: tuple[float, float] = (5.0, 7.0),
    snr: float = 8.0,
    noise: str = "poisson",
    dtype: str = "uint12",
    bg: str = "haze",
    bg_strength: float = 1.0,
    n_z: int = 5,
    z_step_um: float = 1.5,
) -> Phantom:
    """ChAT channel: motor-neuron somata, small ChAT+ cells, neuropil, C-boutons.

    Somata are lobed ellipses (``r(θ)`` with 2nd and 3rd harmonics of 4-8 %) of
    equivalent diameter in ``diameter_um``, brightness 0.55-1.3 x, a darker
    nucleus (0.25-0.4 x, radius 0.3-0.4 of the soma, off-centre), and 2-4
    dendrite stumps tapering from ``stump_width_um`` (5-7 µm) to 1.5 µm over
    ``stump_length_um`` (20-45 µm) beyond the soma edge (not part of the truth,
    as in a manual soma outline). ``n_small`` ChAT+ interneurons have diameters 9-16 µm (areas
    64-200 µm², all < 250 µm²). The neuropil has a dim fibrous ChAT texture and
    (``c_boutons``) 1 µm ChAT+ boutons hugging each soma.

    Returns
    -------
    Phantom
        ``truth``: the motor neurons (``label, y_um, x_um, area_um2``);
        ``extra["small"]``: small cells (``y_um, x_um, area_um2``);
        ``extra["soma_centres_um"]``, ``extra["soma_radius_um"]`` for puncta.
    """
    rng = np.random.default_rng(seed)
    px = float(pixel_size_um)
    n = round(size_um / px)
    yy, xx = _grid(n, px)
    d_eq = rng.uniform(*diameter_um, n_neurons)
    r0 = d_eq / 2
    cen, _ = _place(rng, n_neurons, r0 * 1.1 + 20, size_um, margin=-18.0, gap=2.0)
    k = len(cen)
    r0, d_eq = r0[:k], d_eq[:k]
    if touching_pair and k >= 2:
        # move neuron 1 next to neuron 0: outlines 0-1 µm apart
        ang = rng.uniform(0, 2 * np.pi)
        p = cen[0] + (r0[0] + r0[1] + rng.uniform(0.0, 1.0)) * np.array([np.sin(ang), np.cos(ang)])
        if np.all(p > r0[1] + 3) and np.all(p < size_um - r0[1] - 3) and all(
            np.hypot(*(p - cen[i])) > r0[1] + r0[i] + 5 for i in range(2, k)
        ):
            cen[1] = p
    harm = rng.uniform(0.04, 0.08, (k, 2))
    phase = rng.uniform(0, 2 * np.pi, (k, 2))
    bright = rng.uniform(0.55, 1.3, k)
    sig2d = np.zeros((n, n))
    lab = np.zeros((n, n), np.int32)
    best = np.full((n, n), np.inf)
    for m in range(k):
        h = int(np.ceil((1.5 * r0[m] + 50) / px))
        cy, cx = int(cen[m][0] / px), int(cen[m][1] / px)
        sl = (slice(max(0, cy - h), cy + h + 1), slice(max(0, cx - h), cx + h + 1))
        dy, dx = yy[sl] - cen[m][0], xx[sl] - cen[m][1]
        t = np.arctan2(dy, dx)
        r = r0[m] * (1 + harm[m, 0] * np.cos(2 * t + phase[m, 0]) + harm[m, 1] * np.cos(3 * t + phase[m, 1]))
        r = r / np.sqrt(1 + 0.5 * (harm[m] ** 2).sum())  # keeps the mean area ~ pi r0^2
        rr = np.hypot(dy, dx)
        rho = rr / r
        closer = (rho < 1) & (rho < best[sl])
        best[sl] = np.where(closer, rho, best[sl])
        lab[sl][closer] = m + 1
        body = _soft(rr - r, px)
        nr = rng.uniform(0.3, 0.4) * r0[m]
        t0 = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(0, 0.3) * r0[m] * np.array([np.sin(t0), np.cos(t0)])
        nuc = _soft(np.hypot(dy - off[0], dx - off[1]) - nr, px)
        level = body * (1 - (1 - rng.uniform(0.25, 0.4)) * nuc)
        for _ in range(rng.integers(2, 5)):  # dendrite stumps
            ang = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(*stump_length_um)
            w0 = rng.uniform(*stump_width_um)
            u = np.array([np.sin(ang), np.cos(ang)])
            along = dy * u[0] + dx * u[1]
            across = np.abs(-dy * u[1] + dx * u[0])
            frac = np.clip((along - 0.7 * r0[m]) / length, 0, None)
            width = w0 + (1.5 - w0) * np.clip(frac, 0, 1)
            den = (along > 0.5 * r0[m]) & (frac <= 1)
            level = np.maximum(level, 0.85 * den * _soft(across - width / 2, px))
        sig2d[sl] = np.maximum(sig2d[sl], bright[m] * level)
    truth = _label_table(lab, px)
    # small ChAT+ cells away from the neurons
    d_small = rng.uniform(9.0, 16.0, n_small)
    others = [(c, r + 25) for c, r in zip(cen, r0, strict=True)]
    sc, _ = _place(rng, n_small, d_small / 2, size_um, margin=3.0, gap=4.0, others=others)
    small_rows = []
    for i, (cy, cx) in enumerate(sc):
        rr = np.hypot(yy - cy, xx - cx)
        sig2d = np.maximum(sig2d, rng.uniform(0.7, 1.3) * _soft(rr - d_small[i] / 2, px))
        small_rows.append((cy, cx, np.pi * d_small[i] ** 2 / 4))
    small = pd.DataFrame(small_rows, columns=["y_um", "x_um", "area_um2"])
    # neuropil: dim fibrous texture where there is no cell
    fib = np.abs(_smooth_field(rng, (n, n), 0.6 / px))
    neuropil = 0.12 * np.clip(fib - 1.0, 0, None)
    sig2d = np.maximum(sig2d, neuropil)
    if c_boutons:
        pts = []
        for m in range(k):
            nb = int(2 * np.pi * r0[m] / 6)
            t = rng.uniform(0, 2 * np.pi, nb)
            rad = r0[m] + rng.uniform(0.2, 1.2, nb)
            pts += list(zip(cen[m][0] + rad * np.sin(t), cen[m][1] + rad * np.cos(t), strict=True))
        spots = _render_spots((n, n), px, np.array(pts).reshape(-1, 2), np.full(len(pts), 0.7), 0.45)
        sig2d = np.maximum(sig2d, spots)
    # z: somata are thick (they fill every plane), a small intensity fall-off with depth
    zfac = 1.0 - 0.08 * np.abs(np.arange(n_z) - (n_z - 1) / 2) * z_step_um / 2
    sig = _psf(sig2d, 0.35, px)[None] * zfac[:, None, None]
    img = digitise(sig, background(bg, (n, n), pixel_size_um=px, rng=rng, strength=bg_strength)[None], snr=snr,
                   noise=noise, dtype=dtype, rng=rng)
    return Phantom(img, lab, truth, px, extra={"small": small, "soma_centres_um": cen,
                                                "soma_radius_um": r0, "soma_labels": lab})


# -------------------------------------------------------------------- puncta
def _render_spots(shape, px, pts_um, amp, sigma_um) -> np.ndarray:
    """Pixel-integrated Gaussian spots; ``amp`` is the Gaussian's height (continuous)."""
    out = np.zeros(shape)
    sig = np.broadcast_to(np.asarray(sigma_um, float), (len(pts_um),))
    for (y, x), a, s in zip(pts_um, amp, sig, strict=True):
        h = int(np.ceil(4 * s / px)) + 1
        cy, cx = int(y / px), int(x / px)
        iy = np.arange(max(0, cy - h), min(shape[0], cy + h + 1))
        ix = np.arange(max(0, cx - h), min(shape[1], cx + h + 1))
        if len(iy) == 0 or len(ix) == 0:
            continue
        q = np.sqrt(2) * s
        wy = 0.5 * (erf(((iy + 1) * px - y) / q) - erf((iy * px - y) / q))
        wx = 0.5 * (erf(((ix + 1) * px - x) / q) - erf((ix * px - x) / q))
        # wy, wx integrate the unit Gaussian over each pixel; scale to a height of a
        out[np.ix_(iy, ix)] += a * np.outer(wy, wx) * 2 * np.pi * s * s / (px * px)
    return out


def puncta_field(
    seed: int,
    *,
    pixel_size_um: float,
    size_um: float = 120.0,
    n_somata: int = 2,
    soma_diameter_um: tuple[float, float] = (25.0, 40.0),
    perisomatic_per_10um: float = 3.0,
    neuropil_density_per_um2: float = 0.03,
    sigma_um: tuple[float, float] = (0.2, 0.35),
    min_separation_um: float = 1.0,
    snr: float = 10.0,
    noise: str = "gaussian",
    dtype: str = "float32",
    bg: str = "stripes",
    bg_strength: float = 1.0,
    n_z: int = 3,
    z_step_um: float = 0.5,
) -> Phantom:
    """Synaptophysin-like spots: perisomatic clusters plus neuropil puncta.

    Somata (discs of ``soma_diameter_um``) are dark holes in a neuropil haze
    (synaptophysin is absent from the soma); puncta cluster on their outline
    (0-1 µm outside it, ``perisomatic_per_10um`` per 10 µm of perimeter) and are
    spread in the neuropil at ``neuropil_density_per_um2``. Spot sigmas are
    uniform in ``sigma_um`` (boutons of several sizes), heights 0.6-1.5 x, all
    at least ``min_separation_um`` apart. Puncta lie at depths within +-0.4 µm
    of a plane (axial sigma 0.6 µm), so each is in focus in the stack.

    ``snr`` is the nominal spot height over the background noise std.

    Returns
    -------
    Phantom
        ``truth``: ``label, y_um, x_um, sigma_um, perisomatic, soma`` (soma index
        or -1); ``labels``: the soma discs (for perisomatic counts).
    """
    rng = np.random.default_rng(seed)
    px = float(pixel_size_um)
    n = round(size_um / px)
    yy, xx = _grid(n, px)
    r_s = rng.uniform(*soma_diameter_um, n_somata) / 2
    cen, _ = _place(rng, n_somata, r_s + 4, size_um, margin=2.0, gap=6.0)
    k = len(cen)
    r_s = r_s[:k]
    soma = np.zeros((n, n), np.int32)
    for m in range(k):
        soma[np.hypot(yy - cen[m][0], xx - cen[m][1]) < r_s[m]] = m + 1
    pts_buf = np.full((20000, 2), -1e9)
    owner: list[int] = []

    def try_add(p, who):
        if np.any(p < 0.6) or np.any(p > size_um - 0.6):
            return False
        if np.any(np.hypot(*(pts_buf[: len(owner)] - p).T) < min_separation_um):
            return False
        pts_buf[len(owner)] = p
        owner.append(who)
        return True

    for m in range(k):
        want = int(2 * np.pi * r_s[m] / 10 * perisomatic_per_10um)
        got = tries = 0
        while got < want and tries < 50 * want:
            tries += 1
            t = rng.uniform(0, 2 * np.pi)
            rad = r_s[m] + rng.uniform(0.0, 1.0)
            got += try_add(cen[m] + rad * np.array([np.sin(t), np.cos(t)]), m)
    want = int(neuropil_density_per_um2 * size_um**2)
    got = tries = 0
    while got < want and tries < 30 * want:
        tries += 1
        p = rng.uniform(0.6, size_um - 0.6, 2)
        d = np.hypot(*(cen - p).T) - r_s if k else np.array([np.inf])
        if np.any(d < 1.5):  # not inside a soma nor in its perisomatic ring
            continue
        got += try_add(p, -1)
    pts_a = pts_buf[: len(owner)].copy()
    owner_a = np.array(owner, int)
    s = rng.uniform(*sigma_um, len(pts_a))
    amp = rng.uniform(0.6, 1.5, len(pts_a))
    z = rng.uniform(-0.4, 0.4, len(pts_a)) + rng.integers(0, n_z, len(pts_a)) * z_step_um
    planes = np.arange(n_z) * z_step_um
    zf = np.exp(-((planes[None, :] - z[:, None]) ** 2) / (2 * 0.6**2))  # (N, nz)
    sig = np.stack([_render_spots((n, n), px, pts_a, amp * zf[:, i], s) for i in range(n_z)])
    # neuropil haze (absent in somata) at 15 % of a punctum, smooth
    haze = 0.15 * ndi.gaussian_filter((soma == 0).astype(float), 1.0 / px)
    sig = sig + haze[None]
    img = digitise(sig, background(bg, (n, n), pixel_size_um=px, rng=rng, strength=bg_strength)[None], snr=snr,
                   noise=noise, dtype=dtype, rng=rng)
    height = amp * zf.max(axis=1)
    # the brightest pixel of each spot alone (noise-free, best plane), in units of
    # the nominal height: times ``snr`` it is the spot's peak-pixel SNR
    peak = np.array([_render_spots((n, n), px, p[None], [h], sg)[
        max(0, int(p[0] / px) - 2): int(p[0] / px) + 3, max(0, int(p[1] / px) - 2): int(p[1] / px) + 3
    ].max() for p, h, sg in zip(pts_a, height, s, strict=True)]) if len(pts_a) else np.zeros(0)
    truth = pd.DataFrame({"label": np.arange(1, len(pts_a) + 1), "y_um": pts_a[:, 0],
                          "x_um": pts_a[:, 1], "sigma_um": s, "height": height,
                          "peak_pixel_snr": snr * peak, "perisomatic": owner_a >= 0,
                          "soma": owner_a})
    return Phantom(img, soma, truth, px, extra={"soma_centres_um": cen, "soma_radius_um": r_s})


# --------------------------------------------------------------------- fibers
def min_feret_um(mask: np.ndarray, px: float) -> float:
    """Minimum caliper width (µm) of a pixel mask, over its pixel corners, 0.25° steps."""
    yy, xx = np.nonzero(mask)
    corners = np.concatenate([np.column_stack([yy + dy, xx + dx]) for dy in (0, 1) for dx in (0, 1)])
    hull = corners[ConvexHull(corners).vertices].astype(float)
    ang = np.deg2rad(np.arange(0, 180, 0.25))
    proj = hull @ np.stack([np.sin(ang), np.cos(ang)])
    return float((proj.max(axis=0) - proj.min(axis=0)).min() * px)


def fiber_field(
    seed: int,
    *,
    pixel_size_um: float,
    size_um: float = 400.0,
    radius_um: tuple[float, float] = (11.0, 30.0),
    border_um: tuple[float, float] = (1.0, 3.0),
    interior: tuple[float, float] = (0.08, 0.3),
    snr: float = 8.0,
    noise: str = "gaussian",
    dtype: str = "uint8",
    bg: str = "gradient",
    bg_strength: float = 1.0,
    n_z: int = 1,
) -> Phantom:
    """Laminin-stained muscle cross-section: a power (Laguerre) diagram of fibers.

    Fiber nuclei (seed points) are dart-thrown with radii uniform in
    ``radius_um`` (min Feret ~ 20-60 µm) and the plane is split by the power
    distance ``|x - p|^2 - r^2``, which gives polygonal fibers of unequal size.
    The border is a band of width uniform in ``border_um`` (one width per image,
    plus +-20 % along the outline) around every cell boundary, brightness 1;
    fiber interiors have their own level in ``interior`` (autofluorescence).
    PSF 0.4 µm.

    Returns
    -------
    Phantom
        ``truth``: ``label, y_um, x_um, area_um2, min_feret_um, touches_border``.
    """
    rng = np.random.default_rng(seed)
    px = float(pixel_size_um)
    n = round(size_um / px)
    yy, xx = _grid(n, px)
    # seed points: dart throwing with per-point radii, slightly beyond the edges
    P, R = np.zeros((0, 2)), np.zeros(0)
    for _ in range(6000):
        r = rng.uniform(*radius_um)
        p = rng.uniform(-r, size_um + r, 2)
        if np.all(np.hypot(*(P - p).T) > 0.92 * (r + R)):
            P, R = np.vstack([P, p]), np.append(R, r)
    tree = cKDTree(P)
    q = np.column_stack([yy.ravel(), xx.ravel()])
    _, nn = tree.query(q, k=min(10, len(P)))
    pw = ((q[:, None, :] - P[nn]) ** 2).sum(-1) - R[nn] ** 2
    cell = nn[np.arange(len(q)), np.argmin(pw, axis=1)].reshape(n, n)
    bnd = find_boundaries(cell, mode="thick")
    dist = ndi.distance_transform_edt(~bnd) * px + 0.5 * px  # to the cell boundary midline
    w = rng.uniform(*border_um)
    w_map = w * (1 + 0.2 * np.clip(_smooth_field(rng, (n, n), 8.0 / px), -2, 2) / 2)
    border = dist <= w_map / 2
    inner = np.where(border, 0, cell + 1)
    # relabel: connected pieces of each cell (an inner region can be cut only at the
    # image edge); keep labels 1..k
    lab = np.zeros((n, n), np.int32)
    nxt = 1
    for sl_i, sl in enumerate(ndi.find_objects(inner)):
        if sl is None:
            continue
        comp, nc = ndi.label(inner[sl] == sl_i + 1)
        if nc == 0:
            continue
        sizes = np.bincount(comp.ravel())[1:]
        keep = comp == (np.argmax(sizes) + 1)
        lab[sl][keep] = nxt
        nxt += 1
    lev = rng.uniform(*interior, nxt)
    lev[0] = 0.0
    sig2d = np.where(border, 1.0, lev[lab])
    # soft border edges: anti-aliased band
    edge = _soft(dist - w_map / 2, px)
    sig2d = np.maximum(sig2d, edge)
    sig2d = sig2d * (1 + 0.1 * _smooth_field(rng, (n, n), 2.0 / px))
    sig = _psf(sig2d, 0.4, px)[None].repeat(n_z, axis=0)
    img = digitise(sig, background(bg, (n, n), pixel_size_um=px, rng=rng, strength=bg_strength)[None], snr=snr,
                   noise=noise, dtype=dtype, rng=rng)
    truth = _label_table(lab, px)
    objs = ndi.find_objects(lab)
    truth["min_feret_um"] = [min_feret_um(lab[s] == i + 1, px) for i, s in enumerate(objs)]
    edge_ids = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    truth["touches_border"] = truth["label"].isin(edge_ids[edge_ids > 0])
    return Phantom(img, lab, truth, px)
