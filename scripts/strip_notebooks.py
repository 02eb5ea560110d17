"""Remove outputs and execution counts from notebooks before committing them.

Usage::

    python scripts/strip_notebooks.py                 # strip notebooks/*.ipynb in place
    python scripts/strip_notebooks.py a.ipynb b.ipynb # strip these
    python scripts/strip_notebooks.py --check         # exit 1 if any notebook has outputs

Notebooks are kept in git without outputs (small diffs, no stale figures);
the test suite executes them (tests/test_notebooks.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def strip(nb: nbformat.NotebookNode) -> bool:
    """Clear outputs, execution counts and volatile metadata in place; True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            if cell.get("outputs"):
                cell["outputs"] = []
                changed = True
            if cell.get("execution_count") is not None:
                cell["execution_count"] = None
                changed = True
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            if key in cell.get("metadata", {}):
                del cell["metadata"][key]
                changed = True
    for key in ("widgets", "varInspector", "toc"):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only report; exit 1 if any has outputs"
    )
    args = parser.parse_args(argv)
    paths = args.paths or sorted((REPO / "notebooks").glob("*.ipynb"))
    dirty = []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        if strip(nb):
            dirty.append(p)
            if not args.check:
                nbformat.write(nb, p)
    for p in dirty:
        print(f"{'has outputs' if args.check else 'stripped'}: {p}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
