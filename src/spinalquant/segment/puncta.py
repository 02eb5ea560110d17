"""Synaptic puncta: diffraction-limited spots of a synaptic-marker channel.

Method (one scale, tuned to the optics rather than searched over scales):

1. **Scale.** The spot is modelled as the microscope's point-spread function, a
   Gaussian of ``sigma = 0.21 * wavelength / NA`` µm (or ``psf_sigma_um``), in
   pixels ``sigma_px = sigma_um / pixel_size_um``, floored at ``min_sigma_px``
   (0.7 px: below that a spot is undersampled and the filter would be a pixel
   difference). Real boutons are a little larger than the PSF; a spot of up to
   about twice that size is still found at its centre.
2. **Filter.** A difference of Gaussians at that single scale,
   ``G_sigma * I - G_(r sigma) * I`` with ``r = background_ratio`` (3): the image
   smoothed at the spot scale (close to the matched filter of a Gaussian spot in
   white noise) minus its local background. Like the Laplacian of Gaussian
   (the ``r -> 1`` limit) it is zero on any locally linear background, so uneven
   illumination and tissue autofluorescence drop out, and it peaks at spot
   centres; with ``r = 3`` it passes less high-frequency noise than the LoG, which
   on max-projected confocal data raised the recall at a given false-positive
   rate (measured on the project's phantoms: at ``k = 5``, F1 0.93-0.99 against
   0.85-0.89 for the LoG).
3. **Candidates.** Local maxima of the response, at least ``min_separation_um``
   apart (default: about one spot diameter, at least one pixel).
4. **Significance.** Each candidate's response is compared with the *local*
   noise of the response: its median and MAD-based standard deviation
   (``1.4826 * MAD``) in a window of ``noise_window_um`` around it. A candidate is
   kept when ``snr = (response - local median) / local sigma >= threshold_snr``.
   The default ``threshold_snr = 5`` keeps noise maxima rare (measured on
   max-projected Poisson + read noise: about 2 per 10 000 µm² at 0.3 µm pixels,
   0.4 at 0.7 µm; at ``k = 4`` about ten times more), while a punctum whose peak
   is 5x the raw noise gives an snr of about 6-10. The local estimate follows the Poisson noise, which grows
   with brightness.
5. **Sub-pixel centres.** A three-point Gaussian (parabola on the log) fit along
   y and x of the response at the maximum (a parabola where the log is
   undefined), clipped to half a pixel.
6. **Autofluorescence.** Lipofuscin granules fluoresce in every channel. With
   ``reference`` images (the other channels), a candidate whose response is
   significant (``>= autofluorescence_snr``) at its position in *every*
   reference channel is a granule, not a punctum, and is dropped.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> img = rng.normal(100, 3, (64, 64))
>>> yy, xx = np.mgrid[:64, :64]
>>> img += 60 * np.exp(-((yy - 20.3) ** 2 + (xx - 40.6) ** 2) / (2 * 1.0 ** 2))
>>> spots = detect_puncta(img.astype(np.uint16), pixel_size_um=0.2)
>>> len(spots), round(float(spots.y_px[0]), 0), round(float(spots.x_px[0]), 0)
(1, 20.0, 41.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

__all__ = ["PunctaParams", "detect_puncta", "local_noise", "spot_response"]

_COLUMNS = ("y_px", "x_px", "y_um", "x_um", "amplitude", "snr")
_MAD_TO_SIGMA = 1.4826
_MIN_WINDOW_PX = 16


@dataclass(frozen=True)
class PunctaParams:
    """Parameters of :func:`detect_puncta`.

    Parameters
    ----------
    wavelength_um : float
        Emission wavelength (µm) of the synaptic marker's fluorophore.
    na : float
        Numerical aperture of the objective.
    psf_sigma_um : float or None
        Gaussian sigma (µm) of a spot; default ``0.21 * wavelength_um / na``. Set it
        to the measured PSF, or a little larger for boutons bigger than the PSF.
    min_sigma_px : float
        Floor of the detection scale in pixels (undersampled spots).
    threshold_snr : float
        Significance threshold ``k``: response over local noise sigma (see module notes).
    noise_window_um : float
        Side of the window (µm) in which the local median and MAD are measured;
        at least 16 pixels are used.
    min_separation_um : float or None
        Minimum distance between two puncta (µm); default about one spot
        diameter (``2 * sigma``), at least one pixel.
    autofluorescence_snr : float
        A candidate whose response in every reference channel reaches this snr is
        a granule and is rejected.
    background_ratio : float
        The background is the image blurred at this multiple of the spot sigma
        (the difference-of-Gaussians ratio; must exceed 1).
    """

    wavelength_um: float = 0.52
    na: float = 1.3
    psf_sigma_um: float | None = None
    min_sigma_px: float = 0.7
    threshold_snr: float = 5.0
    noise_window_um: float = 6.0
    min_separation_um: float | None = None
    autofluorescence_snr: float = 3.0
    background_ratio: float = 3.0

    def __post_init__(self) -> None:
        for key in ("wavelength_um", "na", "min_sigma_px", "threshold_snr", "noise_window_um",
                    "autofluorescence_snr"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"PunctaParams.{key} must be a positive number; got {v!r}")
        for key in ("psf_sigma_um", "min_separation_um"):
            v = getattr(self, key)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ValueError(f"PunctaParams.{key} must be positive or None; got {v!r}")
        if not (np.isfinite(self.background_ratio) and self.background_ratio > 1):
            raise ValueError(
                f"PunctaParams.background_ratio must be > 1; got {self.background_ratio!r}"
            )

    def sigma_um(self) -> float:
        """The spot sigma in µm (explicit, or from wavelength and NA)."""
        if self.psf_sigma_um is not None:
            return float(self.psf_sigma_um)
        return 0.21 * self.wavelength_um / self.na

    def sigma_px(self, pixel_size_um: float) -> float:
        """The detection scale in pixels for a pixel size."""
        return max(self.sigma_um() / float(pixel_size_um), self.min_sigma_px)


# -------------------------------------------------------------------- filters
def _as_2d_float(image, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (Y, X) image; got shape {arr.shape}")
    if arr.dtype.kind not in "uif" and arr.dtype != bool:
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def spot_response(image, *, sigma_px: float, background_ratio: float = 3.0) -> np.ndarray:
    """Difference-of-Gaussians spot filter at one scale, float64 (Y, X).

    ``G_sigma * I - G_(ratio * sigma) * I``. A Gaussian spot of height ``A`` and
    sigma ``sigma_px`` on a flat background gives about ``0.4 A`` at its centre
    (``A / 2 - A / (1 + ratio**2)``).

    Examples
    --------
    >>> img = np.zeros((21, 21)); img[10, 10] = 1.0
    >>> r = spot_response(img, sigma_px=1.5)
    >>> np.unravel_index(np.argmax(r), r.shape)
    (np.int64(10), np.int64(10))
    """
    arr = np.asarray(image, dtype=np.float64)
    return ndi.gaussian_filter(arr, sigma_px, mode="nearest") - ndi.gaussian_filter(
        arr, background_ratio * sigma_px, mode="nearest"
    )


def local_noise(response: np.ndarray, *, window_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Local median and robust sigma (1.4826 x MAD) of an image, float64 (Y, X) each.

    Statistics are computed in windows of ``window_px`` on a grid of half that
    step and interpolated bilinearly, which is robust to the objects themselves
    (up to half of a window) and fast on large images.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> med, sd = local_noise(rng.normal(0, 2, (80, 80)), window_px=20)
    >>> bool(abs(np.median(sd) - 2) < 0.3)
    True
    """
    img = np.asarray(response, dtype=np.float64)
    w = int(max(4, min(window_px, max(img.shape))))
    step = max(w // 2, 1)
    ny = int(np.ceil(img.shape[0] / step)) + 1
    nx = int(np.ceil(img.shape[1] / step)) + 1
    # window k is centred on pixel k * step
    pad_lo = w // 2
    pad_y = (pad_lo, (ny - 1) * step + w - pad_lo - img.shape[0])
    pad_x = (pad_lo, (nx - 1) * step + w - pad_lo - img.shape[1])
    padded = np.pad(img, (pad_y, pad_x), mode="reflect" if min(img.shape) > w else "symmetric")
    win = sliding_window_view(padded, (w, w))[::step, ::step][:ny, :nx]
    flat = win.reshape(ny, nx, w * w)
    med = np.median(flat, axis=-1)
    mad = np.median(np.abs(flat - med[..., None]), axis=-1) * _MAD_TO_SIGMA
    gy = np.arange(img.shape[0]) / step
    gx = np.arange(img.shape[1]) / step
    return _bilinear(med, gy, gx), _bilinear(mad, gy, gx)


def _bilinear(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Separable linear interpolation of a coarse grid at fractional rows/columns."""

    def along(a: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        i0 = np.clip(np.floor(g).astype(np.intp), 0, max(n - 2, 0))
        i1 = np.minimum(i0 + 1, n - 1)
        t = np.clip(g - i0, 0.0, 1.0)
        lo, hi = np.take(a, i0, axis=axis), np.take(a, i1, axis=axis)
        t = t[:, None] if axis == 0 else t[None, :]
        return lo * (1 - t) + hi * t

    return along(along(grid, gy, 0), gx, 1)


def _noise_floor(sd: np.ndarray) -> np.ndarray:
    """Guard against zero local noise (flat, clipped or synthetic regions)."""
    pos = sd[sd > 0]
    floor = 1e-3 * float(np.median(pos)) if pos.size else 1e-12
    return np.maximum(sd, max(floor, 1e-12))


def _significance(image: np.ndarray, sigma_px: float, ratio: float, window_px: int) -> np.ndarray:
    r = spot_response(image, sigma_px=sigma_px, background_ratio=ratio)
    med, sd = local_noise(r, window_px=window_px)
    return (r - med) / _noise_floor(sd)


def _subpixel(resp: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Three-point Gaussian (log-parabola) offsets along y and x, clipped to ±0.5 px."""
    h, w = resp.shape

    def offsets(lo: np.ndarray, c: np.ndarray, hi: np.ndarray) -> np.ndarray:
        out = np.zeros(c.shape)
        pos = (lo > 0) & (c > 0) & (hi > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            llo, lc, lhi = np.log(np.where(pos, lo, 1)), np.log(np.where(pos, c, 1)), np.log(
                np.where(pos, hi, 1))
            den_g = llo - 2 * lc + lhi
            g = np.where(pos & (den_g < 0), 0.5 * (llo - lhi) / np.where(den_g < 0, den_g, -1), 0)
            den_p = lo - 2 * c + hi
            q = np.where(den_p < 0, 0.5 * (lo - hi) / np.where(den_p < 0, den_p, -1), 0)
        out = np.where(pos & (den_g < 0), g, q)
        return np.clip(out, -0.5, 0.5)

    ym, yp = np.clip(iy - 1, 0, h - 1), np.clip(iy + 1, 0, h - 1)
    xm, xp = np.clip(ix - 1, 0, w - 1), np.clip(ix + 1, 0, w - 1)
    c = resp[iy, ix]
    dy = offsets(resp[ym, ix], c, resp[yp, ix])
    dx = offsets(resp[iy, xm], c, resp[iy, xp])
    dy = np.where((iy > 0) & (iy < h - 1), dy, 0.0)
    dx = np.where((ix > 0) & (ix < w - 1), dx, 0.0)
    return dy, dx


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in _COLUMNS})


# ------------------------------------------------------------------ detector
def detect_puncta(
    syn,
    *,
    pixel_size_um: float,
    params: PunctaParams | None = None,
    reference=None,
) -> pd.DataFrame:
    """Detect diffraction-limited puncta in a synaptic-marker image.

    Parameters
    ----------
    syn : array-like, shape (Y, X)
        The synaptic-marker channel (e.g. a maximum projection), any numeric dtype.
        Puncta are bright on a darker background.
    pixel_size_um : float
        Lateral pixel size in µm.
    params : PunctaParams, optional
        Detection parameters; defaults of :class:`PunctaParams`.
    reference : array-like, shape (N, Y, X) or (Y, X), optional
        Other channels of the same field. A candidate significant in every one of
        them is autofluorescence (lipofuscin) and is rejected.

    Returns
    -------
    DataFrame
        One row per punctum: ``y_px``, ``x_px`` (sub-pixel, pixel-centre indices),
        ``y_um``, ``x_um`` (``= px * pixel_size_um``), ``amplitude`` (estimated peak
        height above the local background, image units) and ``snr`` (filter
        response over local noise sigma). Sorted by y then x; empty with these
        columns when there are none.

    Raises
    ------
    ValueError
        For a non-2-D image, a non-positive pixel size, or a reference of the
        wrong shape.

    Examples
    --------
    >>> flat = np.full((32, 32), 10, np.uint16)
    >>> detect_puncta(flat, pixel_size_um=0.3).columns.tolist()
    ['y_px', 'x_px', 'y_um', 'x_um', 'amplitude', 'snr']
    """
    prm = PunctaParams() if params is None else params
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"pixel_size_um must be a positive number of µm; got {pixel_size_um!r}")
    img = _as_2d_float(syn, "syn")
    ref = None
    if reference is not None:
        ref = np.asarray(reference)
        if ref.ndim == 2:
            ref = ref[None]
        if ref.ndim != 3 or ref.shape[1:] != img.shape:
            raise ValueError(
                f"reference must be (N, Y, X) with (Y, X) = {img.shape}; got shape {ref.shape}"
            )
    ps = float(pixel_size_um)
    sigma = prm.sigma_px(ps)
    window = int(max(_MIN_WINDOW_PX, round(prm.noise_window_um / ps)))
    if prm.min_separation_um is None:
        min_dist = max(1, round(sigma))
    else:
        min_dist = max(1, round(prm.min_separation_um / ps))

    ratio = prm.background_ratio
    resp = spot_response(img, sigma_px=sigma, background_ratio=ratio)
    med, sd = local_noise(resp, window_px=window)
    snr_map = (resp - med) / _noise_floor(sd)
    peaks = peak_local_max(
        resp, min_distance=min_dist, threshold_abs=None, exclude_border=False,
        labels=(snr_map >= prm.threshold_snr).astype(np.uint8),
    )
    if len(peaks) == 0:
        return _empty()
    iy, ix = peaks[:, 0], peaks[:, 1]
    snr = snr_map[iy, ix]
    keep = snr >= prm.threshold_snr
    iy, ix, snr = iy[keep], ix[keep], snr[keep]

    if ref is not None and len(iy) and ref.shape[0] > 0:
        granule = np.ones(len(iy), dtype=bool)
        for channel in ref:
            s = _significance(_as_2d_float(channel, "reference channel"), sigma, ratio, window)
            near = ndi.maximum_filter(s, size=3, mode="nearest")
            granule &= near[iy, ix] >= prm.autofluorescence_snr
        iy, ix, snr = iy[~granule], ix[~granule], snr[~granule]
    if len(iy) == 0:
        return _empty()

    dy, dx = _subpixel(resp - med, iy, ix)
    gain = _unit_spot_gain(sigma, ratio)
    amplitude = (resp[iy, ix] - med[iy, ix]) / gain
    y = iy + dy
    x = ix + dx
    out = pd.DataFrame({
        "y_px": y, "x_px": x, "y_um": y * ps, "x_um": x * ps,
        "amplitude": amplitude, "snr": snr,
    })
    return out.sort_values(["y_px", "x_px"], kind="stable").reset_index(drop=True)


def _unit_spot_gain(sigma_px: float, ratio: float) -> float:
    """Filter response at the centre of a pixel-centred Gaussian spot of height 1."""
    h = int(np.ceil(5 * ratio * sigma_px)) + 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    spot = np.exp(-(yy**2 + xx**2) / (2 * sigma_px**2))
    return float(spot_response(spot, sigma_px=sigma_px, background_ratio=ratio)[h, h])
