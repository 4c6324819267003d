#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it.
#   1. Debian's headless Chromium and its chromedriver (for the browser tests of the MJPEG
#      stream and of the control page, driven by Selenium), when missing and we can install
#      system packages (root or passwordless sudo); otherwise those tests skip and say why.
#   2. A virtual environment in .venv with the pinned dependencies (constraints.txt).
#   3. pytest (all tests; tests needing ../shared skip with a reason when it is absent).
# Extra arguments are passed to pytest: -m "not fixtures" runs only the tests that need nothing
# outside the repository (every test using ../shared carries the fixtures marker).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="-"; fi
  if [ "$SUDO" != "-" ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing Debian's chromium and chromium-driver for the browser tests" >&2
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null \
      || echo "scripts/test.sh: could not install chromium and chromium-driver; the browser tests will skip" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e ".[dev,bench]"
exec .venv/bin/python -m pytest "$@"
