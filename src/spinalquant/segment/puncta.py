"""Synaptic puncta: diffraction-limited spots of a synaptic-marker channel.

Method (one scale, tuned to the optics rather than searched over scales):

1. **Scale.** The spot is modelled as the microscope's point-spread function, a
   Gaussian of ``sigma = 0.21 * wavelength / NA`` µm (or ``psf_sigma_um``), in
   pixels ``sigma_px = sigma_um / pixel_size_um``, floored at ``min_sigma_px``
   (0.7 px: below that a spot is undersampled and the filter would be a pixel
   difference). Real boutons are often larger than the PSF (0.5-1 µm across:
   sigma 0.2-0.45 µm), and on fine pixels a spot 2-3 times wider than the
   filter gives several maxima of its response and of the pixels: at
   0.2 µm/px, boutons of sigma 0.3 / 0.45 µm were counted +19 / +69 %
   (doubles about 0.35 µm apart), and the pixel-scale filter passes more
   false maxima per µm². The scale is therefore **learned from the image**:
   on the isolated detections of a first pass at the optics' scale (the
   same raster-order sample of at most 60 as step 6 calibrates on; at least
   10 of them), one pixel-integrated Gaussian of free width, position, flux
   and background is fitted in a disk of ``3 max_spot_sigma_um + 1`` pixels
   (only the pixels nearer to that detection than to any other), and when the
   median width exceeds the optics' scale by more than 10 % (at most
   ``max_spot_sigma_um``), detection runs again at that width: the filter
   is then matched to the spots, one maximum per bouton, and the minimum
   separation of step 3 and the pair tests of steps 5-6 follow the measured
   width. Measured on boutons of sigma 0.3 and 0.45 µm at 0.2 and 0.3 µm/px
   (``tests/test_puncta_boutons.py`` and an independent cord generator):
   counts within 0-2 % and F1 0.97-1.0 (before +5 to +69 %, F1 0.74-0.97);
   diffraction-limited spots keep the optics' scale. Tiled analysis learns
   it on the whole image (:func:`image_wide_calibration`, ``fixed_scale_px``);
   ``psf_sigma_um`` or ``learn_scale=False`` fixes the scale.
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
   (``1.4826 * MAD``) in tiles of ``noise_window_um``, interpolated between tile
   centres at the candidate. A candidate is kept when
   ``snr = (response - local median) / local sigma >= threshold_snr``.
   The default ``threshold_snr = 5`` keeps noise maxima rare (measured on
   max-projected Poisson + read noise: about 2 per 10 000 µm² at 0.3 µm pixels,
   0.4 at 0.7 µm; at ``k = 4`` about ten times more), while a punctum whose peak
   is 5x the raw noise gives an snr of about 6-10. The local estimate follows the
   Poisson noise, which grows with brightness.

   *Spot-free sigma.* The MAD is robust to a few spots, not to neuropil
   crowded with them: each spot adds a bright core and, from the background
   term, a shallow negative ring several sigmas wide, and at 0.03-0.05
   puncta/µm² (ventral horn) these inflated the tiles' sigma by 25-60 %
   (``tests/independent_phantoms.py::puncta_field``, snr 20, 0.3-0.7 µm/px):
   at 0.7 µm/px recall fell from 0.91 at 0.01 puncta/µm² to 0.74 at 0.05.
   The sigma is therefore measured again without the pixels within
   ``5 sigma_px`` of any pixel ``4`` tile sigmas above the tile's median (the
   core and the deepest part of the ring), twice (the second pass tests with
   the cleaner values), as sigma-clipping does. Each tile is
   tested with its own statistics on itself and a margin of that radius, so
   the result depends on nothing farther than the radius beyond the tile
   (tiled analysis stays exact). The spot-free sigma replaces the first only
   when at least 15 % of the tile's pixels remain and it is more than 20 %
   lower: on spot-free noise (Gaussian, max-projected Poisson, 0.2-1 µm/px)
   the exclusion lowers a tile's sigma that much in about one tile in a
   thousand, so sparse fields keep their numbers (false detections on
   max-projected noise: 99, 59, 30 in 12 fields of 40 000 µm² at 0.3, 0.4,
   0.7 µm/px, against 100, 63, 31 before, with the edge gain below), while at
   0.05 puncta/µm² the sigma comes within 3-10 % of the spot-free field's and
   recall at 0.7 µm/px is 0.89 (0.94 at 0.01 puncta/µm²). The median stays that
   of all pixels: the rings of the neighbours lower the level every spot of
   a crowded tile sits on.

   *Image edges.* The filters repeat the edge pixels, so on the outermost rows
   and columns the response's pixel noise is up to ~12 % above the sigma the
   tiles (mostly interior pixels) report; the sigma there is scaled by the
   filters' exact noise gain for white noise (:func:`_edge_gain`), which keeps
   noise maxima at the edges as rare as inside.
5. **Close pairs.** Smoothing at the spot scale merges two puncta closer than
   about two pixels (``2 * sqrt(sigma_spot**2 + sigma_px**2)``) into one
   maximum; on coarse pixels (0.5-0.7 µm) that loses 10-20 % of the dense
   perisomatic puncta. While the detection scale is at most one pixel (spots
   about a pixel wide; wider spots show pixel maxima of their shot noise on
   their flanks, and their pairs are left to step 6), each detection is
   therefore re-examined on the
   *unsmoothed* background-subtracted image ``I - G_(r sigma) * I``: its 3 x 3
   local maxima within ``2.5 * sigma_px + 1`` pixels (and nearer to this
   detection than to any other) that are significant on their own
   (``>= split_snr`` local sigmas of that image) and separated from each other by
   a dip at least ``split_prominence`` sigmas deep replace the detection, one
   punctum each. Pixel noise alone rarely makes two such maxima (the dip test is
   Find Maxima's prominence), so single spots stay single.
6. **Unresolved pairs.** Spots closer than that (the phantoms place them down
   to 0.9 µm apart: adjacent pixels at 0.7 µm/px) give one maximum even
   unsmoothed. Each remaining detection is then modelled, on the raw image in a
   disk of ``2.5 * sigma_px + 1`` pixels (only the pixels nearer to it than to
   any other detection), as pixel-integrated Gaussian spots on a flat
   background, fitted by least squares (Levenberg-Marquardt, all detections at
   once): **one** spot of free width against **two** spots of one common width
   (free positions and fluxes), as FISH-quant decomposes dense spots. The
   width of a single spot is measured in the image itself, as the median fitted
   width of well-isolated detections; a component may not be narrower than
   0.7 of it. The split is accepted when

   * the drop of the residual sum of squares, in units of the noise variance
     (the larger of the local background variance and the two-spot residual
     variance), reaches ``split_snr**2`` (16: p ~ 1e-3 for the three extra
     parameters of a chi-square test), times the median drop over isolated
     detections divided by its chi-square expectation when that exceeds 1 (the
     test calibrates itself on the image's single spots: shot noise and spots
     that are not quite Gaussian inflate the drop for singles too);
   * each component's peak reaches ``split_snr`` local sigmas;
   * the components are at least two spot sigmas apart (the Sparrow limit;
     closer "pairs" model a non-Gaussian profile, not two spots) and both lie
     nearer to this detection than to any other.

   Only detections that one spot of the reference width fits worse than
   isolated ones do (residual over 1.3 times theirs) are examined, which keeps
   the cost at a fraction of the detection's. Single spots, wide ones included,
   are not split (tests/test_puncta.py); pairs 0.9-1.2 µm apart at 0.7 µm/px are
   resolved when each spot's peak is about 15 x the noise or more.
   The calibration (reference width, prescreen level, excess factor) and the
   response's noise floor can be fixed through :class:`PunctaParams`; tiled
   analysis gathers the whole image's values with :func:`isolated_spots` and
   :func:`image_wide_calibration`. A pixel equally near two detections goes to
   the first in raster order, so a tile decides as the whole image does.
7. **Sub-pixel centres.** A three-point Gaussian (parabola on the log) fit along
   y and x of the response at the maximum (a parabola where the log is
   undefined), clipped to half a pixel.
8. **Autofluorescence.** Lipofuscin granules fluoresce in every channel. With
   ``reference`` images (the other channels), a candidate whose response is
   significant (``>= autofluorescence_snr``) at its position in *every*
   reference channel is a granule, not a punctum, and is dropped.

All filtering runs in float32; noise statistics are computed on a coarse grid
and only evaluated where needed. The two-spot fits of step 6 add about 20 % to
the detection's time (measured on a 1024 x 1024 phantom plane at 0.5 µm/px with
750 puncta: 0.35 -> 0.41 s alone, about +10 % with four reference channels).

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

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy import special
from scipy.spatial import cKDTree

__all__ = ["PunctaParams", "detect_puncta", "image_wide_calibration", "isolated_spots", "local_noise",
           "noise_window_px", "spot_response"]

_COLUMNS = ("y_px", "x_px", "y_um", "x_um", "amplitude", "snr")
_MAD_TO_SIGMA = 1.4826
_MIN_WINDOW_PX = 16
# spot-free noise (module notes, step 4)
_EXCLUDE = 5.0  # radius of the pixels left out around a spot, in detection sigmas
_EXCLUDE_K = 4.0  # a spot: a pixel this many sigmas above its tile's median
_PASSES = 2
_MIN_KEPT = 0.15  # of a tile's pixels, else its first estimate stands
_MIN_DROP = 0.2  # the spot-free sigma replaces the first only when this much lower


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
        Gaussian sigma (µm) of a spot; default ``0.21 * wavelength_um / na``, or
        the width learned on the image when its spots are wider (``learn_scale``).
        Setting it fixes the detection scale (no learning).
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
    split_snr : float or None
        Significance (local sigmas of the unsmoothed background-subtracted image)
        each spot of a close pair must reach to be split from a merged
        detection; its square is also the likelihood-ratio threshold of the
        one- against two-spot fit. None disables the splitting (module notes,
        steps 5-6).
    split_prominence : float
        Depth (local sigmas) of the dip between the two spots of a pair.
    fixed_noise_floor : float or None
        Floor of the local noise sigma of the spot response. None: 1e-3 x the
        median over the image's noise windows. Tiled analysis sets the whole
        image's value so that every tile uses it.
    origin_px : (int, int)
        Image pixel of the analysed array's first pixel, when it is a tile of a
        larger image: the two-spot fits then work in the image's pixel
        coordinates and round exactly as on the whole image. Positions are
        still returned relative to the array.
    fixed_spot_sigma_px : float or None
        Calibration of the unresolved-pair test (module notes, step 6): the
        fitted sigma (pixels) of an isolated spot. None: measured on the image's
        own isolated detections (:func:`split_calibration`); tiled analysis sets
        the whole image's. Set together with the next two, or none of them.
    fixed_misfit : float or None
        Calibration: the median misfit of isolated spots to one spot of that sigma.
    fixed_split_excess : float or None
        Calibration: the factor (>= 1) by which isolated spots' two-spot
        likelihood ratio exceeds its chi-square median.
    learn_scale : bool
        Measure the width of the image's isolated spots and, when they are
        wider than the optics' spot (boutons), detect at the measured width
        (module notes, step 1). Only with ``psf_sigma_um`` unset.
    max_spot_sigma_um : float
        Largest spot sigma (µm) the learned scale may reach (boutons up to
        about 2.5 µm across).
    fixed_scale_px : float or None
        The detection scale (pixels) learned on the whole image; tiled
        analysis sets it (:func:`image_wide_calibration`) so that every tile
        detects at the same scale. None: the optics' scale, or the learned one.
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
    split_snr: float | None = 4.0
    split_prominence: float = 2.0
    fixed_noise_floor: float | None = None
    origin_px: tuple[int, int] = (0, 0)
    fixed_spot_sigma_px: float | None = None
    fixed_misfit: float | None = None
    fixed_split_excess: float | None = None
    learn_scale: bool = True
    max_spot_sigma_um: float = 0.6
    fixed_scale_px: float | None = None

    def __post_init__(self) -> None:
        for key in ("wavelength_um", "na", "min_sigma_px", "threshold_snr", "noise_window_um",
                    "autofluorescence_snr", "max_spot_sigma_um"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"PunctaParams.{key} must be a positive number; got {v!r}")
        for key in ("psf_sigma_um", "min_separation_um", "split_snr", "fixed_noise_floor",
                    "fixed_spot_sigma_px", "fixed_misfit", "fixed_split_excess", "fixed_scale_px"):
            v = getattr(self, key)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ValueError(f"PunctaParams.{key} must be positive or None; got {v!r}")
        if not (np.isfinite(self.split_prominence) and self.split_prominence >= 0):
            raise ValueError(
                f"PunctaParams.split_prominence must be >= 0; got {self.split_prominence!r}"
            )
        if not (np.isfinite(self.background_ratio) and self.background_ratio > 1):
            raise ValueError(
                f"PunctaParams.background_ratio must be > 1; got {self.background_ratio!r}"
            )

        origin = tuple(self.origin_px)
        if len(origin) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in origin):
            raise ValueError(f"PunctaParams.origin_px must be two integers >= 0; got {self.origin_px!r}")
        object.__setattr__(self, "origin_px", (int(origin[0]), int(origin[1])))
        calib = (self.fixed_spot_sigma_px, self.fixed_misfit, self.fixed_split_excess)
        if any(v is None for v in calib) and any(v is not None for v in calib):
            raise ValueError(
                "PunctaParams.fixed_spot_sigma_px, fixed_misfit and fixed_split_excess are set "
                f"together or not at all; got {calib!r}"
            )
        if self.fixed_split_excess is not None and self.fixed_split_excess < 1:
            raise ValueError(
                f"PunctaParams.fixed_split_excess must be >= 1; got {self.fixed_split_excess!r}"
            )

    def split_calibration(self) -> tuple[float, float, float] | None:
        """``(spot sigma px, misfit, excess)`` when fixed, else None."""
        if self.fixed_spot_sigma_px is None:
            return None
        return (float(self.fixed_spot_sigma_px), float(self.fixed_misfit),
                float(self.fixed_split_excess))

    def sigma_um(self) -> float:
        """The spot sigma in µm (explicit, or from wavelength and NA)."""
        if self.psf_sigma_um is not None:
            return float(self.psf_sigma_um)
        return 0.21 * self.wavelength_um / self.na

    def sigma_px(self, pixel_size_um: float) -> float:
        """The detection scale in pixels for a pixel size (``fixed_scale_px`` when set)."""
        if self.fixed_scale_px is not None:
            return max(float(self.fixed_scale_px), self.min_sigma_px)
        return max(self.sigma_um() / float(pixel_size_um), self.min_sigma_px)

    def learns_scale(self) -> bool:
        """Whether the detection scale is still to be measured on the image."""
        return self.learn_scale and self.psf_sigma_um is None and self.fixed_scale_px is None


def noise_window_px(pixel_size_um: float, params: PunctaParams | None = None) -> int:
    """Side (pixels) of the windows of the local noise estimate: ``noise_window_um``, at least 16 px.

    Examples
    --------
    >>> noise_window_px(0.2)
    30
    """
    prm = PunctaParams() if params is None else params
    return int(max(_MIN_WINDOW_PX, round(prm.noise_window_um / float(pixel_size_um))))


# -------------------------------------------------------------------- filters
def _as_2d_float(image, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (Y, X) image; got shape {arr.shape}")
    if arr.dtype.kind not in "uif" and arr.dtype != bool:
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    out = arr.astype(np.float32)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def _blur_pair(image: np.ndarray, sigma_px: float, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """``(G_sigma * I, G_(ratio sigma) * I)`` in float32; the second from the first."""
    arr = np.asarray(image, dtype=np.float32)
    fine = ndi.gaussian_filter(arr, sigma_px, mode="nearest")
    # G_(r s) = G_(sqrt(r^2 - 1) s) * G_s: a shorter kernel on the already smoothed image
    coarse = ndi.gaussian_filter(fine, np.sqrt(ratio**2 - 1.0) * sigma_px, mode="nearest")
    return fine, coarse


def _filter_reach(sigma_px: float, ratio: float) -> int:
    """Pixels over which :func:`_blur_pair` reaches (scipy's kernels: 4 sigmas each)."""
    return int(4.0 * sigma_px + 0.5) + int(4.0 * np.sqrt(ratio**2 - 1.0) * sigma_px + 0.5) + 1


def _edge_terms(n: int, sigma_px: float, ratio: float) -> np.ndarray:
    """(3, n) float64: ``sum_k A_ik**2``, ``sum_k A_ik C_ik``, ``sum_k C_ik**2`` along one axis.

    ``A`` and ``C`` are the matrices of the fine and coarse smoothing of
    :func:`_blur_pair` along an axis of ``n`` pixels (edge pixels repeated):
    the pixel noise of the response is ``sum_k (A_ik B_jk' - C_ik D_jk')**2``
    with the other axis' ``B``, ``D``. Only pixels near the ends differ from
    the interior; they are computed on a short axis.
    """
    s2 = np.sqrt(ratio**2 - 1.0) * sigma_px
    reach = _filter_reach(sigma_px, ratio)
    m = min(n, 2 * reach + 3)
    a = ndi.gaussian_filter1d(np.eye(m), sigma_px, axis=0, mode="nearest")
    c = ndi.gaussian_filter1d(a, s2, axis=0, mode="nearest")
    t = np.stack([(a * a).sum(1), (a * c).sum(1), (c * c).sum(1)])
    if m == n:
        return t
    out = np.repeat(t[:, reach + 1 : reach + 2], n, axis=1)
    out[:, : reach + 1] = t[:, : reach + 1]
    out[:, n - reach - 1 :] = t[:, m - reach - 1 :]
    return out


def _edge_gain(shape: tuple[int, int], sigma_px: float, ratio: float, iy: np.ndarray,
               ix: np.ndarray) -> np.ndarray:
    """Pixel-noise std of the response at ``(iy, ix)`` relative to the image's interior.

    Near the image's edges the filters of :func:`spot_response` repeat the
    edge pixels, which weighs them more: in white noise the response's std is
    about 12 % higher on the outermost rows and columns (``sigma_px`` 0.7;
    a few % lower or higher one to three pixels in) than inside, where the
    tiles' sigma is mostly measured. Exact for white noise.
    """
    ty, tx = _edge_terms(shape[0], sigma_px, ratio), _edge_terms(shape[1], sigma_px, ratio)

    def var(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a[0] * b[0] - 2.0 * a[1] * b[1] + a[2] * b[2]

    reach = _filter_reach(sigma_px, ratio)
    mid = _edge_terms(2 * reach + 3, sigma_px, ratio)[:, reach + 1]  # beyond both ends' reach
    inner = var(mid, mid)
    return np.sqrt(np.maximum(var(ty[:, iy], tx[:, ix]), 0.0) / inner)


def spot_response(image, *, sigma_px: float, background_ratio: float = 3.0) -> np.ndarray:
    """Difference-of-Gaussians spot filter at one scale, float32 (Y, X).

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
    fine, coarse = _blur_pair(image, sigma_px, background_ratio)
    return fine - coarse


def _window_side(shape: tuple[int, int], window_px: int) -> int:
    """Side (= grid step) of the noise windows of an image of ``shape``."""
    return int(max(4, min(window_px, max(shape))))


def _grid_shift(shape: tuple[int, int], window_px: int, origin: tuple[int, int]) -> tuple[int, int]:
    """Where the noise grid of a window starting at image pixel ``origin`` is anchored.

    Nodes sit on multiples of the step in the whole image's pixels: in the
    window's pixels, at ``i * step - shift``.
    """
    w = _window_side(shape, window_px)
    return int(origin[0]) % w, int(origin[1]) % w


def _window_geometry(shape: tuple[int, int], window_px: int, shift: tuple[int, int] = (0, 0)
                     ) -> tuple[int, int, int]:
    """``(w, ny, nx)``: window side (= grid step) and grid size (see :func:`_noise_grid`)."""
    w = _window_side(shape, window_px)
    ny = int(np.ceil((shape[0] + shift[0]) / w)) + 1
    nx = int(np.ceil((shape[1] + shift[1]) / w)) + 1
    return w, ny, nx


def _window_stats(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and 1.4826 x MAD along the last axis, float32."""
    med = np.median(samples, axis=-1)
    dev = np.abs(samples - med[..., None])
    mad = np.median(dev, axis=-1) * np.float32(_MAD_TO_SIGMA)
    return med.astype(np.float32), mad.astype(np.float32)


def _padded(img: np.ndarray, w: int, ny: int, nx: int, shift: tuple[int, int] = (0, 0),
            margin: int = 0) -> np.ndarray:
    """The image mirrored to the ``ny`` x ``nx`` tiles of side ``w``, plus ``margin`` all round."""
    lo_y, lo_x = w // 2 + shift[0] + margin, w // 2 + shift[1] + margin
    pad_y = (lo_y, ny * w + 2 * margin - lo_y - img.shape[0])
    pad_x = (lo_x, nx * w + 2 * margin - lo_x - img.shape[1])
    return np.pad(img, (pad_y, pad_x), mode="reflect" if min(img.shape) > w else "symmetric")


def _noise_grid(img: np.ndarray, window_px: int, shift: tuple[int, int] = (0, 0), *,
                exclude_px: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Median and robust sigma in square tiles of ``window_px``, float32 grids.

    Tile ``(i, j)`` is centred on pixel ``(i * w - shift[0], j * w - shift[1])``
    (the image is mirrored at its edges), so the tiles cover every pixel once:
    the cost is two partial sorts of the image. Returns ``(median, sigma, step = w)``.
    With ``exclude_px > 0`` the sigma is measured again without the pixels
    within that radius of a spot (:func:`_spot_free_sigma`).
    """
    w, ny, nx = _window_geometry(img.shape, window_px, shift)
    tiles = _padded(img, w, ny, nx, shift).reshape(ny, w, nx, w).swapaxes(1, 2).reshape(ny, nx, w * w)
    med, mad = _window_stats(tiles)
    if exclude_px > 0:
        mad = _spot_free_sigma(img, tiles, med, mad, w, shift, radius=exclude_px)
    return med, mad, w


def _spot_free_sigma(img: np.ndarray, tiles: np.ndarray, med: np.ndarray, sd: np.ndarray, w: int,
                     shift: tuple[int, int], *, radius: float) -> np.ndarray:
    """The tiles' robust sigma without the pixels near spots (module notes, step 4).

    ``tiles`` (ny, nx, w * w) are the tiles of ``img`` as :func:`_noise_grid`
    cuts them, ``med`` and ``sd`` their median and sigma. A pixel is near a
    spot when a pixel within ``radius`` of it exceeds the tile's median by
    ``_EXCLUDE_K`` sigmas; the median and MAD of the remaining pixels give the
    next estimate (``_PASSES`` passes, the second with the cleaner values).
    Each tile is tested with its own statistics on itself and a margin of
    ``radius`` around it, so its value depends on nothing farther away. A
    tile keeps ``sd`` where fewer than ``_MIN_KEPT`` of its pixels remain or
    the sigma drops by less than ``_MIN_DROP``.
    """
    ny, nx = med.shape
    r = int(np.ceil(radius))
    big = _padded(img, w, ny, nx, shift, margin=r)
    b = w + 2 * r
    blocks = np.lib.stride_tricks.sliding_window_view(big, (b, b))[::w, ::w].reshape(ny * nx, b, b)
    values = tiles.reshape(ny * nx, w * w)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    offsets = np.column_stack([yy.ravel(), xx.ravel()])[(yy**2 + xx**2).ravel() <= radius**2]
    m_cur, s_cur = med.ravel().copy(), sd.ravel().copy()
    sel = np.arange(ny * nx)  # a tile left alone by a pass stays so: same values, same test
    for _ in range(_PASSES):
        part = blocks if len(sel) == len(blocks) else blocks[sel]  # the first pass: a view
        hot = part > (m_cur[sel] + np.float32(_EXCLUDE_K) * s_cur[sel])[:, None, None]
        any_hot = hot.any(axis=(1, 2))
        sel, hot = sel[any_hot], hot[any_hot]
        if len(sel) == 0:
            break
        keep = ~_near_hot(hot, offsets, r, w).reshape(len(sel), w * w)
        n_keep = keep.sum(axis=1)
        ok = n_keep >= _MIN_KEPT * w * w
        sel, keep, n_keep = sel[ok], keep[ok], n_keep[ok]
        if len(sel) == 0:
            break
        m = _masked_median(values[sel], keep, n_keep)
        dev = _masked_median(np.abs(values[sel] - m[:, None]), keep, n_keep)
        m_cur[sel] = m
        s_cur[sel] = dev * np.float32(_MAD_TO_SIGMA)
    s_new = s_cur
    clean = s_new < np.float32(1.0 - _MIN_DROP) * sd.ravel()
    return np.where(clean, s_new, sd.ravel()).reshape(ny, nx).astype(np.float32)


def _noise_at(img: np.ndarray, window_px: int, y: np.ndarray, x: np.ndarray,
              shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_noise_grid` interpolated at pixels ``(y, x)``, computing only the nodes needed.

    The same numbers as the full grid (with the noise floor of the nodes used).
    """
    if len(y) == 0:
        return np.zeros(0, np.float32), np.ones(0, np.float32)
    med, sd, step = _noise_nodes(img, window_px, y, x, shift)
    return _sample(med, step, y, x, shift), _sample(sd, step, y, x, shift)


def _noise_nodes(img: np.ndarray, window_px: int, y: np.ndarray, x: np.ndarray,
                 shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`_noise_grid` with only the nodes around pixels ``(y, x)`` computed.

    Other nodes hold median 0 and sigma 1; sample the grids with :func:`_sample`
    at these pixels only.
    """
    w, ny, nx = _window_geometry(img.shape, window_px, shift)
    step = w
    y = np.asarray(y) + shift[0]
    x = np.asarray(x) + shift[1]
    gy0 = np.minimum(np.clip(y // step, 0, None).astype(np.intp), ny - 1)
    gx0 = np.minimum(np.clip(x // step, 0, None).astype(np.intp), nx - 1)
    need = np.zeros((ny, nx), bool)
    for oy in (0, 1):
        for ox in (0, 1):
            need[np.minimum(gy0 + oy, ny - 1), np.minimum(gx0 + ox, nx - 1)] = True
    ky, kx = np.nonzero(need)
    padded = _padded(img, w, ny, nx, shift)
    off = np.arange(w)
    rows = (ky * w)[:, None, None] + off[None, :, None]
    cols = (kx * w)[:, None, None] + off[None, None, :]
    med_k, sd_k = _window_stats(padded[rows, cols].reshape(len(ky), -1))
    sd_k = _noise_floor(sd_k)
    med = np.zeros((ny, nx), np.float32)
    sd = np.ones((ny, nx), np.float32)
    med[ky, kx] = med_k
    sd[ky, kx] = sd_k
    return med, sd, step


def _sample(grid: np.ndarray, step: int, y, x, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Bilinear interpolation of a noise grid (anchored with ``shift``) at pixels ``(y, x)``."""
    gy = np.clip((np.asarray(y, np.float64) + shift[0]) / step, 0, grid.shape[0] - 1)
    gx = np.clip((np.asarray(x, np.float64) + shift[1]) / step, 0, grid.shape[1] - 1)
    y0 = np.minimum(np.floor(gy).astype(np.intp), max(grid.shape[0] - 2, 0))
    x0 = np.minimum(np.floor(gx).astype(np.intp), max(grid.shape[1] - 2, 0))
    y1 = np.minimum(y0 + 1, grid.shape[0] - 1)
    x1 = np.minimum(x0 + 1, grid.shape[1] - 1)
    ty, tx = gy - y0, gx - x0
    top = grid[y0, x0] * (1 - tx) + grid[y0, x1] * tx
    bottom = grid[y1, x0] * (1 - tx) + grid[y1, x1] * tx
    return top * (1 - ty) + bottom * ty


def _near_hot(hot: np.ndarray, offsets: np.ndarray, r: int, w: int) -> np.ndarray:
    """(N, w, w) pixels of each block's centre within ``offsets`` (a disk) of a hot pixel.

    ``hot`` (N, w + 2r, w + 2r) is sparse: the disk is stamped at each hot pixel
    (a binary dilation restricted to the centre)."""
    k, y, x = np.nonzero(hot)
    yy = y[:, None] + (offsets[:, 0] - r)[None, :]
    xx = x[:, None] + (offsets[:, 1] - r)[None, :]
    inside = (yy >= 0) & (yy < w) & (xx >= 0) & (xx < w)
    near = np.zeros((hot.shape[0], w, w), bool)
    near[np.broadcast_to(k[:, None], yy.shape)[inside], yy[inside], xx[inside]] = True
    return near


def _masked_median(a: np.ndarray, keep: np.ndarray, n_keep: np.ndarray) -> np.ndarray:
    """Median of each row of ``a`` (N, M) over its ``keep`` entries (``n_keep`` of them), float32."""
    srt = np.sort(np.where(keep, a, np.float32(np.inf)), axis=1)
    lo, hi = (n_keep - 1) // 2, n_keep // 2
    pair = np.take_along_axis(srt, lo[:, None], 1) + np.take_along_axis(srt, hi[:, None], 1)
    return (np.float32(0.5) * pair[:, 0]).astype(np.float32)


def local_noise(response: np.ndarray, *, window_px: int, spot_sigma_px: float | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Local median and robust sigma (1.4826 x MAD) of an image, float32 (Y, X) each.

    Statistics are computed in square tiles of ``window_px`` and interpolated
    bilinearly between tile centres, which is robust to the objects themselves
    (up to half of a tile) and fast on large images. With ``spot_sigma_px``
    (the spot scale of a :func:`spot_response`), the sigma of tiles crowded
    with spots is measured without the pixels near them, as
    :func:`detect_puncta` does (module notes, step 4).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> med, sd = local_noise(rng.normal(0, 2, (80, 80)), window_px=20)
    >>> bool(abs(np.median(sd) - 2) < 0.3)
    True
    """
    img = np.asarray(response, dtype=np.float32)
    if spot_sigma_px is not None and not (np.isfinite(spot_sigma_px) and spot_sigma_px > 0):
        raise ValueError(f"spot_sigma_px must be positive or None; got {spot_sigma_px!r}")
    exclude = 0.0 if spot_sigma_px is None else _EXCLUDE * float(spot_sigma_px)
    med, sd, step = _noise_grid(img, window_px, exclude_px=exclude)
    gy = np.arange(img.shape[0], dtype=np.float32) / step
    gx = np.arange(img.shape[1], dtype=np.float32) / step
    return _bilinear(med, gy, gx), _bilinear(sd, gy, gx)


def _bilinear(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Separable linear interpolation of a coarse grid at fractional rows/columns."""

    def along(a: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        i0 = np.clip(np.floor(g).astype(np.intp), 0, max(n - 2, 0))
        i1 = np.minimum(i0 + 1, n - 1)
        t = np.clip(g - i0, 0.0, 1.0).astype(np.float32)
        lo, hi = np.take(a, i0, axis=axis), np.take(a, i1, axis=axis)
        t = t[:, None] if axis == 0 else t[None, :]
        return lo + (hi - lo) * t

    return along(along(grid, gy, 0), gx, 1)


def _noise_floor(sd: np.ndarray, fixed: float | None = None) -> np.ndarray:
    """Guard against zero local noise (flat, clipped or synthetic regions).

    The floor is ``fixed``, or 1e-3 x the median positive sigma of ``sd``."""
    floor = fixed if fixed is not None else _floor_of(sd)
    return np.maximum(sd, np.float32(max(floor, 1e-12)))


def _floor_of(sd: np.ndarray) -> float:
    pos = sd[sd > 0]
    return 1e-3 * float(np.median(pos)) if pos.size else 1e-12


def _subpixel(resp: np.ndarray, iy: np.ndarray, ix: np.ndarray,
              base: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Three-point Gaussian (log-parabola) offsets along y and x, clipped to ±0.5 px.

    ``base`` (one value per point) is subtracted from the three samples first.
    """
    h, w = resp.shape
    base = np.broadcast_to(np.asarray(base, np.float64), iy.shape)

    def offsets(lo: np.ndarray, c: np.ndarray, hi: np.ndarray) -> np.ndarray:
        pos = (lo > 0) & (c > 0) & (hi > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            llo, lc, lhi = (np.log(np.where(pos, v, 1)) for v in (lo, c, hi))
            den_g = llo - 2 * lc + lhi
            g = np.where(pos & (den_g < 0), 0.5 * (llo - lhi) / np.where(den_g < 0, den_g, -1), 0)
            den_p = lo - 2 * c + hi
            q = np.where(den_p < 0, 0.5 * (lo - hi) / np.where(den_p < 0, den_p, -1), 0)
        out = np.where(pos & (den_g < 0), g, q)
        return np.clip(out, -0.5, 0.5)

    ym, yp = np.clip(iy - 1, 0, h - 1), np.clip(iy + 1, 0, h - 1)
    xm, xp = np.clip(ix - 1, 0, w - 1), np.clip(ix + 1, 0, w - 1)

    def at(yy, xx):
        return resp[yy, xx].astype(np.float64) - base

    c = at(iy, ix)
    dy = offsets(at(ym, ix), c, at(yp, ix))
    dx = offsets(at(iy, xm), c, at(iy, xp))
    dy = np.where((iy > 0) & (iy < h - 1), dy, 0.0)
    dx = np.where((ix > 0) & (ix < w - 1), dx, 0.0)
    return dy, dx


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in _COLUMNS})


def _maxima(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive local maxima (``size`` x ``size`` neighbourhood); see :func:`_one_per_plateau`."""
    peak = (image == ndi.maximum_filter(image, size=size, mode="nearest")) & (image > 0)
    return np.nonzero(peak)


def _one_per_plateau(image: np.ndarray, iy: np.ndarray, ix: np.ndarray, size: int) -> np.ndarray:
    """Keep-mask of maxima: of equal maxima within ``size // 2`` pixels, the first (raster order)."""
    keep = np.ones(len(iy), bool)
    if len(iy) > 1:
        pairs = cKDTree(np.column_stack([iy, ix])).query_pairs(
            r=size // 2, p=np.inf, output_type="ndarray")
        if len(pairs):
            a, b = pairs[:, 0], pairs[:, 1]
            same = image[iy[a], ix[a]] == image[iy[b], ix[b]]
            keep[np.maximum(a, b)[same]] = False
    return keep


def _neighbourhood_max(image: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Maximum of ``image`` over the 3 x 3 pixels around each point."""
    h, w = image.shape
    best = np.full(len(iy), -np.inf, np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            best = np.maximum(best, image[np.clip(iy + dy, 0, h - 1), np.clip(ix + dx, 0, w - 1)])
    return best


def _granules(ref: np.ndarray, iy: np.ndarray, ix: np.ndarray, sigma: float, ratio: float,
              window: int, snr: float, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """True for points whose response is significant in every reference channel."""
    granule = np.ones(len(iy), dtype=bool)
    for channel in ref:
        r = spot_response(_as_2d_float(channel, "reference channel"), sigma_px=sigma,
                          background_ratio=ratio)
        med, sd = _noise_at(r, window, iy, ix, shift)
        s = (_neighbourhood_max(r, iy, ix) - med) / sd
        granule &= s >= snr
        if not granule.any():
            break
    return granule


def _nearest(tree: cKDTree, points: np.ndarray, distance_upper_bound: float = np.inf):
    """Distance to and index of each point's nearest tree point; of equally near
    ones the lowest index (the k-d tree's own choice depends on the other points,
    so a tile of the image could choose differently). Missing: ``inf`` and ``tree.n``."""
    k = min(4, tree.n)  # on a pixel grid at most four points are equally near
    dist, idx = tree.query(points, k=k, distance_upper_bound=distance_upper_bound)
    if k == 1:
        return dist, idx
    tie = dist == dist[:, :1]
    best = np.where(tie, idx, tree.n).min(axis=1)
    return dist[:, 0], best


def _segment_min(image: np.ndarray, y0, x0, y1, x1, n: int = 9) -> np.ndarray:
    """Minimum of ``image`` (bilinear) on the open segments between point pairs."""
    t = np.linspace(0, 1, n + 2)[1:-1]
    yy = y0[:, None] + (y1 - y0)[:, None] * t
    xx = x0[:, None] + (x1 - x0)[:, None] * t
    h, w = image.shape
    yf = np.clip(np.floor(yy).astype(np.intp), 0, h - 2)
    xf = np.clip(np.floor(xx).astype(np.intp), 0, w - 2)
    ty, tx = yy - yf, xx - xf
    v = (image[yf, xf] * (1 - ty) * (1 - tx) + image[yf + 1, xf] * ty * (1 - tx)
         + image[yf, xf + 1] * (1 - ty) * tx + image[yf + 1, xf + 1] * ty * tx)
    return v.min(axis=1)


def _split_pairs(unsmoothed: np.ndarray, iy: np.ndarray, ix: np.ndarray, *, radius: float,
                 noise_grid: tuple[np.ndarray, np.ndarray, int], snr: float, prominence: float,
                 shift: tuple[int, int] = (0, 0)):
    """Resolve detections that hide two spots (module notes, step 5).

    Returns ``(owner, py, px)``: for every new spot the index of the detection
    it replaces and its pixel; detections not listed stay as they are.
    """
    none = (np.zeros(0, np.intp),) * 3
    if len(iy) == 0:
        return none
    r = int(np.ceil(radius))
    near = np.zeros(unsmoothed.shape, bool)
    near[iy, ix] = True
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    near = ndi.binary_dilation(near, structure=(yy**2 + xx**2) <= radius**2)
    peak = near & (unsmoothed == ndi.maximum_filter(unsmoothed, size=3, mode="nearest"))
    qy, qx = np.nonzero(peak)
    if len(qy) < 2:
        return none
    dist, owner = _nearest(cKDTree(np.column_stack([iy, ix])), np.column_stack([qy, qx]),
                           distance_upper_bound=radius)
    ok = np.isfinite(dist)
    qy, qx, owner = qy[ok], qx[ok], owner[ok]
    med, sd, step = noise_grid
    base, noise = _sample(med, step, qy, qx, shift), _sample(sd, step, qy, qx, shift)
    level = unsmoothed[qy, qx]
    sig = (level - base) / noise >= snr
    qy, qx, owner, level, noise = qy[sig], qx[sig], owner[sig], level[sig], noise[sig]
    counts = np.bincount(owner, minlength=len(iy))
    multi = counts[owner] >= 2
    qy, qx, owner, level, noise = qy[multi], qx[multi], owner[multi], level[multi], noise[multi]
    if len(qy) == 0:
        return none
    # within each detection, brightest first
    order = np.lexsort((-level, owner))
    qy, qx, owner, level, noise = qy[order], qx[order], owner[order], level[order], noise[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    ends = np.r_[starts[1:], len(owner)]
    out_owner, out_y, out_x = [], [], []
    for s, e in zip(starts, ends, strict=True):
        kept = [s]
        for j in range(s + 1, e):
            k = np.asarray(kept)
            dip = _segment_min(unsmoothed, qy[k].astype(float), qx[k].astype(float),
                               np.full(len(k), float(qy[j])), np.full(len(k), float(qx[j])))
            lower = np.minimum(level[k], level[j])
            if np.all(lower - dip >= prominence * noise[j]):
                kept.append(j)
        if len(kept) >= 2:
            out_owner.extend(owner[kept])
            out_y.extend(qy[kept])
            out_x.extend(qx[kept])
    return (np.asarray(out_owner, np.intp), np.asarray(out_y, np.intp),
            np.asarray(out_x, np.intp))


# -------------------------------------------------- unresolved-spot decomposition
_SQRT2 = np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_MIN_WIDTH = 0.7  # narrowest spot of a pair, relative to an isolated spot
_PRESCREEN = 1.3
_MIN_SEPARATION = 2.0  # of a pair, in spot sigmas (the Sparrow limit)
_N_CALIBRATE = 60
_CHI2_3_MEDIAN = 2.366  # median of the chi-square distribution with 3 degrees of freedom
_PIXEL_SPOT = 1.0  # pixel maxima split pairs only of spots up to this sigma (pixels)
_MIN_ISOLATED = 10  # isolated detections needed to calibrate on them
_WIDER = 1.1  # a learned scale replaces the optics' when the spots are this much wider


def _profile(c: np.ndarray, s: np.ndarray, u: np.ndarray):
    """Pixel-integrated unit Gaussian along one axis and its derivatives.

    ``c`` (N, K) centres and ``s`` (N, 1) sigmas in pixels, ``u`` (L,) pixel
    offsets. Returns ``(E, dE/dc, dE/ds)``, each (N, K, L): ``E[i]`` is the
    fraction of a unit spot falling into pixel ``u[i]``.
    """
    ss = s[:, :, None]
    edge = (np.r_[u - 0.5, u[-1] + 0.5][None, None, :] - c[:, :, None]) / ss  # (N, K, L + 1)
    cdf = special.erf(edge / _SQRT2)
    pdf = np.exp(-0.5 * edge**2) * (_INV_SQRT_2PI / ss)
    e = 0.5 * (cdf[..., 1:] - cdf[..., :-1])
    de_dc = pdf[..., :-1] - pdf[..., 1:]
    upd = edge * pdf
    de_ds = upd[..., :-1] - upd[..., 1:]
    return e, de_dc, de_ds


def _spots_model(p: np.ndarray, u: np.ndarray, k: int):
    """``k`` pixel-integrated Gaussian spots of one sigma on a flat background.

    ``p`` (N, 2 + 3k) holds ``background, sigma, (y, x, flux) * k`` (pixels,
    relative to the patch centre; ``flux`` is the integrated intensity).
    Returns the model (N, L * L) and its Jacobian (N, L * L, 2 + 3k).
    """
    n, size = len(p), len(u)
    s = p[:, 1:2]
    f = p[:, 4::3][:, :, None]
    ey, dey, sey = _profile(p[:, 2::3], s, u)
    ex, dex, sex = _profile(p[:, 3::3], s, u)
    fy = f * ey
    jac = np.empty((n, 2 + 3 * k, size, size))
    jac[:, 0] = 1.0
    jac[:, 1] = (f * sey).transpose(0, 2, 1) @ ex + fy.transpose(0, 2, 1) @ sex
    jac[:, 2::3] = (f * dey)[:, :, :, None] * ex[:, :, None, :]
    jac[:, 3::3] = fy[:, :, :, None] * dex[:, :, None, :]
    jac[:, 4::3] = ey[:, :, :, None] * ex[:, :, None, :]
    model = p[:, 0, None, None] + np.einsum("nkij->nij", jac[:, 4::3] * f[..., None])
    return model.reshape(n, -1), jac.reshape(n, 2 + 3 * k, size * size)


def _fit_spots(data: np.ndarray, weight: np.ndarray, p0: np.ndarray, u: np.ndarray, k: int,
               lo: np.ndarray, hi: np.ndarray, tol: np.ndarray, n_iter: int = 20):
    """Least-squares fit of :func:`_spots_model` to many patches at once.

    Levenberg-Marquardt on all patches together (one damping factor per patch),
    parameters kept within ``[lo, hi]``; a patch leaves the iteration when its
    residual sum of squares falls by less than ``tol`` (N,) in a step.
    ``data`` and ``weight`` are (N, L * L).
    Returns ``(params, rss)``.
    """
    p = p0.copy()
    model, jac = _spots_model(p, u, k)
    res = (model - data) * weight
    rss = np.einsum("nm,nm->n", res, res)
    lam = np.full(len(p), 1e-2)
    eye = np.eye(p.shape[1])
    act = np.arange(len(p))
    for _ in range(n_iter):
        if len(act) == 0:
            break
        w = weight[act]
        jw = jac[act] * w[:, None, :]
        a = jw @ jw.transpose(0, 2, 1)
        g = (jw @ res[act][:, :, None])[:, :, 0]
        diag = np.einsum("npp->np", a)
        damped = a + (lam[act, None] * diag + 1e-9)[:, :, None] * eye
        step = np.linalg.solve(damped, -g[:, :, None])[:, :, 0]
        trial = np.clip(p[act] + step, lo, hi)
        t_model, t_jac = _spots_model(trial, u, k)
        t_res = (t_model - data[act]) * w
        t_rss = np.einsum("nm,nm->n", t_res, t_res)
        better = t_rss < rss[act]
        done = (better & (rss[act] - t_rss <= tol[act])) | (lam[act] > 1e4)
        b = act[better]
        p[b], jac[b], res[b], rss[b] = trial[better], t_jac[better], t_res[better], t_rss[better]
        lam[act] = np.where(better, lam[act] * 0.3, lam[act] * 10.0)
        act = act[~done]
    return p, rss


def _patches(img: np.ndarray, iy: np.ndarray, ix: np.ndarray, half: int):
    """(N, L * L) float64 patches of side ``L = 2 half + 1`` and an in-image mask."""
    u = np.arange(-half, half + 1)
    rows = iy[:, None] + u[None, :]
    cols = ix[:, None] + u[None, :]
    inside = (((rows >= 0) & (rows < img.shape[0]))[:, :, None]
              & ((cols >= 0) & (cols < img.shape[1]))[:, None, :])
    r = np.clip(rows, 0, img.shape[0] - 1)
    c = np.clip(cols, 0, img.shape[1] - 1)
    vals = img[r[:, :, None], c[:, None, :]].astype(np.float64)
    n = len(iy)
    return vals.reshape(n, -1), inside.reshape(n, -1)


def _moment_axis(data: np.ndarray, weight: np.ndarray, background: np.ndarray, u: np.ndarray):
    """Main axis ``(vy, vx)`` of each patch's excess over ``background`` and the
    difference of its variances along and across that axis (pixels²)."""
    uy, ux = np.meshgrid(u, u, indexing="ij")
    uy, ux = uy.ravel(), ux.ravel()
    mass = np.clip(data - background[:, None], 0, None) * weight
    tot = np.maximum(mass.sum(axis=1), 1e-12)
    my = mass @ uy / tot
    mx = mass @ ux / tot
    vyy = mass @ uy**2 / tot - my**2
    vxx = mass @ ux**2 / tot - mx**2
    vxy = mass @ (uy * ux) / tot - my * mx
    angle = 0.5 * np.arctan2(2 * vxy, vyy - vxx)
    return np.cos(angle), np.sin(angle), 2 * np.hypot(0.5 * (vyy - vxx), vxy)


def _linear_misfit(data: np.ndarray, weight: np.ndarray, oy: np.ndarray, ox: np.ndarray,
                   sigma: float, u: np.ndarray) -> np.ndarray:
    """Residual sum of squares of a spot of fixed centre and width (free flux, background)."""
    s = np.full((len(data), 1), sigma)
    ey = _profile(oy[:, None], s, u)[0][:, 0]
    ex = _profile(ox[:, None], s, u)[0][:, 0]
    g = (ey[:, :, None] * ex[:, None, :]).reshape(len(data), -1)
    sw, sg, sgg = weight.sum(1), (weight * g).sum(1), (weight * g * g).sum(1)
    sd, sgd = (weight * data).sum(1), (weight * g * data).sum(1)
    det = np.maximum(sw * sgg - sg**2, 1e-12)
    flux = (sw * sgd - sg * sd) / det
    back = (sd - flux * sg) / np.maximum(sw, 1e-12)
    res = (data - back[:, None] - flux[:, None] * g) * weight
    return np.einsum("nm,nm->n", res, res)


def _own_patches(img: np.ndarray, cy: np.ndarray, cx: np.ndarray, idx: np.ndarray, half: int,
                 tree: cKDTree, origin: tuple[int, int] = (0, 0)):
    """Patches of detections ``idx``: a disk of ``half + 0.5`` pixels, only the pixels
    nearer to that detection than to any other (``tree`` holds all detections).
    Centres are image pixels; ``img`` starts at pixel ``origin``.

    Returns ``(data, weight, n_px)``: (N, L * L) float64 values and weights, (N,) pixel counts.
    """
    iy = np.rint(cy[idx]).astype(np.intp)
    ix = np.rint(cx[idx]).astype(np.intp)
    u = np.arange(-half, half + 1, dtype=np.float64)
    data, inside = _patches(img, iy - origin[0], ix - origin[1], half)
    uy, ux = (g.ravel() for g in np.meshgrid(u, u, indexing="ij"))
    _, nearest = _nearest(tree, np.column_stack([(iy[:, None] + uy).ravel(), (ix[:, None] + ux).ravel()]))
    own = nearest.reshape(len(idx), -1) == idx[:, None]
    weight = (inside & own & ((uy**2 + ux**2) <= (half + 0.5) ** 2)).astype(np.float64)
    return data, weight, weight.sum(axis=1)


def _fit_single(data, weight, n_px, oy, ox, width: float, half: int, tol):
    """One spot of free width (started at ``width``) per patch; ``oy, ox`` its start offsets."""
    u = np.arange(-half, half + 1, dtype=np.float64)
    lo = np.array([-np.inf, 0.1, -half, -half, 0.0])
    hi = np.array([np.inf, half, half, half, np.inf])
    ranked = np.sort(np.where(weight > 0, data, np.inf), axis=1)
    base = np.take_along_axis(ranked, ((n_px.astype(np.intp) - 1) // 2)[:, None], 1)[:, 0]
    flux = np.sum(np.clip(data - base[:, None], 0, None) * weight, axis=1)
    p0 = np.column_stack([base, np.full(len(data), width), oy, ox, flux])
    return _fit_spots(data, weight, p0, u, 1, lo, hi, tol)


def _fit_pair(data, weight, p1, s_ref: float, half: int, tol):
    """Two spots of one width (at least ``_MIN_WIDTH * s_ref``), started on the main
    axis of the patch around the single-spot fit ``p1``."""
    u = np.arange(-half, half + 1, dtype=np.float64)
    vy, vx, elong = _moment_axis(data, weight, p1[:, 0], u)
    a = np.clip(np.sqrt(elong), 0.35, half)  # two spots 2a apart: elongation a²
    p2 = np.column_stack([p1[:, 0], np.full(len(data), s_ref),
                          p1[:, 2] - a * vy, p1[:, 3] - a * vx, 0.5 * p1[:, 4],
                          p1[:, 2] + a * vy, p1[:, 3] + a * vx, 0.5 * p1[:, 4]])
    lo = np.array([-np.inf, _MIN_WIDTH * s_ref] + [-half, -half, 0.0] * 2)
    hi = np.array([np.inf, half] + [half, half, np.inf] * 2)
    return _fit_spots(data, weight, p2, u, 2, lo, hi, tol)


def _misfit(data, weight, n_px, oy, ox, noise, s_ref: float, half: int) -> np.ndarray:
    """Residual of one spot of the reference width, per pixel and noise variance."""
    u = np.arange(-half, half + 1, dtype=np.float64)
    return _linear_misfit(data, weight, oy, ox, s_ref, u) / (np.maximum(n_px - 2, 1) * noise**2)


def _gain(rss1, rss2, noise, n_px) -> np.ndarray:
    """Drop of the residual from one to two spots in units of the noise variance."""
    var = np.maximum(noise**2, rss2 / np.maximum(n_px - 8, 1))
    return (rss1 - rss2) / var


def _calibrate(data, weight, n_px, noise, oy, ox, *, half: int, sigma0: float
               ) -> tuple[float, float, float]:
    """The decomposition's calibration on a sample of isolated detections.

    Returns ``(s_ref, misfit_ref, excess)``: the median fitted width of a single
    spot (pixels), the median misfit of one spot of that width (prescreen
    reference) and the factor by which the two-spot likelihood ratio of
    singles exceeds its chi-square median (at least 1).
    """
    tol = 0.05 * noise**2
    p_ref, _ = _fit_single(data, weight, n_px, oy, ox, sigma0, half, tol)
    s_ref = float(np.median(p_ref[:, 1]))
    misfit_ref = float(np.median(_misfit(data, weight, n_px, oy, ox, noise, s_ref, half)))
    p1, rss1 = _fit_single(data, weight, n_px, oy, ox, s_ref, half, tol)
    _, rss2 = _fit_pair(data, weight, p1, s_ref, half, tol)
    excess = max(1.0, float(np.median(_gain(rss1, rss2, noise, n_px))) / _CHI2_3_MEDIAN)
    return s_ref, misfit_ref, excess


def _testable(img, cy, cx, test, *, half, noise, origin=(0, 0)):
    """Detections to examine with their patches: ``(idx, data, weight, n_px, noise, tree)``."""
    idx = np.flatnonzero(test)
    tree = cKDTree(np.column_stack([cy, cx]))
    data, weight, n_px = _own_patches(img, cy, cx, idx, half, tree, origin)
    enough = n_px >= 12  # more pixels than a two-spot model has parameters
    return idx[enough], data[enough], weight[enough], n_px[enough], noise[idx][enough], tree


def _isolated(tree: cKDTree, cy, cx, idx, half: int) -> np.ndarray:
    """Which detections ``idx`` have no other detection within ``2 half + 1`` pixels."""
    gap, _ = tree.query(np.column_stack([cy[idx], cx[idx]]), k=2)
    return gap[:, 1] > 2 * half + 1


def _calibration_sample(n_alone: int, n_all: int) -> tuple[np.ndarray, bool]:
    """Positions of the calibration sample among the isolated detections (raster
    order), or among all when fewer than 10 are isolated (second value True)."""
    use_all = n_alone < 10
    n = n_all if use_all else n_alone
    return np.linspace(0, n - 1, min(n, _N_CALIBRATE)).astype(np.intp), use_all


def _decompose(img: np.ndarray, cy: np.ndarray, cx: np.ndarray, test: np.ndarray, *,
               half: int, sigma0: float, noise: np.ndarray, snr: float,
               calibration: tuple[float, float, float] | None = None,
               origin: tuple[int, int] = (0, 0)):
    """Split detections that hold two unresolved spots (module notes, step 6).

    ``img`` is the raw image (Y, X), ``cy, cx`` (N,) the sub-pixel centres of all
    detections, ``test`` (N,) which of them to examine, ``noise`` (N,) the local
    background sigma at each. ``calibration`` is ``(s_ref, misfit_ref, excess)``
    (see :func:`_calibrate`); None measures it on this image's isolated
    detections. Centres are in the pixels of a larger image of which ``img``
    starts at pixel ``origin`` (tiles: the fits then round as on the whole
    image), and so are the new spots' centres. Returns ``(owner, y, x, amplitude)``: for every new spot the
    index of the detection it replaces, its centre (pixels, inside ``img``) and
    the height of its Gaussian (as the other detections' ``amplitude``).
    """
    none = (np.zeros(0, np.intp), np.zeros(0), np.zeros(0), np.zeros(0))
    if not test.any():
        return none
    idx, data, weight, n_px, noise, tree = _testable(img, cy, cx, test, half=half, noise=noise,
                                                     origin=origin)
    if len(idx) == 0:
        return none
    iy = np.rint(cy).astype(np.intp)
    ix = np.rint(cx).astype(np.intp)
    oy, ox = cy[idx] - iy[idx], cx[idx] - ix[idx]

    # 1. the single-spot reference: a sample of well-isolated detections
    if calibration is None:
        alone = np.flatnonzero(_isolated(tree, cy, cx, idx, half))
        pos, use_all = _calibration_sample(len(alone), len(idx))
        sample = pos if use_all else alone[pos]
        calibration = _calibrate(data[sample], weight[sample], n_px[sample], noise[sample],
                                 oy[sample], ox[sample], half=half, sigma0=sigma0)
    s_ref, misfit_ref, excess = calibration

    # 2. only a detection that one such spot leaves misfit can be two
    misfit = _misfit(data, weight, n_px, oy, ox, noise, s_ref, half)
    k = np.flatnonzero(misfit >= _PRESCREEN * misfit_ref)
    if len(k) == 0:
        return none

    # 3. one spot of free width against two spots of one width (at least
    # ``_MIN_WIDTH`` of the reference), started on the main axis of the patch
    tol = 0.05 * noise[k] ** 2  # far below the resolution of the decision
    p1, rss1 = _fit_single(data[k], weight[k], n_px[k], oy[k], ox[k], s_ref, half, tol)
    p2, rss2 = _fit_pair(data[k], weight[k], p1, s_ref, half, tol)

    # 4. likelihood ratio in units of the local noise (the larger of the background
    # and the residual variance), calibrated on the isolated sample
    noise, n_px, idx = noise[k], n_px[k], idx[k]
    gain = _gain(rss1, rss2, noise, n_px)
    sig_eff = np.sqrt(s_ref**2 + 1.0 / 12.0)  # the spot's width after pixel integration
    y1, x1 = iy[idx] + p2[:, 2], ix[idx] + p2[:, 3]
    y2, x2 = iy[idx] + p2[:, 5], ix[idx] + p2[:, 6]
    sep = np.hypot(y1 - y2, x1 - x2)
    s2 = p2[:, 1]
    peak = special.erf(0.5 / (_SQRT2 * s2)) ** 2  # pixel value at a pixel-centred spot
    amp1, amp2 = p2[:, 4] * peak, p2[:, 7] * peak
    _, own1 = _nearest(tree, np.column_stack([y1, x1]))
    _, own2 = _nearest(tree, np.column_stack([y2, x2]))
    ny, nx = img.shape
    inside = ((y1 >= origin[0] - 0.5) & (y1 < origin[0] + ny - 0.5) & (x1 >= origin[1] - 0.5)
              & (x1 < origin[1] + nx - 0.5) & (y2 >= origin[0] - 0.5) & (y2 < origin[0] + ny - 0.5)
              & (x2 >= origin[1] - 0.5) & (x2 < origin[1] + nx - 0.5))
    ok = ((gain >= excess * snr**2) & (np.minimum(amp1, amp2) >= snr * noise)
          & (sep >= _MIN_SEPARATION * sig_eff) & (own1 == idx) & (own2 == idx) & inside)
    j = np.flatnonzero(ok)
    if len(j) == 0:
        return none
    height = 1.0 / (2.0 * np.pi * s2[j] ** 2)  # flux to Gaussian height
    return (np.r_[idx[j], idx[j]], np.r_[y1[j], y2[j]], np.r_[x1[j], x2[j]],
            np.r_[p2[j, 4] * height, p2[j, 7] * height])


# ------------------------------------------------------------------ detector
@dataclass(frozen=True)
class _Candidates:
    """Detections of steps 1-5 and what step 6 needs (see :func:`_candidates`)."""

    iy: np.ndarray
    ix: np.ndarray
    dy: np.ndarray
    dx: np.ndarray
    amplitude: np.ndarray
    snr: np.ndarray
    test: np.ndarray  # to examine for unresolved pairs
    noise: np.ndarray  # local sigma of the unsmoothed image
    half: int  # patch half-side of step 6
    sigma: float
    window: int
    resp: np.ndarray
    med: np.ndarray
    sd: np.ndarray
    step: int
    sd_raw: np.ndarray  # ``sd`` before the noise floor
    shift: tuple[int, int]  # anchor of the noise grids (see :func:`_grid_shift`)


def _candidates(img: np.ndarray, ps: float, prm: PunctaParams) -> _Candidates | None:
    """Steps 1-5 of the module notes on a float32 image; None when nothing is found."""
    sigma = prm.sigma_px(ps)
    window = noise_window_px(ps, prm)
    shift = _grid_shift(img.shape, window, prm.origin_px)
    if prm.min_separation_um is None:
        min_dist = max(1, round(sigma))
    else:
        min_dist = max(1, round(prm.min_separation_um / ps))
    ratio = prm.background_ratio

    fine, background = _blur_pair(img, sigma, ratio)
    resp = fine - background
    del fine
    med_g, sd_g, step = _noise_grid(resp, window, shift, exclude_px=_EXCLUDE * sigma)
    if not np.any(sd_g > 0):
        return None  # a flat (or constant-response) image
    sd_raw = sd_g
    sd_g = _noise_floor(sd_g, prm.fixed_noise_floor)
    iy, ix = _maxima(resp, 2 * min_dist + 1)
    base = _sample(med_g, step, iy, ix, shift)
    snr = (resp[iy, ix] - base) / (_sample(sd_g, step, iy, ix, shift)
                                   * _edge_gain(img.shape, sigma, ratio, iy, ix))
    keep = snr >= prm.threshold_snr
    iy, ix, snr, base = iy[keep], ix[keep], snr[keep], base[keep]
    keep = _one_per_plateau(resp, iy, ix, 2 * min_dist + 1)
    iy, ix, snr, base = iy[keep], ix[keep], snr[keep], base[keep]
    if len(iy) == 0:
        return None
    dy, dx = _subpixel(resp, iy, ix, base)
    amplitude = (resp[iy, ix] - base) / _unit_spot_gain(sigma, ratio, 1.0)

    # noise of the unsmoothed image near the detections: for the pair steps and
    # the width measurement of step 1
    unsmoothed = img - background
    radius = 2.5 * sigma + 1.0
    half = int(np.ceil(radius))
    near_y = np.clip(np.r_[iy - half, iy + half, iy - half, iy + half], 0, img.shape[0] - 1)
    near_x = np.clip(np.r_[ix - half, ix - half, ix + half, ix + half], 0, img.shape[1] - 1)
    umed, usd, ustep = _noise_nodes(unsmoothed, window, near_y, near_x, shift)
    n_split = 0
    if prm.split_snr is not None and sigma <= _PIXEL_SPOT:
        owner, py, px = _split_pairs(
            unsmoothed, iy, ix, radius=radius, noise_grid=(umed, usd, ustep), snr=prm.split_snr,
            prominence=prm.split_prominence, shift=shift,
        )
        if len(owner):
            ubase = _sample(umed, ustep, py, px, shift)
            pdy, pdx = _subpixel(unsmoothed, py, px, ubase)
            pamp = (unsmoothed[py, px] - ubase) / _unit_spot_gain(sigma, ratio, 0.0)
            psnr = ((resp[py, px] - _sample(med_g, step, py, px, shift))
                    / (_sample(sd_g, step, py, px, shift) * _edge_gain(img.shape, sigma, ratio, py, px)))
            stay = np.ones(len(iy), bool)
            stay[owner] = False
            iy, ix = np.r_[iy[stay], py], np.r_[ix[stay], px]
            dy, dx = np.r_[dy[stay], pdy], np.r_[dx[stay], pdx]
            amplitude = np.r_[amplitude[stay], pamp]
            snr = np.r_[snr[stay], psnr]
            n_split = len(py)
    test = np.ones(len(iy), bool)
    test[len(iy) - n_split:] = False  # already split on their maxima
    noise = _sample(usd, ustep, iy, ix, shift).astype(np.float64)
    return _Candidates(iy, ix, dy, dx, amplitude, snr, test, noise, half, sigma, window, resp, med_g,
                       sd_g, step, sd_raw, shift)


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
    c = _candidates(img, ps, prm)
    if c is not None and prm.learns_scale():
        scale = _learned_scale(img, c, ps, prm)
        if scale is not None:
            prm = replace(prm, fixed_scale_px=scale)
            c = _candidates(img, ps, prm)
    if c is None:
        return _empty()
    iy, ix, dy, dx, amplitude, snr = c.iy, c.ix, c.dy, c.dx, c.amplitude, c.snr
    if prm.split_snr is not None:
        # pairs too close for two maxima: one- against two-spot fits (step 6)
        oy0, ox0 = prm.origin_px
        owner2, qy, qx, qamp = _decompose(img, (iy + oy0) + dy, (ix + ox0) + dx, c.test,
                                          half=c.half, sigma0=c.sigma, noise=c.noise,
                                          snr=prm.split_snr, calibration=prm.split_calibration(),
                                          origin=(oy0, ox0))
        if len(owner2):
            qy, qx = qy - oy0, qx - ox0
            ry, rx = np.rint(qy).astype(np.intp), np.rint(qx).astype(np.intp)
            ry = np.clip(ry, 0, img.shape[0] - 1)
            rx = np.clip(rx, 0, img.shape[1] - 1)
            qsnr = ((c.resp[ry, rx] - _sample(c.med, c.step, ry, rx, c.shift))
                    / (_sample(c.sd, c.step, ry, rx, c.shift)
                       * _edge_gain(img.shape, c.sigma, prm.background_ratio, ry, rx)))
            stay = np.ones(len(iy), bool)
            stay[owner2] = False
            iy, ix = np.r_[iy[stay], ry], np.r_[ix[stay], rx]
            dy, dx = np.r_[dy[stay], qy - ry], np.r_[dx[stay], qx - rx]
            amplitude = np.r_[amplitude[stay], qamp]
            snr = np.r_[snr[stay], qsnr]

    if ref is not None and ref.shape[0] > 0:
        granule = _granules(ref, iy, ix, c.sigma, prm.background_ratio, c.window,
                            prm.autofluorescence_snr, c.shift)
        keep = ~granule
        iy, ix, dy, dx = iy[keep], ix[keep], dy[keep], dx[keep]
        amplitude, snr = amplitude[keep], snr[keep]
    if len(iy) == 0:
        return _empty()
    y = iy + dy
    x = ix + dx
    out = pd.DataFrame({
        "y_px": y, "x_px": x, "y_um": y * ps, "x_um": x * ps,
        "amplitude": np.asarray(amplitude, np.float64), "snr": np.asarray(snr, np.float64),
    })
    return out.sort_values(["y_px", "x_px"], kind="stable").reset_index(drop=True)


def isolated_spots(
    syn,
    *,
    pixel_size_um: float,
    params: PunctaParams | None = None,
    core: tuple[int, int, int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
    image_shape: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """What one window contributes to the image-wide calibration of :func:`detect_puncta`.

    For tiled analysis: run on every window of an image (cores partitioning
    it), :func:`image_wide_calibration` of the results gives the values a
    whole-image :func:`detect_puncta` measures itself: the noise floor of the
    response and the calibration of the unresolved-pair test (module notes,
    step 6). Exact when each window holds its core's detections and noise
    windows as the whole image does (an overlap beyond the filters' and the
    patches' reach; the noise grid is anchored on the whole image's through
    ``origin``, so any window origin will do).

    Parameters
    ----------
    syn : array-like, shape (Y, X)
        The window of the synaptic-marker plane.
    pixel_size_um : float
        Lateral pixel size in µm.
    params : PunctaParams, optional
        Detection parameters.
    core : (y0, y1, x0, x1), optional
        The window's core in image pixels (half-open); default the whole window.
    origin : (int, int)
        Image pixel of the window's first pixel.
    image_shape : (int, int), optional
        Size of the whole image (default: the window's).

    Returns
    -------
    dict
        ``y_px``, ``x_px`` (N,) image pixels of the core's isolated detections
        in raster order, their sub-pixel offsets ``oy``, ``ox`` and local
        ``noise`` (N,) float64, and ``weight`` (N, ceil(L * L / 8)) uint8, the
        bit-packed mask of each patch's pixels the fits use (patches of side
        ``L = 2 half + 1``; their values are read again, for the few
        calibration spots only, by :func:`image_wide_calibration`: ~50 bytes
        per spot); ``weight_wide`` the same for the disks of half-side
        ``half_wide`` on which the spot width is measured (module notes,
        step 1); ``n_testable`` (detections the test examines in the core),
        ``noise_sd`` (the response's noise sigma at the noise windows centred
        in the core, before the floor), ``half`` (patch half-side) and
        ``image_shape``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 3, (64, 64)).astype(np.float32)
    >>> part = isolated_spots(img, pixel_size_um=0.2)
    >>> part["noise_sd"].size > 0, part["y_px"].size
    (True, 0)
    """
    prm = PunctaParams() if params is None else params
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ValueError(f"pixel_size_um must be a positive number of µm; got {pixel_size_um!r}")
    img = _as_2d_float(syn, "syn")
    oy0, ox0 = (int(v) for v in origin)
    prm = replace(prm, origin_px=(oy0, ox0))
    return _isolated_part(img, _candidates(img, float(pixel_size_um), prm), float(pixel_size_um), prm,
                          core=core, image_shape=image_shape)


def _isolated_part(img: np.ndarray, c: _Candidates | None, ps: float, prm: PunctaParams, *,
                   core: tuple[int, int, int, int] | None = None,
                   image_shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """:func:`isolated_spots` of a float32 window and its candidates ``c``
    (the window starts at image pixel ``prm.origin_px``)."""
    oy0, ox0 = prm.origin_px
    h, w = image_shape if image_shape is not None else (oy0 + img.shape[0], ox0 + img.shape[1])
    cy0, cy1, cx0, cx1 = core if core is not None else (oy0, oy0 + img.shape[0], ox0, ox0 + img.shape[1])
    sigma = prm.sigma_px(ps)
    half = int(np.ceil(2.5 * sigma + 1.0))
    size = (2 * half + 1) ** 2
    half_w = _width_half(ps, prm)
    out: dict[str, Any] = {
        "y_px": np.zeros(0, np.int64), "x_px": np.zeros(0, np.int64),
        "weight": np.zeros((0, -(-size // 8)), np.uint8),
        "weight_wide": np.zeros((0, -(-((2 * half_w + 1) ** 2) // 8)), np.uint8),
        "oy": np.zeros(0), "ox": np.zeros(0), "noise": np.zeros(0), "n_testable": 0,
        "noise_sd": np.zeros(0, np.float32), "half": half, "half_wide": half_w,
        "image_shape": (int(h), int(w)),
    }

    def in_core(gy, gx):
        gy = np.clip(gy, 0, h - 1)
        gx = np.clip(gx, 0, w - 1)
        return (gy >= cy0) & (gy < cy1) & (gx >= cx0) & (gx < cx1)

    if c is not None:
        sd_g, step = c.sd_raw, c.step
    else:  # nothing detected: the noise windows still count
        fine, background = _blur_pair(img, sigma, prm.background_ratio)
        window = noise_window_px(ps, prm)
        shift = _grid_shift(img.shape, window, (oy0, ox0))
        _, sd_g, step = _noise_grid(fine - background, window, shift, exclude_px=_EXCLUDE * sigma)
        del fine, background
    ay, ax = c.shift if c is not None else shift
    ny, nx = sd_g.shape
    gy, gx = np.meshgrid(oy0 - ay + step * np.arange(ny), ox0 - ax + step * np.arange(nx), indexing="ij")
    out["noise_sd"] = sd_g[in_core(gy, gx)]
    if c is None or not c.test.any() or (prm.split_snr is None and not prm.learns_scale()):
        return out
    cy, cx = (c.iy + oy0) + c.dy, (c.ix + ox0) + c.dx  # image pixels, as on the whole image
    idx, _, weight, _, noise, tree = _testable(img, cy, cx, c.test, half=c.half, noise=c.noise,
                                               origin=(oy0, ox0))
    mine = in_core(c.iy[idx] + oy0, c.ix[idx] + ox0)
    alone = mine & _isolated(tree, cy, cx, idx, c.half)
    j = idx[alone]
    gy, gx = c.iy[j].astype(np.int64) + oy0, c.ix[j].astype(np.int64) + ox0
    out.update(
        y_px=gy, x_px=gx, weight=np.packbits(weight[alone] > 0, axis=1),
        oy=cy[j] - gy, ox=cx[j] - gx, noise=noise[alone],
        n_testable=int(np.count_nonzero(mine)),
    )
    if prm.learns_scale() and len(j):
        _, wide, _ = _own_patches(img, cy, cx, j, half_w, tree, (oy0, ox0))
        out["weight_wide"] = np.packbits(wide > 0, axis=1)
    return out


def image_wide_calibration(parts, *, pixel_size_um: float, params: PunctaParams | None = None,
                           read: Callable[[int, int, int, int], Any] | None = None) -> dict[str, float]:
    """The image-wide calibration from the :func:`isolated_spots` of all windows.

    Returns the :class:`PunctaParams` overrides ``fixed_noise_floor`` and, when
    at least 10 detections are isolated, ``fixed_scale_px`` (when the scale is
    learned, module notes step 1: the windows are then read again, one at a
    time, and gathered at the learned scale), ``fixed_spot_sigma_px``,
    ``fixed_misfit`` and ``fixed_split_excess``: the values a whole-image
    :func:`detect_puncta` measures (with fewer isolated spots it calibrates on
    all detections, whose patches are not gathered; each window then keeps
    its own calibration). The calibration spots are the whole image's (at
    most 60, evenly spaced in raster order); only their patches are read.

    Parameters
    ----------
    parts : iterable of dict
        :func:`isolated_spots` of windows whose cores partition the image.
    pixel_size_um : float
        Lateral pixel size in µm.
    params : PunctaParams, optional
        Detection parameters.
    read : callable, optional
        ``read(y0, y1, x0, x1)`` returns that region (half-open, image pixels)
        of the synaptic-marker plane the windows were cut from. Required for
        the scale and the pair calibration.

    Raises
    ------
    ValueError
        When the pair calibration needs patches and ``read`` is missing.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100, 3, (64, 64)).astype(np.float32)
    >>> sorted(image_wide_calibration([isolated_spots(img, pixel_size_um=0.2)], pixel_size_um=0.2))
    ['fixed_noise_floor']
    """
    prm = PunctaParams() if params is None else params
    parts = list(parts)
    ps = float(pixel_size_um)
    if prm.learns_scale() and sum(len(p["y_px"]) for p in parts) >= _MIN_ISOLATED:
        if read is None:
            raise ValueError("image_wide_calibration needs read(y0, y1, x0, x1) to read the calibration patches")
        scale = _scale_from_parts(parts, ps, prm, read)
        if scale is not None:
            # the spots are wider than the optics' spot: gather again at their width
            learned = replace(prm, fixed_scale_px=scale)
            again = _gather(read, tuple(parts[0]["image_shape"]), ps, learned)
            return {**image_wide_calibration(again, pixel_size_um=ps, params=learned, read=read),
                    "fixed_scale_px": scale}
        # the optics' scale stands: the tiles must not measure it again
        return {**image_wide_calibration(parts, pixel_size_um=ps,
                                         params=replace(prm, fixed_scale_px=prm.sigma_px(ps)), read=read),
                "fixed_scale_px": prm.sigma_px(ps)}
    out: dict[str, float] = {}
    sd = np.concatenate([p["noise_sd"] for p in parts]) if parts else np.zeros(0, np.float32)
    if np.any(sd > 0):
        out["fixed_noise_floor"] = _floor_of(sd)
    n_alone = sum(len(p["y_px"]) for p in parts)
    if prm.split_snr is None or n_alone < _MIN_ISOLATED:
        return out
    if read is None:
        raise ValueError("image_wide_calibration needs read(y0, y1, x0, x1) to read the calibration patches")
    cat = {key: np.concatenate([p[key] for p in parts])
           for key in ("y_px", "x_px", "weight", "oy", "ox", "noise")}
    order = np.lexsort((cat["x_px"], cat["y_px"]))  # raster order, as on the whole image
    pos, _ = _calibration_sample(n_alone, sum(p["n_testable"] for p in parts))
    sample = order[pos]
    half = int(parts[0]["half"])
    size = (2 * half + 1) ** 2
    weight = np.unpackbits(cat["weight"][sample], axis=1, count=size).astype(np.float64)
    data = _read_patches(read, cat["y_px"][sample], cat["x_px"][sample], half,
                         tuple(parts[0]["image_shape"]))
    s_ref, misfit, excess = _calibrate(
        data, weight, weight.sum(axis=1), cat["noise"][sample], cat["oy"][sample], cat["ox"][sample],
        half=half, sigma0=prm.sigma_px(ps))
    out.update(fixed_spot_sigma_px=s_ref, fixed_misfit=misfit, fixed_split_excess=excess)
    return out


def _learned_scale(img: np.ndarray, c: _Candidates, ps: float, prm: PunctaParams) -> float | None:
    """The scale learned on this image (pixels) when it differs from the optics',
    as :func:`image_wide_calibration` learns it window by window."""
    part = _isolated_part(img, c, ps, prm)
    if len(part["y_px"]) < _MIN_ISOLATED:
        return None
    oy0, ox0 = prm.origin_px

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        rows = np.clip(np.arange(y0, y1) - oy0, 0, img.shape[0] - 1)
        cols = np.clip(np.arange(x0, x1) - ox0, 0, img.shape[1] - 1)
        return img[np.ix_(rows, cols)]

    return _scale_from_parts([part], ps, prm, read)


def _width_half(ps: float, prm: PunctaParams) -> int:
    """Half-side (pixels) of the patches on which the spot width is measured:
    three of the largest spot sigmas (``max_spot_sigma_um``) and a pixel."""
    return int(np.ceil(3.0 * max(prm.max_spot_sigma_um / ps, prm.sigma_px(ps)) + 1.0))


def _scale_from_parts(parts: list[dict[str, Any]], ps: float, prm: PunctaParams,
                      read: Callable[[int, int, int, int], Any]) -> float | None:
    """The learned detection scale (pixels) from :func:`isolated_spots` at the optics'
    scale, or None when the spots are not clearly wider (module notes, step 1)."""
    cat = {key: np.concatenate([p[key] for p in parts])
           for key in ("y_px", "x_px", "weight_wide", "oy", "ox", "noise")}
    n_alone = len(cat["y_px"])
    order = np.lexsort((cat["x_px"], cat["y_px"]))  # raster order, as on the whole image
    pos, _ = _calibration_sample(n_alone, n_alone)
    sample = order[pos]
    half_w = int(parts[0]["half_wide"])
    weight = np.unpackbits(cat["weight_wide"][sample], axis=1,
                           count=(2 * half_w + 1) ** 2).astype(np.float64)
    data = _read_patches(read, cat["y_px"][sample], cat["x_px"][sample], half_w,
                         tuple(parts[0]["image_shape"]))
    noise = cat["noise"][sample]
    sigma0 = prm.sigma_px(ps)
    p, _ = _fit_single(data, weight, weight.sum(axis=1), cat["oy"][sample], cat["ox"][sample],
                       sigma0, half_w, 0.05 * noise**2)
    width = min(float(np.median(p[:, 1])), prm.max_spot_sigma_um / ps)
    return width if width > _WIDER * sigma0 else None


def _gather(read: Callable[[int, int, int, int], Any], shape: tuple[int, int], ps: float,
            prm: PunctaParams) -> list[dict[str, Any]]:
    """:func:`isolated_spots` of windows read one at a time, cores partitioning the image."""
    sigma = prm.sigma_px(ps)
    window = noise_window_px(ps, prm)
    half = int(np.ceil(2.5 * sigma + 1.0))
    margin = (2 * window + _filter_reach(sigma, prm.background_ratio) + int(np.ceil(_EXCLUDE * sigma))
              + 4 * half + 8)
    core = max(512, 2 * margin)
    h, w = shape
    parts = []
    for y0 in range(0, h, core):
        for x0 in range(0, w, core):
            wy0, wx0 = max(0, y0 - margin), max(0, x0 - margin)
            wy1, wx1 = min(h, y0 + core + margin), min(w, x0 + core + margin)
            parts.append(isolated_spots(read(wy0, wy1, wx0, wx1), pixel_size_um=ps, params=prm,
                                        core=(y0, min(h, y0 + core), x0, min(w, x0 + core)),
                                        origin=(wy0, wx0), image_shape=shape))
    return parts


def _read_patches(read: Callable[[int, int, int, int], Any], gy: np.ndarray, gx: np.ndarray,
                  half: int, shape: tuple[int, int]) -> np.ndarray:
    """(N, L * L) float64 patches around image pixels ``(gy, gx)``, as :func:`_patches`
    cuts them from the whole image (edge pixels repeated outside it)."""
    h, w = shape
    rows = []
    for y, x in zip(gy.tolist(), gx.tolist(), strict=True):
        y0, y1 = max(0, y - half), min(h, y + half + 1)
        x0, x1 = max(0, x - half), min(w, x + half + 1)
        region = _as_2d_float(read(y0, y1, x0, x1), "patch")
        if region.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"read({y0}, {y1}, {x0}, {x1}) returned shape {region.shape}")
        data, _ = _patches(region, np.array([y - y0]), np.array([x - x0]), half)
        rows.append(data[0])
    return np.array(rows, dtype=np.float64).reshape(len(rows), -1)


def _unit_spot_gain(sigma_px: float, ratio: float, inner: float) -> float:
    """Filter response at the centre of a pixel-centred Gaussian spot of height 1.

    ``inner`` scales the smoothing of the first term (1: the DoG, 0: the
    unsmoothed image minus its background).
    """
    h = int(np.ceil(5 * ratio * sigma_px)) + 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    spot = np.exp(-(yy**2 + xx**2) / (2 * sigma_px**2)).astype(np.float32)
    fine, coarse = _blur_pair(spot, sigma_px, ratio)
    top = fine if inner else spot
    return float(top[h, h] - coarse[h, h])
