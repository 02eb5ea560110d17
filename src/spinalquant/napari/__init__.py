"""napari plugin: open images and results folders, analyse, review and save.

The manifest is ``napari.yaml`` beside this file (npe2). Readers and sample data
live in ``_reader.py`` / ``_sample_data.py`` (no Qt), the dock widget in
``_widget.py``; the review logic it calls is :mod:`spinalquant.review`.
Importing this package imports neither napari nor Qt.
"""

from __future__ import annotations

__all__: list[str] = []
