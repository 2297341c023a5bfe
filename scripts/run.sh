#!/usr/bin/env bash
# The main job (README): builds .venv at the repo root, installs the package
# (editable), and starts the daemon on the bundled sample clip, publishing to
# the MQTT broker on localhost:1883 (with no broker it keeps running and retries),
# with the web page on http://127.0.0.1:8080/ (live view) and /analyze (upload a photo).
# Extra arguments go to `edge-holistic run`, e.g. scripts/run.sh --mqtt-host 192.168.1.5
# or --http-port 8081.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
port=8080
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--http-port" ] && port="${args[$((i + 1))]:-8080}"
done
echo "== web page: http://127.0.0.1:${port}/  (live view; /analyze to upload a photo)"
exec .venv/bin/edge-holistic run --config config.yaml --source tests/data/clip.avi "$@"
