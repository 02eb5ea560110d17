"""Synthetic micrographs with known ground truth ("phantoms").

Two generators build images that look like the study's confocal data and come
with the exact answer every analysis should give:

* :func:`make_cord_section` — a lumbar spinal-cord section: GFP+ donor cells
  (most co-expressing GFAP), a stellate GFAP+ astrocyte network, large ChAT+
  motor neurons among small ChAT+ cells, diffraction-limited synaptophysin
  puncta around the motor-neuron somata, autofluorescent lipofuscin granules,
  an optional ventral-horn ROI.
* :func:`make_muscle_section` — a tibialis-anterior cross-section: a polygonal
  fiber tessellation with atrophic angular fibers, as laminin immunofluorescence
  (+ DAPI myonuclei) or as a brightfield H&E RGB image.

Every length is given in µm and converted with the pixel size, so the same
arguments give the same biology at any pixel size. Everything random comes from
one ``np.random.default_rng(seed)``: the same seed gives identical output.

Ground-truth tables use the result contract's column names (see
``spec/outputs.md``); areas, centroids and min Feret diameters are measured on
the ground-truth label images themselves, so truth and measurement share one
definition.

Noise model (fluorescence)
--------------------------
Each channel is built in photons: ``lambda = illumination * (background +
S * signal)``, where ``signal`` is 1 on average inside objects, ``background``
is tissue autofluorescence (mean ``B`` photons, smooth spatial variation) and
``illumination`` a smooth vignetting (1 in the centre). Counts are
``Poisson(lambda)`` plus Gaussian read noise (``READ`` photons rms), then
scaled by a gain and offset into ``dtype``. The object signal is
``S = snr * sqrt(B + READ**2)``: ``snr`` is the mean object signal over the
standard deviation of the background noise (in the image centre).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import fft as sp_fft
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, cKDTree
from scipy.special import erf
from skimage import draw, measure, segmentation

from .stack import Stack, match_channel

__all__ = ["Phantom", "make_cord_section", "make_muscle_section"]

# ----------------------------------------------------------------- constants
#: Lateral PSF sigma of a confocal objective (~0.21 λ/NA, 520 nm, NA 0.8-1.0), µm.
_PSF_SIGMA_UM = 0.13
#: Background (tissue autofluorescence) photons per pixel and read noise (photons rms).
_BG_PHOTONS = 30.0
_READ_NOISE = 3.0
#: Column sets of the truth tables.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "gfp_cells": ("label", "y_um", "x_um", "area_um2", "gfap_positive"),
    "astrocytes": ("label", "y_um", "x_um", "area_um2"),
    "motor_neurons": ("label", "y_um", "x_um", "area_um2", "perimeter_um", "n_puncta"),
    "small_chat_cells": ("label", "y_um", "x_um", "area_um2"),
    "puncta": ("label", "y_um", "x_um", "neuron"),
    "fibers": ("label", "y_um", "x_um", "area_um2", "min_feret_um", "touches_border"),
    "granules": ("y_um", "x_um"),
}
#: Internal marker keys of the cord phantom's channels.
_CORD_MARKERS = ("nuclei", "gfp", "gfap", "chat", "synapse")


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic image with its ground truth.

    Parameters
    ----------
    stack : Stack
        The image, data shape ``(C, Z, Y, X)``.
    truth : dict of str -> DataFrame
        Ground-truth tables in the result contract's columns; coordinates in µm
        from the top-left pixel centre.
    labels : dict of str -> ndarray, shape (Y, X)
        Ground-truth label images per object kind (0 = background).
    roi : ndarray, shape (N, 2), optional
        Ventral-horn polygon vertices as ``(y, x)`` in pixels, or None.
    params : dict
        The generator's arguments.
    """

    stack: Stack
    truth: dict[str, pd.DataFrame]
    labels: dict[str, np.ndarray]
    roi: np.ndarray | None = None
    params: dict = field(default_factory=dict)


# =================================================================== helpers
def _empty_table(kind: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype_of(c)) for c in _COLUMNS[kind]})


def _dtype_of(column: str) -> str:
    if column in ("gfap_positive", "touches_border", "in_roi"):
        return "bool"
    if column in ("label", "neuron", "n_puncta"):
        return "int64"
    return "float64"


def _min_feret_px(coords: np.ndarray) -> float:
    """Exact minimum caliper width of pixel squares ``coords`` (N, 2), in pixels.

    The convex hull of the pixel-corner outline is scanned with rotating
    calipers: the minimum width of a convex polygon is attained with one
    caliper flush against a hull edge.
    """
    coords = np.asarray(coords, dtype=np.int64)
    r, c = coords[:, 0], coords[:, 1]
    if np.any(np.diff(r) < 0) or np.any((np.diff(r) == 0) & (np.diff(c) < 0)):
        order = np.lexsort((c, r))
        r, c = r[order], c[order]
    first = np.r_[True, r[1:] != r[:-1]]
    last = np.r_[r[1:] != r[:-1], True]
    ext = np.concatenate([np.c_[r[first], c[first]], np.c_[r[last], c[last]]]).astype(float)
    corners = np.concatenate(
        [ext + d for d in ((-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5))]
    )
    corners = np.unique(corners, axis=0)
    if len(corners) < 3 or np.linalg.matrix_rank(corners - corners[0]) < 2:
        return 1.0
    hull = corners[ConvexHull(corners).vertices]
    edges = np.roll(hull, -1, axis=0) - hull
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    normals = np.c_[-edges[:, 1], edges[:, 0]] / lengths[:, None]
    # distance of every hull vertex from every edge's supporting line
    dist = np.abs(normals @ hull.T - (normals * hull).sum(axis=1)[:, None])
    return float(dist.max(axis=1).min())


def _region_table(labels: np.ndarray, pixel_size_um: float, *, perimeter: bool = False,
                  feret: bool = False) -> pd.DataFrame:
    """Label, centroid (µm), area (µm²) [, perimeter, min Feret] of every region."""
    p = float(pixel_size_um)
    rows: dict[str, list[Any]] = {"label": [], "y_um": [], "x_um": [], "area_um2": []}
    if perimeter:
        rows["perimeter_um"] = []
    if feret:
        rows["min_feret_um"] = []
    for rp in measure.regionprops(labels):
        rows["label"].append(int(rp.label))
        cy, cx = rp.centroid
        rows["y_um"].append(cy * p)
        rows["x_um"].append(cx * p)
        rows["area_um2"].append(float(rp.area) * p * p)
        if perimeter:
            rows["perimeter_um"].append(float(rp.perimeter) * p)
        if feret:
            rows["min_feret_um"].append(_min_feret_px(rp.coords) * p)
    table = pd.DataFrame(rows)
    return table.astype({"label": "int64"})


def _star(rng: np.random.Generator, n_harm: int, amp: float) -> tuple[np.ndarray, np.ndarray]:
    """Random Fourier coefficients of a perturbed-ellipse outline."""
    k = np.arange(2, 2 + n_harm)
    amps = amp * rng.uniform(0.3, 1.0, n_harm) / np.sqrt(k - 1)
    phases = rng.uniform(0, 2 * np.pi, n_harm)
    return amps, phases


def _star_mask(shape: tuple[int, int], p: float, cy: float, cx: float, r0: float,
               amps: np.ndarray, phases: np.ndarray, elong: float = 1.0, angle: float = 0.0
               ) -> tuple[tuple[slice, slice], np.ndarray]:
    """Mask of a star-shaped body centred at (cy, cx) µm; returns (bbox slices, mask)."""
    rmax = r0 * (1 + np.abs(amps).sum()) * max(elong, 1 / elong) + p
    y0 = max(int(np.floor((cy - rmax) / p)), 0)
    y1 = min(int(np.ceil((cy + rmax) / p)) + 1, shape[0])
    x0 = max(int(np.floor((cx - rmax) / p)), 0)
    x1 = min(int(np.ceil((cx + rmax) / p)) + 1, shape[1])
    if y1 <= y0 or x1 <= x0:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(float) * p
    dy, dx = yy - cy, xx - cx
    ca, sa = np.cos(angle), np.sin(angle)
    u = (dx * ca + dy * sa) / np.sqrt(elong)
    v = (-dx * sa + dy * ca) * np.sqrt(elong)
    theta = np.arctan2(v, u)
    rho = np.hypot(u, v)
    k = np.arange(2, 2 + len(amps))[:, None, None]
    radius = r0 * (1 + (amps[:, None, None] * np.cos(k * theta + phases[:, None, None])).sum(0))
    return (slice(y0, y1), slice(x0, x1)), rho <= radius


