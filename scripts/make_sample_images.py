"""Regenerate the bundled sample images in ``sample_images/`` from the phantoms.

Usage::

    python scripts/make_sample_images.py [--out sample_images]

Writes, for every sample, the image, its ground truth as ``<stem>.truth/<kind>.csv``
(+ ``labels.npz`` with the truth label images) and, for the ImageJ cord sample,
a ventral-horn ``<stem>.roi`` beside it. Output is identical on every run
(fixed seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import roifile

from spinalquant.io import save_stack
from spinalquant.synthetic import Phantom, make_cord_section, make_muscle_section

#: (file name, writer format, generator, arguments) of every sample.
SAMPLES: tuple[tuple[str, str, object, dict], ...] = (
    (
        "cord_L4_01.ome.tif", "ome", make_cord_section,
        dict(seed=401, shape=(512, 512), pixel_size_um=0.5, n_z=2, z_step_um=1.5,
             n_gfp_cells=18, n_motor_neurons=4, n_small_chat=7, puncta_per_neuron=30,
             n_granules=10),
    ),
    (
        "cord_L5_02.tif", "imagej", make_cord_section,
        dict(seed=502, shape=(512, 512), pixel_size_um=0.62, n_z=1,
             n_gfp_cells=24, n_motor_neurons=6, n_small_chat=10, puncta_per_neuron=25,
             n_granules=14, with_roi=True,
             channel_names=("GFAP", "EGFP", "ChAT", "Synaptophysin", "DAPI")),
    ),
    (
        "ta_laminin_01.ome.tif", "ome", make_muscle_section,
        dict(seed=11, shape=(768, 768), pixel_size_um=0.65, stain="laminin"),
    ),
    (
        "ta_he_01.tif", "imagej", make_muscle_section,
        dict(seed=12, shape=(640, 640), pixel_size_um=0.9, stain="he"),
    ),
)


def stem_of(name: str) -> str:
    """File name without its whole image extension (``a.ome.tif`` -> ``a``)."""
    for ext in (".ome.tif", ".ome.tiff", ".tif", ".tiff"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def write_truth(phantom: Phantom, folder: Path) -> None:
    """Truth tables as CSV and label images as one compressed ``labels.npz``."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, table in phantom.truth.items():
        table.to_csv(folder / f"{kind}.csv", index=False, float_format="%.4f")
    np.savez_compressed(folder / "labels.npz", **phantom.labels)


def write_roi(polygon_yx: np.ndarray, path: Path) -> None:
    """An ImageJ polygon ROI from (y, x) pixel vertices."""
    roi = roifile.ImagejRoi.frompoints(polygon_yx[:, ::-1].astype(np.float32), name="ventral horn")
    roi.roitype = roifile.ROI_TYPE.POLYGON
    roi.tofile(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "sample_images")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, fmt, make, kwargs in SAMPLES:
        phantom = make(**kwargs)  # type: ignore[operator]
        save_stack(phantom.stack, out / name, format=fmt, compression="zlib")
        stem = stem_of(name)
        write_truth(phantom, out / f"{stem}.truth")
        if phantom.roi is not None:
            write_roi(phantom.roi, out / f"{stem}.roi")
        print(f"wrote {out / name}  {phantom.stack.data.shape}  "
              f"{phantom.stack.pixel_size_um[1]} µm/px")


if __name__ == "__main__":
    main()
