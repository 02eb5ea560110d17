#!/usr/bin/env bash
# Set up spinalquant in ./.venv and analyse the bundled sample images into ./results.
# Works on a fresh Debian 12 / Python 3.11 machine; re-running reuses the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "spinalquant needs Python >= 3.11 (found: $($PY --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    echo "python venv module missing; installing python3-venv (needs root)" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv
    rm -rf .venv && "$PY" -m venv .venv
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[all]"
.venv/bin/spinalquant run sample_images --out results "$@"
echo "Open results/report.html, results/summary.csv and results/qc/*.png"
