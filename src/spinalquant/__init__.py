"""spinalquant — turn confocal micrographs from ALS cell-therapy studies into numbers.

Load a file into a :class:`Stack` (channels by name, pixel sizes in µm), segment
GFP+ donor cells, GFAP+ astrocytes, ChAT+ motor neurons, synaptic puncta and
muscle fibers, and measure them in physical units::

    import spinalquant as sq
    stack = sq.load("L4_section.ome.tif")
    results = sq.analyze(stack)
    results.summary          # one row of per-image figures
    results.tables["motor_neurons"]

The command line (``spinalquant run FOLDER --out RESULTS``) and the napari
plugin are thin shells over the same functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, load_config
from .errors import (
    ConfigError,
    ImageContentError,
    LoadError,
    MissingChannelError,
    PixelSizeError,
    SpinalquantError,
)
from .io import load, load_labels, save_labels, save_stack
from .pipeline import Results, analyze, detect_section
from .stack import Stack

__all__ = [
    "Config",
    "ConfigError",
    "ImageContentError",
    "LoadError",
    "MissingChannelError",
    "PixelSizeError",
    "Results",
    "SpinalquantError",
    "Stack",
    "__version__",
    "analyze",
    "detect_section",
    "load",
    "load_config",
    "load_labels",
    "save_labels",
    "save_stack",
]
