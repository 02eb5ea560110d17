#!/usr/bin/env bash
# Install the peer tools used by benchmarks/run_all.py (idempotent; re-run is cheap).
#   ImageJ 1.53 (Debian package), run headless under Xvfb
#   CellProfiler 4.2.8 in its own Python 3.9 venv at $CP_VENV (outside the repo)
#   psutil in the spinalquant venv (peak RSS of peer processes)
# Usage: bash benchmarks/peers/setup_peers.sh   (as root on Debian 12)
set -euo pipefail
CP_VENV=${CP_VENV:-/work/peers/cp39}
PY39=${PY39:-$(ls -d /root/.pyenv/versions/3.9.* 2>/dev/null | sort -V | tail -1)/bin/python3.9}
JAVA_HOME_17=${JAVA_HOME_17:-/usr/lib/jvm/java-17-openjdk-amd64}
SQ_VENV=${SQ_VENV:-/work/venv}
t0=$(date +%s)
stamp() { echo "[setup_peers $(( $(date +%s) - t0 ))s] $*"; }

need_apt=()
for p in imagej xvfb xauth default-libmysqlclient-dev pkg-config build-essential time; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  stamp "apt-get install ${need_apt[*]}"
  # another process may hold the dpkg lock: wait for it rather than fail
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${need_apt[@]}"
fi
stamp "ImageJ: $(ls /usr/share/java/ij.jar)"

if [ ! -x "$CP_VENV/bin/cellprofiler" ]; then
  stamp "CellProfiler venv at $CP_VENV with $PY39"
  [ -x "$CP_VENV/bin/python" ] || "$PY39" -m venv "$CP_VENV"
  P="$CP_VENV/bin/pip"
  "$P" install -q -U pip wheel "setuptools<70" Cython numpy==1.24.4
  JAVA_HOME="$JAVA_HOME_17" "$P" install -q --no-build-isolation python-javabridge==4.0.5
  "$P" install -q cellprofiler-core==4.2.8 "centrosome<1.3,>=1.2.3" docutils==0.15.2 "h5py~=3.6.0" \
    "inflect<7,>=2.1" mahotas "matplotlib<4,>=3.1.3" mysqlclient==1.4.6 Pillow prokaryote==2.4.4 \
    "python-bioformats<5,>=4.0.7" "pyzmq~=22.3" sentry-sdk==0.18.0 scipy==1.9.0 scikit-image==0.18.3 \
    "scikit-learn<1,>=0.20" "tifffile<2022.4.22" boto3 imageio Jinja2 joblib psutil requests
  "$P" install -q --no-deps cellprofiler==4.2.8
fi
stamp "CellProfiler: $("$CP_VENV/bin/pip" show cellprofiler 2>/dev/null | grep ^Version)"

# napari-segment-blobs-and-things-with-membranes is NOT installed: in a napari venv it drags in
# ~60 packages (jupyterlab, napari-assistant, ...). skimage_baseline.py implements Voronoi-Otsu itself.
"$SQ_VENV/bin/python" -c "import psutil" 2>/dev/null || "$SQ_VENV/bin/pip" install -q psutil
stamp "done"
