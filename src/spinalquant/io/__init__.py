"""Reading and writing image files — the only code in spinalquant that touches them.

:func:`load` turns a file into a :class:`~spinalquant.stack.Stack` (data
``(C, Z, Y, X)``, channel names, pixel size in µm); :func:`save_stack` and
:func:`save_labels` write OME-TIFF / ImageJ TIFF; :func:`check_content` refuses
pixel data that cannot be analysed.
"""

from __future__ import annotations

from ._load import SUPPORTED_EXTENSIONS, check_content, image_stem, is_supported, load
from ._write import load_labels, save_labels, save_stack

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "check_content",
    "image_stem",
    "is_supported",
    "load",
    "load_labels",
    "save_labels",
    "save_stack",
]