def _ring(shape: tuple[int, int], p: float, cy: float, cx: float, r: float, width: float
          ) -> tuple[tuple[slice, slice], np.ndarray]:
    """Mask of an annulus (outer radius ``r``, ``width`` µm) centred at (cy, cx) µm."""
    sl, outer = _star_mask(shape, p, cy, cx, r, np.zeros(1), np.zeros(1))
    if outer.size == 0:
        return sl, outer
    yy, xx = np.mgrid[sl].astype(float) * p
    return sl, outer & (np.hypot(yy - cy, xx - cx) > r - width)


def _paint(target: np.ndarray, sl: tuple[slice, slice], mask: np.ndarray, value: float) -> None:
    """Write ``value`` where ``mask`` is set and ``target`` is still 0 (internal arrays only)."""
    view = target[sl]
    view[mask & (view == 0)] = value


def _render_spots(shape: tuple[int, int], p: float, y_um: np.ndarray, x_um: np.ndarray,
                  amp: np.ndarray, sigma_um: np.ndarray) -> np.ndarray:
    """Pixel-integrated Gaussian spots (exact for sub-pixel sizes), float32 (Y, X)."""
    out = np.zeros(shape, np.float32)
    if len(y_um) == 0:
        return out
    sig = np.maximum(np.asarray(sigma_um, float), 1e-3)
    h = int(np.ceil(3.5 * sig.max() / p)) + 1
    off = np.arange(-h, h + 1)
    iy = np.rint(np.asarray(y_um) / p).astype(int)[:, None] + off[None, :]
    ix = np.rint(np.asarray(x_um) / p).astype(int)[:, None] + off[None, :]
    s2 = (np.sqrt(2.0) * sig)[:, None]

    def _cdf1(i: np.ndarray, c: np.ndarray) -> np.ndarray:
        lo = (i - 0.5) * p - c[:, None]
        hi = (i + 0.5) * p - c[:, None]
        return 0.5 * (erf(hi / s2) - erf(lo / s2))

    wy = _cdf1(iy, np.asarray(y_um, float))
    wx = _cdf1(ix, np.asarray(x_um, float))
    # normalise so that ``amp`` is the peak of a spot centred on a pixel
    peak = (0.5 * (erf(0.5 * p / s2) - erf(-0.5 * p / s2))) ** 2
    vals = np.asarray(amp, float)[:, None, None] * wy[:, :, None] * wx[:, None, :] / peak[:, :, None]
    yy = np.broadcast_to(iy[:, :, None], vals.shape)
    xx = np.broadcast_to(ix[:, None, :], vals.shape)
    ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
    np.add.at(out, (yy[ok], xx[ok]), vals[ok].astype(np.float32))
    return out


