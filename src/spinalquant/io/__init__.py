"""Reading and writing image files — the only code in spinalquant that touches them.

``load`` turns a file into a :class:`~spinalquant.stack.Stack`; ``save_stack`` and
``save_labels`` write OME-TIFF / ImageJ TIFF.
"""

from __future__ import annotations

from ._write import load_labels, save_labels, save_stack

__all__ = ["load_labels", "save_labels", "save_stack"]
