"""Execute every notebook in notebooks/ from a scratch working folder; any cell error fails.

The notebooks find the repository (sample images) through SPINALQUANT_ROOT, so they run
the same here, in Jupyter from notebooks/, or from a fresh clone.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 180  # per cell; each notebook takes well under a minute on a free core

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nbclient") is None,
    reason="nbclient/nbformat not installed (pip install nbmake)",
)


def test_notebooks_are_present_and_stripped():
    import nbformat

    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_quickstart.ipynb", "02_accuracy.ipynb", "03_study.ipynb"]
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        nbformat.validate(nb)
        dirty = [
            i
            for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.outputs or c.execution_count)
        ]
        assert not dirty, (
            f"{p.name}: cells {dirty} have outputs; run python scripts/strip_notebooks.py"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("SPINALQUANT_ROOT", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    # the study notebook must have produced its figures
    if path.stem == "03_study":
        assert any(
            "image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])
        )


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
