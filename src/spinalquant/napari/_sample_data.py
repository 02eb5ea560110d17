"""Sample data: the images bundled in the repository's ``sample_images/`` folder.

When the package is installed without the repository (a wheel), the samples are
rendered from the same synthetic phantoms (:mod:`spinalquant.synthetic`) instead,
so the menu entries always work.
"""

from __future__ import annotations

from pathlib import Path

from ._layers import LayerData, stack_layers

#: Sample file names, as in ``sample_images/``.
SAMPLES = {
    "cord_L4": "cord_L4_01.ome.tif",
    "cord_L5_roi": "cord_L5_02.tif",
    "ta_laminin": "ta_laminin_01.ome.tif",
    "ta_he": "ta_he_01.tif",
}


def sample_dir() -> Path:
    """The repository's ``sample_images`` folder (may not exist in a wheel install)."""
    return Path(__file__).resolve().parents[3] / "sample_images"


def _open(key: str) -> list[LayerData]:
    from ._reader import read_image

    f = sample_dir() / SAMPLES[key]
    if f.is_file():
        return read_image(f)
    from .. import synthetic

    if key.startswith("cord"):
        ph = synthetic.make_cord_section(seed=1 if key == "cord_L4" else 2, shape=(512, 512))
    else:
        ph = synthetic.make_muscle_section(seed=3, shape=(768, 768),
                                           stain="he" if key == "ta_he" else "laminin")
    return stack_layers(ph.stack, source=f"sample:{key}")


def cord_l4() -> list[LayerData]:
    """Lumbar cord section (DAPI, EGFP, GFAP, ChAT, Synaptophysin; 2-plane OME-TIFF)."""
    return _open("cord_L4")


def cord_l5_roi() -> list[LayerData]:
    """Lumbar cord section with a ventral-horn ROI (ImageJ TIFF + .roi)."""
    return _open("cord_L5_roi")


def ta_laminin() -> list[LayerData]:
    """Tibialis anterior cross-section, laminin + DAPI."""
    return _open("ta_laminin")


def ta_he() -> list[LayerData]:
    """Tibialis anterior cross-section, H&E brightfield (RGB)."""
    return _open("ta_he")