def _splat(shape: tuple[int, int], p: float, pts_um: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Bilinear splat of weighted points (µm) into a float32 (Y, X) image."""
    out = np.zeros(shape, np.float32)
    if len(pts_um) == 0:
        return out
    fy = pts_um[:, 0] / p
    fx = pts_um[:, 1] / p
    y0 = np.floor(fy).astype(int)
    x0 = np.floor(fx).astype(int)
    ty, tx = fy - y0, fx - x0
    for dy, dx, ww in ((0, 0, (1 - ty) * (1 - tx)), (1, 0, ty * (1 - tx)),
                       (0, 1, (1 - ty) * tx), (1, 1, ty * tx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
        np.add.at(out, (yy[ok], xx[ok]), (w * ww)[ok].astype(np.float32))
    return out


def _processes(rng: np.random.Generator, cy: float, cx: float, r_soma: float, n: int,
               length: tuple[float, float], step: float = 0.2, branch_p: float = 0.5
               ) -> tuple[np.ndarray, np.ndarray]:
    """Thin tapering, gently curving, branching processes radiating from a soma.

    Returns sampled points (M, 2) in µm and their line weights (intensity per µm
    times ``step``), tapering from the soma outwards.
    """
    pts: list[np.ndarray] = []
    wts: list[np.ndarray] = []
    base_angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    todo = [(cy + 0.8 * r_soma * np.sin(a), cx + 0.8 * r_soma * np.cos(a), a,
             rng.uniform(*length), 1.0) for a in base_angles]
    while todo:
        y, x, a, ell, w0 = todo.pop()
        m = max(int(ell / step), 2)
        turn = np.cumsum(rng.normal(0, 0.08 * np.sqrt(step), m))
        ang = a + turn
        ys = y + np.cumsum(np.sin(ang)) * step
        xs = x + np.cumsum(np.cos(ang)) * step
        s = np.arange(m) / m
        pts.append(np.c_[ys, xs])
        wts.append(w0 * (1 - s) ** 0.8 * step)
        if w0 > 0.5 and rng.random() < branch_p:
            j = int(rng.uniform(0.25, 0.7) * m)
            todo.append((ys[j], xs[j], ang[j] + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9),
                         ell * rng.uniform(0.3, 0.6), w0 * (1 - s[j]) * 0.8))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0)
    return np.concatenate(pts), np.concatenate(wts)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Smooth random field in [-1, 1] with correlation length ``scale_px`` (float32)."""
    f = 8  # build on a coarse grid for speed, then zoom
    small = (max(shape[0] // f, 4), max(shape[1] // f, 4))
    g = ndi.gaussian_filter(rng.standard_normal(small), max(scale_px / f, 0.5), mode="wrap")
    g = ndi.zoom(g, (shape[0] / small[0], shape[1] / small[1]), order=1)[: shape[0], : shape[1]]
    g = g - g.mean()
    return (g / (np.abs(g).max() + 1e-12)).astype(np.float32)


def _vignette(shape: tuple[int, int], strength: float = 0.35) -> np.ndarray:
    yy = np.linspace(-1, 1, shape[0])[:, None]
    xx = np.linspace(-1, 1, shape[1])[None, :]
    return (1 - strength * (yy**2 + xx**2) / 2).astype(np.float32)


def _digitise(photons: np.ndarray, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """Poisson + read noise, then gain/offset into ``dtype`` (clipped)."""
    lam = np.maximum(photons, 0).astype(np.float32)
    # shot + read noise in one Gaussian draw where the Gaussian approximation of the
    # Poisson law is accurate (>= 10 photons); exact Poisson + read noise below that
    counts = lam + np.sqrt(lam + _READ_NOISE**2) * rng.standard_normal(lam.shape, np.float32)
    low = lam < 10
    if low.any():
        n_low = int(low.sum())
        counts[low] = rng.poisson(lam[low]) + _READ_NOISE * rng.standard_normal(n_low, np.float32)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return counts.astype(dt)
    if dt == np.uint8:
        gain, offset = 1.0, 5.0
    else:
        gain, offset = 8.0, 100.0
    info = np.iinfo(dt)
    return np.clip(np.rint(counts * gain + offset), info.min, info.max).astype(dt)


def _point_in_polygon(poly_yx: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return measure.points_in_poly(np.c_[y, x], poly_yx)


def _ventral_horn(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A ventral-horn-like blob polygon in the lower part of the image, (N, 2) px (y, x)."""
    h, w = shape
    cy, cx = 0.62 * h, 0.5 * w
    ry, rx = 0.30 * h, 0.36 * w
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    amps, phases = _star(rng, 3, 0.12)
    k = np.arange(2, 5)[:, None]
    r = 1 + (amps[:, None] * np.cos(k * t + phases[:, None])).sum(0)
    ys = np.clip(cy + ry * r * np.sin(t), 1, h - 2)
    xs = np.clip(cx + rx * r * np.cos(t), 1, w - 2)
    return np.c_[ys, xs]


class _Placer:
    """Rejection sampling of non-overlapping discs (µm)."""

    def __init__(self, rng: np.random.Generator, extent_um: tuple[float, float]) -> None:
        self.rng = rng
        self.extent = extent_um
        self.discs: list[tuple[float, float, float]] = []

    def free(self, y: float, x: float, r: float, gap: float) -> bool:
        for (yy, xx, rr) in self.discs:
            if (y - yy) ** 2 + (x - xx) ** 2 < (r + rr + gap) ** 2:
                return False
        return True

    def place(self, r: float, *, margin: float = 0.0, gap: float = 2.0, inside=None,
              tries: int = 400) -> tuple[float, float] | None:
        if min(self.extent) <= 2 * margin:
            return None
        for _ in range(tries):
            y = self.rng.uniform(margin, self.extent[0] - margin)
            x = self.rng.uniform(margin, self.extent[1] - margin)
            if inside is not None and not inside(y, x):
                continue
            if self.free(y, x, r, gap):
                self.discs.append((y, x, r))
                return y, x
        return None

    def add(self, y: float, x: float, r: float) -> None:
        self.discs.append((y, x, r))


# ================================================================ cord section
def _cord_channel_keys(channel_names: tuple[str, ...]) -> list[str]:
    keys = []
    for name in channel_names:
        hit = [k for k in _CORD_MARKERS if match_channel([name], k) is not None]
        if len(hit) != 1:
            raise ValueError(
                f"channel name {name!r} does not name one of the cord markers "
                "(DAPI/nuclei, EGFP/GFP, GFAP, ChAT, Synaptophysin/synaptic marker)"
            )
        keys.append(hit[0])
    if len(set(keys)) != len(keys):
        raise ValueError(f"channel_names {channel_names} name the same marker twice")
    return keys


def make_cord_section(
    *,
    seed: int = 0,
    shape: tuple[int, int] = (768, 768),
    pixel_size_um: float = 0.5,
    n_z: int = 5,
    z_step_um: float = 1.5,
    n_gfp_cells: int = 40,
    gfap_fraction: float = 0.857,
    n_motor_neurons: int = 10,
    n_small_chat: int = 15,
    puncta_per_neuron: int = 25,
    neuropil_puncta_per_1000um2: float = 2.0,
    n_granules: int = 20,
    snr: float = 8.0,
    bleed_gfp_to_gfap: float = 0.08,
    with_roi: bool = False,
    channel_names: tuple[str, ...] = ("DAPI", "EGFP", "GFAP", "ChAT", "Synaptophysin"),
    dtype: Any = np.uint16,
    n_astrocytes: int | None = None,
) -> Phantom:
    """A spinal-cord section phantom with known cells, astrocytes, neurons and puncta.

    Parameters
    ----------
    seed : int
        Seed of the one random generator everything is drawn from.
    shape : (int, int)
        Image size ``(Y, X)`` in pixels.
    pixel_size_um : float
        Lateral pixel size in µm; all biology is specified in µm.
    n_z, z_step_um : int, float
        Number of optical sections and their spacing (µm). Objects sit at a
        random depth and blur with defocus ``|z - z0|``.
    n_gfp_cells : int
        GFP+ donor cells (irregular 8–16 µm bodies, some in touching pairs).
    gfap_fraction : float
        Fraction of GFP+ cells that co-express GFAP (rounded to a whole number).
    n_motor_neurons, n_small_chat : int
        Large ChAT+ motor neurons (≥ 350 µm², in the ventral horn) and small ChAT+
        cells (≤ 200 µm², anywhere).
    puncta_per_neuron : int
        Synaptophysin puncta placed within 2 µm outside each motor-neuron outline.
    neuropil_puncta_per_1000um2 : float
        Density of neuropil puncta elsewhere.
    n_granules : int
        Autofluorescent lipofuscin granules, bright in every channel.
    snr : float
        Mean object signal over the background noise std (see module notes).
    bleed_gfp_to_gfap : float
        Fraction of the GFP signal that bleeds into the GFAP channel.
    with_roi : bool
        Return the ventral-horn polygon as ``roi``; objects exist outside it too.
    channel_names : tuple of str
        Channels to render, in this order; any subset/permutation of
        DAPI, EGFP, GFAP, ChAT, Synaptophysin (aliases accepted, e.g. "GFP").
    dtype : numpy dtype
        uint8, uint16 or a float type.
    n_astrocytes : int, optional
        Host (GFP-negative) astrocytes; default: one per 5000 µm² of image
        (fewer when the field is too crowded to place them all).

    Returns
    -------
    Phantom
        ``stack`` of shape ``(C, n_z, Y, X)``; ``truth`` tables ``gfp_cells``,
        ``astrocytes`` (host astrocytes and GFAP+ donor cells), ``motor_neurons``,
        ``small_chat_cells``, ``puncta``, ``granules`` (each with an ``in_roi``
        column, all True without ROI); ``labels`` (Y, X) for the cell kinds and
        ``puncta`` (one pixel per punctum).

    Examples
    --------
    >>> ph = make_cord_section(seed=1, shape=(256, 256), n_gfp_cells=5, n_motor_neurons=2)
    >>> ph.stack.data.shape
    (5, 5, 256, 256)
    >>> len(ph.truth["gfp_cells"])
    5
    """
    shape = (int(shape[0]), int(shape[1]))
    p = float(pixel_size_um)
    if not (np.isfinite(p) and p > 0):
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um}")
    if min(shape) < 32:
        raise ValueError(f"shape {shape} is too small (need at least 32 x 32 pixels)")
    if n_z < 1:
        raise ValueError(f"n_z must be >= 1, got {n_z}")
    if not 0 <= gfap_fraction <= 1:
        raise ValueError(f"gfap_fraction must be in [0, 1], got {gfap_fraction}")
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}")
    channel_names = tuple(str(c) for c in channel_names)
    keys = _cord_channel_keys(channel_names)
    params = dict(
        seed=seed, shape=shape, pixel_size_um=p, n_z=n_z, z_step_um=z_step_um,
        n_gfp_cells=n_gfp_cells, gfap_fraction=gfap_fraction, n_motor_neurons=n_motor_neurons,
        n_small_chat=n_small_chat, puncta_per_neuron=puncta_per_neuron,
        neuropil_puncta_per_1000um2=neuropil_puncta_per_1000um2, n_granules=n_granules,
        snr=snr, bleed_gfp_to_gfap=bleed_gfp_to_gfap, with_roi=with_roi,
        channel_names=channel_names, dtype=np.dtype(dtype).name, n_astrocytes=n_astrocytes,
    )
    rng = np.random.default_rng(seed)
    ext = (shape[0] * p, shape[1] * p)
    area_um2 = ext[0] * ext[1]
    if n_astrocytes is None:
        n_astrocytes = round(area_um2 / 5000.0)
    horn = _ventral_horn(rng, shape)

    def in_horn(y: float, x: float) -> bool:
        return bool(_point_in_polygon(horn, np.array([y / p]), np.array([x / p]))[0])

    placer = _Placer(rng, ext)
    z_planes = np.arange(n_z) * z_step_um
    z_lo, z_hi = z_planes[0] - 0.5 * z_step_um, z_planes[-1] + 0.5 * z_step_um

    def depth() -> float:
        return float(rng.uniform(z_lo, z_hi))

    # sharp layers: per marker, per object depth bin (nearest plane)
    layers = {k: np.zeros((n_z, *shape), np.float32) for k in _CORD_MARKERS}
    lab = {k: np.zeros(shape, np.int32) for k in
           ("gfp_cells", "astrocytes", "motor_neurons", "small_chat_cells")}
    soma_any = np.zeros(shape, bool)

    def zbin(z0: float) -> int:
        return int(np.clip(np.rint(z0 / z_step_um), 0, n_z - 1)) if z_step_um > 0 else 0

    # intracellular texture: smooth (~1 µm) unit-variance fields, one per marker family
    tex_fields = []
    for _ in range(2):
        g = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(0.8 / p, 0.5))
        tex_fields.append(g / (g.std() + 1e-9))
    # process centre lines per (marker, depth bin): point lists, splatted once at the end
    proc_pts: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = {}

    def add_proc(key: str, b: int, pts: np.ndarray, w: np.ndarray) -> None:
        proc_pts.setdefault((key, b), []).append((pts, w))
    counter = {"gfp_cells": 0, "astrocytes": 0, "small_chat_cells": 0}

    def texture(sl, mask, amount=0.25, which=0):
        return np.clip(1 + amount * tex_fields[which][sl], 0.2, None) * mask

    def add_nucleus(cy, cx, r, z, bright=1.0, nucleolus=False):
        amps, ph = _star(rng, 2, 0.06)
        sl, m = _star_mask(shape, p, cy, cx, r, amps, ph, rng.uniform(1, 1.4), rng.uniform(0, np.pi))
        if m.size:
            layers["nuclei"][zbin(z)][sl] += bright * texture(sl, m, 0.3)
            if nucleolus:
                sl2, m2 = _star_mask(shape, p, cy, cx, 0.9, np.zeros(1), np.zeros(1))
                layers["nuclei"][zbin(z)][sl2] += 1.2 * m2

    # ---------------------------------------------------------- motor neurons
    mn_dendrites: list[tuple[np.ndarray, np.ndarray, int]] = []
    mn_count = 0
    margin_mn = 25.0
    for i in range(n_motor_neurons):
        target = rng.uniform(420.0, 950.0)
        r_eq = np.sqrt(target / np.pi)
        inside = in_horn if (not with_roi or i < max(n_motor_neurons - 2, 1)
                             or n_motor_neurons < 4) else (lambda y, x: not in_horn(y, x))
        pos = placer.place(r_eq * 1.2 + 8.0, margin=margin_mn, gap=4.0, inside=inside)
        if pos is None:
            pos = placer.place(r_eq * 1.2 + 8.0, margin=margin_mn, gap=1.0)
        if pos is None:
            raise ValueError(
                f"cannot fit {n_motor_neurons} motor neurons into {shape} px at {p} µm/px"
            )
        cy, cx = pos
        z = depth()
        b = zbin(z)
        # local canvas around the neuron (µm -> px), so every step stays cheap
        half = r_eq * 1.3 + 16.0
        y0 = max(int((cy - half) / p), 0)
        x0 = max(int((cx - half) / p), 0)
        y1 = min(int((cy + half) / p) + 1, shape[0])
        x1 = min(int((cx + half) / p) + 1, shape[1])
        sl = (slice(y0, y1), slice(x0, x1))
        cshape = (y1 - y0, x1 - x0)
        nv = int(rng.integers(5, 8))
        ang = np.sort(np.linspace(0, 2 * np.pi, nv, endpoint=False)
                      + rng.normal(0, 0.25, nv) + rng.uniform(0, 2 * np.pi))
        rad = r_eq * rng.uniform(0.9, 1.25, nv)
        m = np.zeros(cshape, bool)
        rr, cc = draw.polygon((cy + rad * np.sin(ang)) / p - y0,
                              (cx + rad * np.cos(ang)) / p - x0, cshape)
        m[rr, cc] = True
        # dendrite stumps at some vertices: tapering trapezoids
        n_st = int(rng.integers(2, 5))
        for j in rng.choice(nv, size=min(n_st, nv), replace=False):
            a_ = ang[j] + rng.normal(0, 0.15)
            base_w = rng.uniform(5.0, 8.0) / 2
            tip_w = rng.uniform(1.5, 2.5) / 2
            ell = rng.uniform(6.0, 12.0)
            r0 = rad[j] * 0.7
            ny, nx = np.sin(a_), np.cos(a_)
            ty, tx = -nx, ny
            by, bx = cy + r0 * ny, cx + r0 * nx
            ey, ex = cy + (rad[j] + ell) * ny, cx + (rad[j] + ell) * nx
            qy = np.array([by + base_w * ty, ey + tip_w * ty, ey - tip_w * ty, by - base_w * ty])
            qx = np.array([bx + base_w * tx, ex + tip_w * tx, ex - tip_w * tx, bx - base_w * tx])
            rr, cc = draw.polygon(qy / p - y0, qx / p - x0, cshape)
            m[rr, cc] = True
            # faint thin dendrite continuing beyond the stump (not part of the soma)
            pts, w = _processes(rng, ey, ex, 0.0, 1, (15.0, 35.0), branch_p=0.3)
            mn_dendrites.append((pts, w * 0.5, b))
        # round the polygon's corners and the stump tips (~1 µm)
        m = ndi.gaussian_filter(m.astype(np.float32), 1.0 / p) > 0.5
        m &= lab["motor_neurons"][sl] == 0
        mn_count += 1
        lab["motor_neurons"][sl][m] = mn_count
        soma_any[sl] |= m
        tex = texture(sl, m, 0.2, 1)
        # dim unstained nucleus
        ncy = cy + rng.normal(0, 1.5)
        ncx = cx + rng.normal(0, 1.5)
        nr = rng.uniform(5.0, 6.5)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) * p
        nuc = np.hypot(yy - ncy, xx - ncx) <= nr
        bright = rng.lognormal(0, 0.2)
        layers["chat"][b][sl] += bright * np.where(nuc, 0.3, 1.0).astype(np.float32) * tex
        add_nucleus(ncy, ncx, nr * 0.95, z, bright=0.45, nucleolus=True)
    for pts, w, b in mn_dendrites:
        add_proc("chat", b, pts, w * 2.5)

    # ------------------------------------------------------------- small ChAT
    for _ in range(n_small_chat):
        target = rng.uniform(60.0, 170.0)
        r_eq = np.sqrt(target / np.pi)
        pos = placer.place(r_eq + 1.5, margin=r_eq + 2, gap=3.0)
        if pos is None:
            pos = placer.place(r_eq + 1.5, margin=r_eq + 2, gap=0.5, tries=2000)
        if pos is None:
            raise ValueError(f"cannot fit {n_small_chat} small ChAT cells into {shape} px")
        cy, cx = pos
        amps, ph = _star(rng, 3, 0.08)
        sl, m = _star_mask(shape, p, cy, cx, r_eq, amps, ph, rng.uniform(1.0, 1.5), rng.uniform(0, np.pi))
        m = m & (lab["small_chat_cells"][sl] == 0)
        counter["small_chat_cells"] += 1
        k = counter["small_chat_cells"]
        lab["small_chat_cells"][sl][m] = k
        soma_any[sl] |= m
        z = depth()
        layers["chat"][zbin(z)][sl] += rng.lognormal(-0.1, 0.2) * texture(sl, m)
        add_nucleus(cy, cx, min(r_eq * 0.55, 3.5), z, bright=0.9)

    # ----------------------------------------------------- GFP+ donor cells
    n_pos = round(n_gfp_cells * gfap_fraction)
    is_pos = np.zeros(n_gfp_cells, bool)
    is_pos[rng.choice(n_gfp_cells, size=n_pos, replace=False)] = True
    gfp_pos_flags: dict[int, bool] = {}
    i = 0
    pending_pair: tuple[float, float, float] | None = None
    while i < n_gfp_cells:
        r0 = rng.uniform(4.0, 7.0)  # 8-14 µm bodies, perturbation adds up to ~16 µm
        if pending_pair is not None:
            py, px, pr = pending_pair
            pending_pair = None
            pos = None
            for _ in range(60):
                a = rng.uniform(0, 2 * np.pi)
                d = (pr + r0) * 0.92
                y, x = py + d * np.sin(a), px + d * np.cos(a)
                if r0 + 1 < y < ext[0] - r0 - 1 and r0 + 1 < x < ext[1] - r0 - 1:
                    placer.discs.pop()  # the partner's disc: test against everyone else
                    ok = placer.free(y, x, r0, 1.0)
                    placer.add(py, px, pr)
                    if ok:
                        placer.add(y, x, r0)
                        pos = (y, x)
                        break
            if pos is None:
                continue
        else:
            pos = placer.place(r0 + 1.0, margin=r0 + 1.5, gap=3.0)
            if pos is None:
                pos = placer.place(r0 + 1.0, margin=r0 + 1.5, gap=0.5, tries=2000)
            if pos is None:
                raise ValueError(f"cannot fit {n_gfp_cells} GFP cells into {shape} px")
            if i + 1 < n_gfp_cells and rng.random() < 0.15:
                pending_pair = (pos[0], pos[1], r0 + 1.0)
        cy, cx = pos
        amps, ph = _star(rng, 4, 0.16)
        sl, m = _star_mask(shape, p, cy, cx, r0, amps, ph, rng.uniform(1.0, 1.6), rng.uniform(0, np.pi))
        m = m & (lab["gfp_cells"][sl] == 0) & ~soma_any[sl]
        counter["gfp_cells"] += 1
        k = counter["gfp_cells"]
        lab["gfp_cells"][sl][m] = k
        soma_any[sl] |= m
        pos_flag = bool(is_pos[i])
        gfp_pos_flags[k] = pos_flag
        z = depth()
        b = zbin(z)
        tex = texture(sl, m)
        layers["gfp"][b][sl] += rng.lognormal(0, 0.2) * tex
        add_nucleus(cy + rng.normal(0, 1), cx + rng.normal(0, 1), r0 * 0.5, z)
        if pos_flag:
            lab["astrocytes"][sl][m & (lab["astrocytes"][sl] == 0)] = k  # relabelled later
            layers["gfap"][b][sl] += rng.uniform(0.6, 1.0) * texture(sl, m, 0.3, 1)
            pts, w = _processes(rng, cy, cx, r0, int(rng.integers(4, 8)), (8.0, 22.0))
            add_proc("gfap", b, pts, w * 2.2)
            add_proc("gfp", b, pts, w * 1.2)
        else:
            pts, w = _processes(rng, cy, cx, r0, int(rng.integers(0, 3)), (3.0, 8.0), branch_p=0)
            if len(pts):
                add_proc("gfp", b, pts, w * 1.5)
        i += 1

    # ------------------------------------------------------ host astrocytes
    for _ in range(n_astrocytes):
        r0 = rng.uniform(3.0, 4.5)
        pos = placer.place(r0 + 1.0, margin=r0 + 1, gap=4.0)
        if pos is None:
            break
        cy, cx = pos
        amps, ph = _star(rng, 3, 0.12)
        sl, m = _star_mask(shape, p, cy, cx, r0, amps, ph, rng.uniform(1.0, 1.3), rng.uniform(0, np.pi))
        m = m & ~soma_any[sl]
        k = 100000 + _  # provisional, relabelled below
        lab["astrocytes"][sl][m & (lab["astrocytes"][sl] == 0)] = k
        soma_any[sl] |= m
        z = depth()
        b = zbin(z)
        layers["gfap"][b][sl] += rng.lognormal(0, 0.2) * texture(sl, m)
        pts, w = _processes(rng, cy, cx, r0, int(rng.integers(6, 12)), (10.0, 28.0))
        add_proc("gfap", b, pts, w * 2.5)
        add_nucleus(cy, cx, r0 * 0.7, z, bright=0.8)

    # grey matter (the ventral horn, softened) vs white matter
    grey = np.zeros(shape, np.float32)
    rr, cc = draw.polygon(horn[:, 0], horn[:, 1], shape)
    grey[rr, cc] = 1.0
    grey = ndi.gaussian_filter(grey, 8.0 / p)
    # GFAP meshwork: processes of astrocytes outside the optical section, denser in
    # white matter (fibrous astrocytes)
    n_mesh = round(area_um2 / 120.0)
    mesh_y = rng.uniform(0, ext[0], n_mesh)
    mesh_x = rng.uniform(0, ext[1], n_mesh)
    g_at = grey[np.minimum((mesh_y / p).astype(int), shape[0] - 1),
                np.minimum((mesh_x / p).astype(int), shape[1] - 1)]
    keep_mesh = rng.random(n_mesh) < 1.0 - 0.6 * g_at
    for y, x in zip(mesh_y[keep_mesh], mesh_x[keep_mesh], strict=True):
        pts, w = _processes(rng, y, x, 0.0, 1, (4.0, 14.0), step=0.3, branch_p=0.2)
        add_proc("gfap", int(rng.integers(n_z)), pts, w * rng.uniform(1.0, 2.0))

    # other nuclei (oligodendrocytes, microglia, endothelium)
    n_other = round(area_um2 / 900.0)
    for _ in range(n_other):
        y, x = rng.uniform(0, ext[0]), rng.uniform(0, ext[1])
        if soma_any[min(int(y / p), shape[0] - 1), min(int(x / p), shape[1] - 1)]:
            continue
        add_nucleus(y, x, rng.uniform(2.2, 3.5), depth(), bright=rng.uniform(0.6, 1.3))

    # ----------------------------------------------------------------- puncta
    mn_lab = lab["motor_neurons"]
    outside_dist = ndi.distance_transform_edt(mn_lab == 0) * p  # µm to nearest MN pixel
    _, (iy_near, ix_near) = ndi.distance_transform_edt(mn_lab == 0, return_indices=True)
    near_label = mn_lab[iy_near, ix_near]
    pun_y: list[float] = []
    pun_x: list[float] = []
    min_sep = 0.9
    tree_pts: list[tuple[float, float]] = []
    for k in range(1, mn_count + 1):
        # candidate positions just outside the outline (0.3-1.4 µm)
        ring = (near_label == k) & (outside_dist >= 0.3) & (outside_dist <= 1.4)
        cy_, cx_ = np.nonzero(ring)
        if len(cy_) == 0:
            continue
        got = 0
        for _ in range(puncta_per_neuron * 30):
            if got >= puncta_per_neuron:
                break
            j = rng.integers(len(cy_))
            y = (cy_[j] + rng.uniform(-0.5, 0.5)) * p
            x = (cx_[j] + rng.uniform(-0.5, 0.5)) * p
            if any((y - a) ** 2 + (x - c) ** 2 < min_sep**2 for a, c in tree_pts[-200:]):
                continue
            tree_pts.append((y, x))
            got += 1
    n_neuropil = round(neuropil_puncta_per_1000um2 * area_um2 / 1000.0)
    np_y = rng.uniform(0, ext[0] - p, n_neuropil * 2)
    np_x = rng.uniform(0, ext[1] - p, n_neuropil * 2)
    iy = np.clip(np.rint(np_y / p).astype(int), 0, shape[0] - 1)
    ix = np.clip(np.rint(np_x / p).astype(int), 0, shape[1] - 1)
    okn = (outside_dist[iy, ix] > 3.0) & ~soma_any[iy, ix]
    np_y, np_x = np_y[okn][:n_neuropil], np_x[okn][:n_neuropil]
    for y, x in tree_pts:
        pun_y.append(y)
        pun_x.append(x)
    pun_y_a = np.r_[np.array(pun_y, float), np_y]
    pun_x_a = np.r_[np.array(pun_x, float), np_x]
    pun_y_a = np.clip(pun_y_a, 0, ext[0] - p)
    pun_x_a = np.clip(pun_x_a, 0, ext[1] - p)
    n_pun = len(pun_y_a)
    pun_amp = rng.lognormal(0, 0.3, n_pun) * 2.5
    pun_sig = np.hypot(_PSF_SIGMA_UM, rng.uniform(0.1, 0.25, n_pun))  # bouton size (x) PSF
    pun_z = rng.uniform(z_lo, z_hi, n_pun)

    # --------------------------------------------------------------- granules
    n_gr = int(n_granules)
    gr_y = np.empty(n_gr)
    gr_x = np.empty(n_gr)
    soma_pix = np.argwhere(lab["motor_neurons"] > 0)
    for j in range(n_gr):
        if j % 2 == 0 and len(soma_pix):  # lipofuscin accumulates in neuronal cytoplasm
            q = soma_pix[rng.integers(len(soma_pix))]
            gr_y[j], gr_x[j] = q[0] * p, q[1] * p
        else:
            gr_y[j], gr_x[j] = rng.uniform(1, ext[0] - 1), rng.uniform(1, ext[1] - 1)
    gr_amp = rng.uniform(3.0, 6.0, n_gr)
    gr_sig = np.hypot(_PSF_SIGMA_UM, rng.uniform(0.3, 0.7, n_gr))
    gr_z = rng.uniform(z_lo, z_hi, n_gr)
    gr_spec = {"nuclei": 0.7, "gfp": 1.0, "gfap": 0.9, "chat": 0.8, "synapse": 0.9}

    # ------------------------------------------------------------ render
    bg_sd = np.sqrt(_BG_PHOTONS + _READ_NOISE**2)
    s_obj = snr * bg_sd
    illum = _vignette(shape)
    tissue = 1 + 0.35 * _smooth_field(rng, shape, 40.0 / p)
    chan_bg = {"nuclei": 0.6, "gfp": 1.3, "gfap": 1.0, "chat": 0.9, "synapse": 1.0}
    # synaptic neuropil haze: grey matter only, excluded from somata
    haze = ndi.gaussian_filter((~soma_any).astype(np.float32), 1.0 / p) * (0.3 + 0.7 * grey)
    psf_px = _PSF_SIGMA_UM / p
    thick_um = 5.0  # half-thickness of cell bodies along z
    need = set(keys) | ({"gfp"} if "gfap" in keys and bleed_gfp_to_gfap else set())

    # defocus in Fourier space: each depth bin's layer is transformed once, every
    # plane sums the bins with a Gaussian transfer function of width ~|z - z0|
    sig_max = np.hypot(psf_px + 0.25 / p, 0.35 * (n_z - 1) * z_step_um / p)
    pad = int(np.ceil(3 * sig_max)) + 2
    fshape = (sp_fft.next_fast_len(shape[0] + 2 * pad, real=True),
              sp_fft.next_fast_len(shape[1] + 2 * pad, real=True))
    fy = sp_fft.fftfreq(fshape[0])[:, None]
    fx = sp_fft.rfftfreq(fshape[1])[None, :]
    f2 = ((2 * np.pi**2) * (fy**2 + fx**2)).astype(np.float32)

    def transfer(sig_px: float) -> np.ndarray:
        return np.exp(-f2 * np.float32(sig_px**2))

    t_proc = transfer(0.45 / p)  # processes: thin lines, ~0.45 µm Gaussian cross-section
    t_defocus = {}
    for d in range(n_z):
        dz = d * z_step_um
        w = np.exp(-(dz**2) / (2 * thick_um**2))
        t_defocus[d] = np.float32(w) * transfer(float(np.hypot(psf_px + 0.25 / p, 0.35 * dz / p)))

    def render_marker(key: str) -> np.ndarray:
        out = np.zeros((n_z, *shape), np.float32)
        spectra = []
        for b in range(n_z):
            spec = sp_fft.rfft2(layers[key][b], s=fshape)
            if (key, b) in proc_pts:
                pts = np.concatenate([q for q, _ in proc_pts[key, b]])
                w = np.concatenate([ww for _, ww in proc_pts[key, b]])
                # the splat sums line weight per pixel (∝ p); dividing by the pixel
                # area makes it an intensity, so thin processes look the same at
                # every pixel size (calibrated to their look at 0.5 µm/px)
                dens = _splat(shape, p, pts, w) * np.float32((0.5 / p) ** 2)
                spec += t_proc * sp_fft.rfft2(dens, s=fshape)
            spectra.append(spec)
        for zi in range(n_z):
            spec = sum(t_defocus[abs(zi - b)] * spectra[b] for b in range(n_z))
            acc = sp_fft.irfft2(spec, s=fshape)[: shape[0], : shape[1]].astype(np.float32)
            if key == "synapse":
                dz = z_planes[zi] - pun_z
                a = pun_amp * np.exp(-(dz**2) / (2 * 0.8**2))  # bouton (x) axial PSF
                keep = a > 0.02
                acc += _render_spots(shape, p, pun_y_a[keep], pun_x_a[keep], a[keep],
                                     np.hypot(pun_sig[keep], 0.3 * dz[keep]))
                acc += 0.2 * haze * (1 + 0.3 * rng.standard_normal(shape).astype(np.float32))
            dz = z_planes[zi] - gr_z
            a = gr_amp * gr_spec[key] * np.exp(-(dz**2) / (2 * 1.0**2))
            keep = a > 0.05
            acc += _render_spots(shape, p, gr_y[keep], gr_x[keep], a[keep],
                                 np.hypot(gr_sig[keep], 0.3 * dz[keep]))
            out[zi] = acc
        return out

    signal = {k: render_marker(k) for k in _CORD_MARKERS if k in need}
    if "gfap" in signal and bleed_gfp_to_gfap:
        signal["gfap"] = signal["gfap"] + bleed_gfp_to_gfap * signal["gfp"]
    planes = []
    for key in keys:
        photons = illum * (_BG_PHOTONS * chan_bg[key] * tissue + s_obj * np.maximum(signal[key], 0))
        planes.append(_digitise(photons, rng, dtype))
    data = np.stack(planes) if planes else np.zeros((0, n_z, *shape), np.dtype(dtype))
    stack = Stack(data, channel_names, (float(z_step_um), p, p),
                  metadata={"synthetic": "cord_section", **{k: v for k, v in params.items()
                                                              if k != "channel_names"}})

    # ------------------------------------------------------------- truth
    labels: dict[str, np.ndarray] = {}
    for kind in ("gfp_cells", "motor_neurons", "small_chat_cells"):
        labels[kind], _, _ = segmentation.relabel_sequential(lab[kind])
    labels["astrocytes"], _, _ = segmentation.relabel_sequential(lab["astrocytes"])
    labels = {k: v.astype(np.int32) for k, v in labels.items()}

    truth: dict[str, pd.DataFrame] = {}
    t = _region_table(labels["gfp_cells"], p)
    # gfp labels were assigned in order, relabel_sequential keeps order
    old = np.unique(lab["gfp_cells"][lab["gfp_cells"] > 0])
    t["gfap_positive"] = [gfp_pos_flags[int(o)] for o in old]
    truth["gfp_cells"] = t
    truth["astrocytes"] = _region_table(labels["astrocytes"], p)
    t = _region_table(labels["motor_neurons"], p, perimeter=True)

    # puncta -> neuron assignment by the contract's definition (within 2 µm of the
    # true outline, on or outside it), with the library's own rule
    from .measure.synapses import assign_puncta

    piy = np.clip(np.rint(pun_y_a / p).astype(int), 0, shape[0] - 1)
    pix = np.clip(np.rint(pun_x_a / p).astype(int), 0, shape[1] - 1)
    neuron = assign_puncta(labels["motor_neurons"], pd.DataFrame({"y_um": pun_y_a, "x_um": pun_x_a}),
                           pixel_size_um=p, distance_um=2.0, inside_um=0.0)
    t["n_puncta"] = np.array([(neuron == k).sum() for k in t["label"]], dtype=np.int64)
    truth["motor_neurons"] = t
    truth["small_chat_cells"] = _region_table(labels["small_chat_cells"], p)
    truth["puncta"] = pd.DataFrame({
        "label": np.arange(1, n_pun + 1, dtype=np.int64), "y_um": pun_y_a, "x_um": pun_x_a,
        "neuron": neuron,
    })
    pl = np.zeros(shape, np.int32)
    pl[piy, pix] = np.arange(1, n_pun + 1)
    labels["puncta"] = pl
    truth["granules"] = pd.DataFrame({"y_um": gr_y, "x_um": gr_x})
    for kind, tab in truth.items():
        if len(tab) == 0:
            tab = _empty_table(kind)
        if with_roi:
            tab["in_roi"] = _point_in_polygon(horn, tab["y_um"].to_numpy() / p,
                                              tab["x_um"].to_numpy() / p).astype(bool)
        else:
            tab["in_roi"] = np.ones(len(tab), bool)
        truth[kind] = tab.reset_index(drop=True)
    return Phantom(stack=stack, truth=truth, labels=labels,
                   roi=horn.copy() if with_roi else None, params=params)


# ============================================================== muscle section
def _power_labels(sites: np.ndarray, weights: np.ndarray, grid_y: np.ndarray,
                  grid_x: np.ndarray) -> np.ndarray:
    """Power-diagram (Laguerre) assignment: argmin |x - s|^2 - w, on a (Y, X) grid (µm)."""
    lift = np.sqrt(np.maximum(weights.max() - weights, 0))
    tree = cKDTree(np.c_[sites, lift])
    q = np.c_[
        np.repeat(grid_y, len(grid_x)), np.tile(grid_x, len(grid_y)),
        np.zeros(len(grid_y) * len(grid_x)),
    ]
    _, idx = tree.query(q, workers=-1)
    return idx.reshape(len(grid_y), len(grid_x)).astype(np.int32)


def _tessellate(rng: np.random.Generator, shape: tuple[int, int], p: float,
                spacing_um: float, atrophic_fraction: float, n_lloyd: int = 4
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fiber territories (Y, X) int32 (1..N) and a bool per territory: atrophic."""
    ext = (shape[0] * p, shape[1] * p)
    pad = 1.5 * spacing_um
    # jittered hexagonal lattice covering the image plus a margin
    dy = spacing_um * np.sqrt(3) / 2
    ys = np.arange(-pad, ext[0] + pad, dy)
    pts = []
    for r, y in enumerate(ys):
        xs = np.arange(-pad + (r % 2) * spacing_um / 2, ext[1] + pad, spacing_um)
        pts.append(np.c_[np.full(len(xs), y), xs])
    sites = np.concatenate(pts)
    sites += rng.normal(0, 0.35 * spacing_um, sites.shape)
    n = len(sites)
    radius = spacing_um / 2 * rng.lognormal(0, 0.22, n)
    weights = radius**2
    # Lloyd relaxation of the power diagram on a coarse grid
    step = max(spacing_um / 12, p)
    gy = np.arange(-pad, ext[0] + pad, step)
    gx = np.arange(-pad, ext[1] + pad, step)
    for _ in range(n_lloyd):
        lab = _power_labels(sites, weights, gy, gx)
        cnt = np.bincount(lab.ravel(), minlength=n).astype(float)
        yy = np.bincount(lab.ravel(), weights=np.repeat(gy, len(gx)), minlength=n)
        xx = np.bincount(lab.ravel(), weights=np.tile(gx, len(gy)), minlength=n)
        has = cnt > 0
        sites[has] = np.c_[yy[has] / cnt[has], xx[has] / cnt[has]]
    atrophic = rng.random(n) < atrophic_fraction
    # shrink atrophic territories: a lower weight moves every bisector towards the site
    w = weights.copy()
    w[atrophic] -= 2 * spacing_um * spacing_um * rng.uniform(0.22, 0.32, atrophic.sum())
    py = np.arange(shape[0]) * p
    px = np.arange(shape[1]) * p
    lab = _power_labels(sites, w, py, px) + 1
    lab, fw, _ = segmentation.relabel_sequential(lab)
    present = np.unique(lab)
    present = present[present > 0]
    old = np.asarray(fw.in_values if hasattr(fw, "in_values") else present)
    flags = atrophic[old - 1] if len(old) == len(present) else np.zeros(len(present), bool)
    return lab.astype(np.int32), flags


def _vessel_radius(u: float, peri_w: float) -> float:
    """Radius (µm) of a perimysial vessel from a uniform draw ``u`` in [7, 14] µm.

    The vessel has to fit in the perimysium strand (width ``peri_w`` µm), wall included.
    """
    return max(0.5 * peri_w - 0.7, 1.0) * (0.5 + 0.5 * (u - 7.0) / 7.0)


def make_muscle_section(
    *,
    seed: int = 0,
    shape: tuple[int, int] = (1024, 1024),
    pixel_size_um: float = 0.65,
    stain: str = "laminin",
    mean_min_feret_um: float = 40.0,
    atrophic_fraction: float = 0.15,
    snr: float = 8.0,
    with_nuclei: bool = True,
    dtype: Any = np.uint16,
) -> Phantom:
    """A tibialis-anterior cross-section phantom with known fibers.

    Fibers are a centroidal power-diagram (Laguerre) tessellation with
    log-normal sizes, separated by endomysium and a few perimysium strands,
    corners rounded; ``atrophic_fraction`` of them are small and angular.

    Parameters
    ----------
    seed : int
        Seed of the one random generator everything is drawn from.
    shape : (int, int)
        Image size ``(Y, X)`` in pixels.
    pixel_size_um : float
        Lateral pixel size in µm.
    stain : {"laminin", "he"}
        Laminin immunofluorescence (channels Laminin[, DAPI]) or brightfield H&E
        (RGB uint8, channels R, G, B, ``stack.rgb`` True).
    mean_min_feret_um : float
        Target mean minimum Feret diameter of the fibers (mouse TA: 30–50 µm).
    atrophic_fraction : float
        Fraction of small angular (atrophic) fibers.
    snr : float
        Laminin border signal over background noise std (fluorescence only).
    with_nuclei : bool
        Add myonuclei (DAPI channel, or hematoxylin in H&E).
    dtype : numpy dtype
        uint8, uint16 or float for fluorescence; H&E is always uint8.

    Returns
    -------
    Phantom
        ``truth["fibers"]`` (label, y_um, x_um, area_um2, min_feret_um,
        touches_border, atrophic) and ``labels["fibers"]`` (all fibers,
        including those cut by the image border).

    Examples
    --------
    >>> ph = make_muscle_section(seed=0, shape=(256, 256))
    >>> ph.stack.channel_names
    ('Laminin', 'DAPI')
    """
    shape = (int(shape[0]), int(shape[1]))
    p = float(pixel_size_um)
    if not (np.isfinite(p) and p > 0):
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um}")
    if stain not in ("laminin", "he"):
        raise ValueError(f"stain must be 'laminin' or 'he', got {stain!r}")
    if not 0 <= atrophic_fraction < 1:
        raise ValueError(f"atrophic_fraction must be in [0, 1), got {atrophic_fraction}")
    if mean_min_feret_um <= 2:
        raise ValueError(f"mean_min_feret_um must be > 2 µm, got {mean_min_feret_um}")
    params = dict(seed=seed, shape=shape, pixel_size_um=p, stain=stain,
                  mean_min_feret_um=mean_min_feret_um, atrophic_fraction=atrophic_fraction,
                  snr=snr, with_nuclei=with_nuclei, dtype=np.dtype(dtype).name)
    rng = np.random.default_rng(seed)
    ext = (shape[0] * p, shape[1] * p)
    gap_um = 1.2  # endomysium between neighbouring fibers
    # normal fibers are wider than the mean; atrophic ones are ~45 % of normal
    f_normal = mean_min_feret_um / (1 - 0.2 * atrophic_fraction)
    spacing = _SPACING_PER_FERET * f_normal + gap_um
    terr, atrophic = _tessellate(rng, shape, p, spacing, atrophic_fraction)
    n_terr = int(terr.max())

    # fascicles: a few groups of fibers separated by perimysium
    n_fasc = max(round(ext[0] * ext[1] / 250000.0), 2)
    fsites = rng.uniform(0, 1, (n_fasc, 2)) * np.array(ext)
    props = measure.regionprops(terr)
    cents = np.array([rp.centroid for rp in props]) * p
    fasc_of = np.argmin(((cents[:, None, :] - fsites[None]) ** 2).sum(-1), axis=1)
    fasc_map = np.r_[-1, fasc_of][terr]
    # perimysium runs between fascicles, along fiber borders: the interstitial space
    # along the borders between territories of different fascicles is widened to
    # peri_w, filled with connective tissue, and separated from the fibers by the
    # same thin endomysial cleft as any other fiber border
    peri = segmentation.find_boundaries(fasc_map, mode="thick")
    peri_w = rng.uniform(4.0, 9.0)
    d_peri, peri_near = ndi.distance_transform_edt(~peri, return_indices=True)
    d_peri *= p
    peri_zone = d_peri <= peri_w / 2

    # endomysium + rounded corners: threshold a smoothed distance-to-border field
    border = segmentation.find_boundaries(terr, mode="thick")
    dist = ndi.distance_transform_edt(~border) * p
    dist_s = ndi.gaussian_filter(dist, 1.5 / p)
    # (smoothing lowers the field only near fiber corners, which rounds them)
    fib = (np.minimum(dist, dist_s) > gap_um / 2) & (d_peri > (peri_w + gap_um) / 2)
    fib_lab = np.where(fib, terr, 0)
    # keep one connected piece per fiber; drop slivers
    lab2 = measure.label(fib_lab > 0, connectivity=1)
    keep = np.zeros(int(lab2.max()) + 1, bool)
    best: dict[int, tuple[int, int]] = {}
    for rp in measure.regionprops(lab2, intensity_image=fib_lab):
        t = int(rp.intensity_max)
        if t not in best or rp.area > best[t][1]:
            best[t] = (rp.label, int(rp.area))
    min_px = 20.0 / (p * p)
    for l2, a in best.values():
        if a >= min_px:
            keep[l2] = True
    fib_lab = np.where(keep[lab2], fib_lab, 0)
    labels_f, fw, _ = segmentation.relabel_sequential(fib_lab)
    labels_f = labels_f.astype(np.int32)
    old_ids = np.asarray(fw.in_values)
    old_ids = old_ids[old_ids > 0]
    atro_flag = atrophic[old_ids - 1] if n_terr else np.zeros(0, bool)

    t = _region_table(labels_f, p, feret=True)
    edge = np.unique(np.r_[labels_f[0], labels_f[-1], labels_f[:, 0], labels_f[:, -1]])
    t["touches_border"] = t["label"].isin(edge[edge > 0]).to_numpy()
    t["atrophic"] = atro_flag[: len(t)].astype(bool)
    if len(t) == 0:
        t = _empty_table("fibers")
    truth = {"fibers": t.reset_index(drop=True)}

    # ---------------------------------------------------------- shared geometry
    fiber_mask = labels_f > 0
    d_out = ndi.distance_transform_edt(~fiber_mask) * p  # µm outside fibers
    d_in = ndi.distance_transform_edt(fiber_mask) * p  # µm inside fibers
    # capillaries: at interstitial spots with room, ~1 per fiber
    gapwide = (d_out > 0.9) & ~peri_zone
    cand = np.argwhere(gapwide & (ndi.maximum_filter(d_out, size=max(int(6 / p), 3)) == d_out))
    n_cap = min(len(cand), int(0.9 * len(t)))
    caps = cand[rng.choice(len(cand), n_cap, replace=False)] * p if n_cap else np.zeros((0, 2))
    # a few larger vessels in the perimysium
    # (centred on the strand's mid-line and small enough to fit in the strand)
    pcand = np.argwhere(peri_zone)
    n_ves = min(len(pcand), max(1, n_fasc))
    vessels = np.zeros((0, 2))
    if n_ves:
        at = pcand[rng.choice(len(pcand), n_ves, replace=False)]
        vessels = peri_near[:, at[:, 0], at[:, 1]].T * p
    del peri_near

    # nuclei: peripheral myonuclei (a few central), interstitial nuclei
    nuc_pts: list[tuple[float, float, float, float]] = []  # y, x, r, angle
    if with_nuclei:
        edge_pix = np.argwhere((d_in > 0.8) & (d_in < 2.5))
        lab_at = labels_f[edge_pix[:, 0], edge_pix[:, 1]] if len(edge_pix) else np.zeros(0)
        order = rng.permutation(len(edge_pix))
        per_fiber: dict[int, int] = {}
        quota = {int(k): int(rng.poisson(1.3)) for k in t["label"]}
        for j in order:
            k = int(lab_at[j])
            if per_fiber.get(k, 0) >= quota.get(k, 0):
                continue
            per_fiber[k] = per_fiber.get(k, 0) + 1
            yy, xx = edge_pix[j] * p
            nuc_pts.append((yy, xx, rng.uniform(1.8, 2.6), rng.uniform(0, np.pi)))
        for _, rp in zip(range(len(t)), t.itertuples(), strict=False):
            if rng.random() < 0.03:  # central nuclei
                nuc_pts.append((rp.y_um, rp.x_um, rng.uniform(1.8, 2.6), rng.uniform(0, np.pi)))
        icand = np.argwhere(d_out > 0.5)
        n_int = min(len(icand), int(0.4 * len(t)))
        for q in icand[rng.choice(len(icand), n_int, replace=False)] if n_int else []:
            nuc_pts.append((q[0] * p, q[1] * p, rng.uniform(1.5, 2.2), rng.uniform(0, np.pi)))
    nuc_img = np.zeros(shape, np.float32)
    for (yy, xx, r, a) in nuc_pts:
        amps, ph = _star(rng, 2, 0.05)
        sl, m = _star_mask(shape, p, yy, xx, r, amps, ph, rng.uniform(1.3, 2.2), a)
        nuc_img[sl] += m * rng.uniform(0.7, 1.2)
    nuc_img = ndi.gaussian_filter(nuc_img, 0.3 / p)

    gaps = _smooth_field(rng, shape, 12.0 / p)  # modulates the lamina: gaps where low
    tissue = _smooth_field(rng, shape, 60.0 / p)

    if stain == "laminin":
        signed = d_out - d_in  # µm from the fiber edge, negative inside
        lam_rim = 1.4 * np.exp(-((signed - 0.2) ** 2) / (2 * 0.55**2)).astype(np.float32)
        # rare, short gaps in the basal lamina where the smooth field dips lowest
        lam_rim *= np.clip((gaps + 0.75) / 0.2, 0.15, 1.0)
        inter = ((~fiber_mask) & ~peri_zone).astype(np.float32) * 0.35
        peri_tex = peri_zone * (0.45 + 0.25 * _smooth_field(rng, shape, 3.0 / p))
        lam = lam_rim + inter + peri_tex
        for (yy, xx) in caps:
            rr = rng.uniform(1.8, 2.8)
            sl, ring = _ring(shape, p, yy, xx, rr, 0.8)
            lam[sl] += 1.1 * ring * ~fiber_mask[sl]
        for (yy, xx) in vessels:
            rr = _vessel_radius(rng.uniform(7.0, 14.0), peri_w)
            sl, ring = _ring(shape, p, yy, xx, rr, 1.0)
            lam[sl] += 1.0 * ring * ~fiber_mask[sl]
        lam = ndi.gaussian_filter(lam.astype(np.float32), (_PSF_SIGMA_UM + 0.15) / p)
        bg_sd = np.sqrt(_BG_PHOTONS + _READ_NOISE**2)
        s_obj = snr * bg_sd
        illum = _vignette(shape)
        fib_af = 0.35 + 0.1 * _smooth_field(rng, shape, 8.0 / p)  # sarcoplasm autofluorescence
        bg = _BG_PHOTONS * (1 + 0.3 * tissue) * np.where(fiber_mask, 1 + fib_af, 1.0)
        planes = [_digitise(illum * (bg + s_obj * lam), rng, dtype)]
        names: tuple[str, ...] = ("Laminin",)
        if with_nuclei:
            planes.append(_digitise(illum * (_BG_PHOTONS * 0.6 * (1 + 0.3 * tissue)
                                             + s_obj * 1.5 * nuc_img), rng, dtype))
            names = (*names, "DAPI")
        data = np.stack(planes)[:, None]
        stack = Stack(data, names, (None, p, p),
                      metadata={"synthetic": "muscle_section", **params})
    else:
        # Beer-Lambert brightfield: optical densities of hematoxylin and eosin (Ruifrok)
        od_h = np.array([0.65, 0.70, 0.29])
        od_e = np.array([0.05, 0.75, 0.45])  # eosin as a colour camera sees it (pink)
        per_fiber = np.r_[0.0, rng.normal(1.0, 0.08, int(labels_f.max()))]
        if len(t):
            per_fiber[1:][t["atrophic"].to_numpy()] *= 1.35  # atrophic fibers: darker eosin
        # myofibrillar stippling (~0.7 µm) and section-thickness variation (~30 µm)
        stipple = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 0.5 / p)
        stipple /= stipple.std() + 1e-9
        thick = 1 + 0.1 * _smooth_field(rng, shape, 30.0 / p)
        eos = (per_fiber[labels_f] * 0.35 * fiber_mask * thick
               * (1 + 0.06 * _smooth_field(rng, shape, 4.0 / p) + 0.08 * stipple))
        eos = eos + peri_zone * (0.25 + 0.1 * _smooth_field(rng, shape, 3.0 / p)) + 0.04
        eos = ndi.gaussian_filter(eos.astype(np.float32), 0.4 / p)
        hem = 1.0 * nuc_img + 0.03 + 0.02 * tissue + 0.03 * fiber_mask * thick
        for (yy, xx) in vessels:
            rr = _vessel_radius(rng.uniform(7.0, 14.0), peri_w)
            sl, ring = _ring(shape, p, yy, xx, rr, 1.0)
            eos[sl] += 0.4 * ring * ~fiber_mask[sl]
        od = eos[..., None] * od_e + hem[..., None] * od_h
        rgb = 245.0 * np.exp(-od * np.log(10)) * (0.97 + 0.03 * _vignette(shape, 1.0))[..., None]
        rgb += rng.normal(0, 255.0 / max(snr, 1e-3) / 8, rgb.shape)
        rgb8 = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        data = np.moveaxis(rgb8, -1, 0)[:, None]
        stack = Stack(data, ("R", "G", "B"), (None, p, p), rgb=True,
                      metadata={"synthetic": "muscle_section", **params})
    return Phantom(stack=stack, truth=truth, labels={"fibers": labels_f}, params=params)


#: Tessellation spacing per desired min Feret (calibrated: see tests/test_synthetic.py).
_SPACING_PER_FERET = 1.075
