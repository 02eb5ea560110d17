"""A whole synthetic study on disk: phantom images of several animals per group.

:func:`make_study` writes cord (and muscle) OME-TIFFs for every animal of every
treatment group plus the ``samples.csv`` sheet that ``spinalquant stats``
reads, with a known treatment effect — so the path from raw files to group
statistics can be tested end to end against a known answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_GROUPS", "Study", "make_study"]

#: Treatment response of each group: 0 = untreated (full disease effect), 1 = fully rescued.
DEFAULT_GROUPS: dict[str, float] = {"vehicle": 0.0, "MSC": 0.5, "Muse": 1.0}


@dataclass(frozen=True, eq=False)
class Study:
    """What :func:`make_study` wrote.

    Attributes
    ----------
    folder : Path
        Folder of the images: ``<animal>_L4_s<k>.ome.tif`` (cord) and
        ``<animal>_TA_s<k>.ome.tif`` (muscle).
    samples_csv : Path
        The sample sheet (``image``, ``animal``, ``group``, ``tissue``).
    samples : DataFrame
        Its content.
    truth : DataFrame
        One row per image: the phantom's true figures (``n_motor_neurons``,
        ``puncta_per_neuron``, ``n_gfp_cells``, ``mean_min_feret_um`` ...).
    """

    folder: Path
    samples_csv: Path
    samples: pd.DataFrame
    truth: pd.DataFrame


def _cord_phantom(rng: np.random.Generator, *, tries: int = 8, **kwargs):
    """A cord phantom; a random layout that cannot place every cell is redrawn."""
    from .synthetic import make_cord_section

    for _ in range(tries):
        img_seed = int(rng.integers(2**31))
        try:
            return img_seed, make_cord_section(seed=img_seed, **kwargs)
        except ValueError as exc:
            if "cannot fit" not in str(exc):
                raise
            last = exc
    raise ValueError(
        f"{last}: even after {tries} layouts; use a larger shape or pixel_size_um, "
        "or fewer motor neurons"
    )


def make_study(
    folder: str | Path,
    *,
    groups: Mapping[str, float] | None = None,
    animals_per_group: int = 4,
    sections_per_animal: int = 2,
    muscle_sections_per_animal: int = 1,
    effect: float | None = 0.4,
    seed: int = 0,
    shape: tuple[int, int] = (384, 384),
    pixel_size_um: float = 0.7,
    muscle_pixel_size_um: float = 1.0,
    n_motor_neurons: int = 10,
    puncta_per_neuron: int = 25,
    n_gfp_cells: int = 15,
    mean_min_feret_um: float = 40.0,
    animal_cv: float = 0.08,
    n_z: int = 3,
) -> Study:
    """Write a synthetic multi-group study (OME-TIFFs + ``samples.csv``).

    Each group has a treatment response ``level`` (``groups[name]``, 0–1).
    With ``effect = e``, a group's expected motor-neuron count and perisomatic
    puncta per neuron are ``(1 - e (1 - level))`` times those of a fully
    rescued group (level 1), and its fibers' mean min Feret diameter is
    ``(1 - e/2 (1 - level))`` times — so with the defaults the vehicle group
    has 40 % fewer motor neurons than Muse. ``effect=None`` (or 0) gives every
    group the same distribution: no difference to find.

    Animals vary biologically around their group (log-normal, coefficient of
    variation ``animal_cv``); sections of an animal vary by ±1 motor neuron.
    GFP+ donor cells are present in every group (``n_gfp_cells``).

    Parameters
    ----------
    folder : path
        Created if needed; receives the images, ``samples.csv`` and
        ``study_truth.csv``.
    groups : dict of str -> float, optional
        Group name -> treatment response level; default :data:`DEFAULT_GROUPS`.
    animals_per_group, sections_per_animal, muscle_sections_per_animal : int
        Study size (``muscle_sections_per_animal=0`` for cord only).
    effect : float or None
        Fractional deficit of an untreated group (0 <= effect < 1).
    seed : int
        Everything random derives from ``np.random.default_rng(seed)``.
    shape : (int, int)
        Image size in pixels.
    pixel_size_um, muscle_pixel_size_um : float
        Pixel sizes of cord and muscle images (µm).
    n_motor_neurons, puncta_per_neuron, n_gfp_cells, mean_min_feret_um
        Expected values in a fully rescued (level 1) animal.
    animal_cv : float
        Between-animal coefficient of variation.
    n_z : int
        Optical sections per cord image.

    Returns
    -------
    Study

    Examples
    --------
    >>> import tempfile
    >>> s = make_study(tempfile.mkdtemp(), groups={"vehicle": 0, "Muse": 1}, animals_per_group=1,
    ...                sections_per_animal=1, muscle_sections_per_animal=0, shape=(192, 192),
    ...                n_motor_neurons=2, n_gfp_cells=3)
    >>> s.samples[["animal", "group"]].values.tolist()
    [['m01', 'vehicle'], ['m02', 'Muse']]
    """
    from .io import save_stack
    from .synthetic import make_muscle_section

    groups = dict(DEFAULT_GROUPS if groups is None else groups)
    if not groups:
        raise ValueError("groups must name at least one group")
    for g, lvl in groups.items():
        if not 0 <= float(lvl) <= 1:
            raise ValueError(f"group '{g}': treatment level must be in [0, 1], got {lvl}")
    e = 0.0 if effect is None else float(effect)
    if not 0 <= e < 1:
        raise ValueError(f"effect must be in [0, 1) or None, got {effect}")
    if animals_per_group < 1 or sections_per_animal < 0 or muscle_sections_per_animal < 0:
        raise ValueError("animals_per_group must be >= 1 and section counts >= 0")
    if sections_per_animal + muscle_sections_per_animal == 0:
        raise ValueError(
            "no images requested: sections_per_animal and muscle_sections_per_animal are 0"
        )

    root = Path(folder)
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    k = 0
    for group, level in groups.items():
        scale = 1.0 - e * (1.0 - float(level))
        fiber_scale = 1.0 - 0.5 * e * (1.0 - float(level))
        for _ in range(animals_per_group):
            k += 1
            animal = f"m{k:02d}"
            bio = float(rng.lognormal(0.0, animal_cv))
            mn_animal = n_motor_neurons * scale * bio
            for s in range(1, sections_per_animal + 1):
                n_mn = max(round(mn_animal + rng.integers(-1, 2)), 0)
                n_pun = max(round(puncta_per_neuron * scale * bio), 0)
                img_seed, ph = _cord_phantom(
                    rng,
                    shape=shape,
                    pixel_size_um=pixel_size_um,
                    n_z=n_z,
                    n_motor_neurons=n_mn,
                    puncta_per_neuron=n_pun,
                    n_gfp_cells=n_gfp_cells,
                )
                name = f"{animal}_L4_s{s}.ome.tif"
                root.mkdir(parents=True, exist_ok=True)
                save_stack(ph.stack, root / name, format="ome")
                rows.append({"image": name, "animal": animal, "group": group, "tissue": "cord"})
                gfp = ph.truth["gfp_cells"]
                truth.append(
                    {
                        "image": name,
                        "animal": animal,
                        "group": group,
                        "tissue": "cord",
                        "seed": img_seed,
                        "n_motor_neurons": len(ph.truth["motor_neurons"]),
                        "puncta_per_neuron": n_pun,
                        "n_gfp_cells": len(gfp),
                        "pct_gfp_gfap": (
                            100.0 * float(gfp["gfap_positive"].mean()) if len(gfp) else np.nan
                        ),
                    }
                )
            for s in range(1, muscle_sections_per_animal + 1):
                img_seed = int(rng.integers(2**31))
                feret = mean_min_feret_um * fiber_scale * bio**0.5
                ph = make_muscle_section(
                    seed=img_seed,
                    shape=shape,
                    pixel_size_um=muscle_pixel_size_um,
                    mean_min_feret_um=feret,
                )
                name = f"{animal}_TA_s{s}.ome.tif"
                root.mkdir(parents=True, exist_ok=True)
                save_stack(ph.stack, root / name, format="ome")
                rows.append({"image": name, "animal": animal, "group": group, "tissue": "muscle"})
                fib = ph.truth["fibers"]
                inner = fib[~fib["touches_border"]] if "touches_border" in fib else fib
                truth.append(
                    {
                        "image": name,
                        "animal": animal,
                        "group": group,
                        "tissue": "muscle",
                        "seed": img_seed,
                        "n_fibers": len(inner),
                        "mean_min_feret_um": float(inner["min_feret_um"].mean()),
                        "fiber_csa_mean_um2": float(inner["area_um2"].mean()),
                    }
                )
    samples = pd.DataFrame(rows, columns=["image", "animal", "group", "tissue"])
    root.mkdir(parents=True, exist_ok=True)
    csv = root / "samples.csv"
    samples.to_csv(csv, index=False, lineterminator="\n")
    truth_df = pd.DataFrame(truth)
    truth_df.to_csv(root / "study_truth.csv", index=False, lineterminator="\n")
    return Study(root, csv, samples, truth_df)
