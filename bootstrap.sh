#!/usr/bin/env bash
# One command for set-up and the job you want. Usage:
#   bash bootstrap.sh book  [petseg book options]   # install everything, build the book (main job)
#   bash bootstrap.sh test  [pytest options]        # install everything, run the tests
#   bash bootstrap.sh setup                         # install only
# The virtual environment lives in .venv (override with PETSEG_VENV). Re-runs skip the install
# unless requirements.txt, constraints.txt, pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
job="${1:-}"; [ $# -gt 0 ] && shift
case "$job" in book|test|setup) ;; *) echo "usage: bash bootstrap.sh book|test|setup [options]" >&2; exit 2;; esac

VENV="${PETSEG_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# torch must stay at the CPU build 2.13.0 in *every* pip call (a newer torch is a multi-GB CUDA build).
export PIP_CONSTRAINT="$PWD/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1 NO_ALBUMENTATIONS_UPDATE=1 GRADIO_ANALYTICS_ENABLED=False
export MPLBACKEND="${MPLBACKEND:-Agg}"

stamp="$(cat requirements.txt constraints.txt pyproject.toml bootstrap.sh petseg/_torchvision_shim.py | sha256sum | cut -c1-16)"
if [ "$(cat "$VENV/.petseg-installed" 2>/dev/null)" != "$stamp" ]; then
  echo "[bootstrap] installing into $VENV (about 2-3 minutes on a fresh machine)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip==24.3.1 setuptools==80.9.0 wheel==0.45.1
  "$VENV/bin/python" -m pip install -q torch==2.13.0
  # sam2 is a source distribution: build it against the installed CPU torch, without CUDA kernels.
  SAM2_BUILD_CUDA=0 "$VENV/bin/python" -m pip install -q --no-build-isolation -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps -e .
  # torchvision fix for CPU machines (a no-op where torchvision loads normally), then an import check.
  "$VENV/bin/python" -m petseg.environment install
  echo "$stamp" > "$VENV/.petseg-installed"
fi

# The demo's browser test drives Debian's headless Chromium with its matching chromedriver (Selenium, from
# requirements.txt); the book's demo page takes its screenshot with them. Install them when missing and we may
# (root + apt-get); otherwise the browser test skips and the page shows the app's pictures without the browser.
install_browser() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing chromium + chromium-driver for the browser test (about 20 s)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium chromium-driver; } >/tmp/petseg-apt.log 2>&1 \
      || echo "[bootstrap] chromium install failed (see /tmp/petseg-apt.log): the browser test will skip"
  else
    echo "[bootstrap] chromium/chromedriver missing and not root: the browser test will skip"
  fi
}

export PATH="$PWD/$VENV/bin:$PATH"
case "$job" in
  setup) "$VENV/bin/python" -m petseg.environment check ;;
  book)  install_browser; exec "$VENV/bin/petseg" book "$@" ;;
  test)  install_browser; exec "$VENV/bin/python" -m pytest "$@" ;;
esac
