#!/usr/bin/env bash
# Install everything the test suite needs (system Qt/GL libraries for napari, a venv
# with the test extras) and run the whole suite under a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
APT_PKGS="xvfb xauth libgl1 libglib2.0-0 libfontconfig1 libegl1 libdbus-1-3 libxkbcommon-x11-0 \
libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 \
libxcb-xkb1 libxcb-randr0 libxcb-xfixes0 libxcb-cursor0"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv || { echo "need python3-venv: apt-get install python3-venv" >&2; exit 2; }
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
exec xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python -m pytest "$@"
