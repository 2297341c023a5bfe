#!/usr/bin/env bash
# The test command (README): builds .venv at the repo root, installs the package
# (editable) with its test extras, installs the MQTT broker, systemd-analyze and
# headless Chromium + chromedriver from Debian packages when they are missing,
# then runs the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pose -x
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The web page's browser test: Debian's headless Chromium driven through chromedriver.
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} missing and not root; run: sudo apt-get install -y ${missing[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing edge-holistic into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== running tests"
exec .venv/bin/python -m pytest "$@"
