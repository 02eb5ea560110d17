"""Every example in the public docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import spinalquant

# the napari plugin needs a Qt application; its behaviour is tested in test_napari.py
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(spinalquant.__path__, "spinalquant.")
    if not m.name.startswith("spinalquant.napari")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
