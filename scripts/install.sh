#!/usr/bin/env bash
# Install edge-holistic as a systemd service on a Raspberry Pi / Jetson / any Debian-like box.
#
#   sudo scripts/install.sh [--system-site-packages] [--no-enable] [--prefix /opt/edge-holistic]
#   (PYTHON=/path/to/python3 picks the interpreter; default /usr/bin/python3)
#
# - copies the package and its models to PREFIX (default /opt/edge-holistic) and builds a venv there;
#   --system-site-packages lets the venv see apt's python3-picamera2 (Pi) or JetPack's GStreamer OpenCV;
# - creates the system user 'edge-holistic' (groups: video) if missing;
# - installs config.yaml to /etc/edge-holistic/config.yaml, never overwriting an existing one
#   (the new default is written next to it as config.yaml.dist);
# - installs the unit to /etc/systemd/system and enables (and starts) it.
set -euo pipefail

PREFIX=/opt/edge-holistic
ETC=/etc/edge-holistic
UNIT_DIR=/etc/systemd/system
USER_NAME=edge-holistic
SITE=""
ENABLE=1
# The system interpreter: the service user must be able to run it (a pyenv under /root is not).
PYTHON="${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}"

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --system-site-packages) SITE="--system-site-packages"; shift ;;
    --no-enable) ENABLE=0; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo $0)" >&2
  exit 1
fi
SRC="$(cd "$(dirname "$0")/.." && pwd)"
for f in pyproject.toml edge_holistic models/manifest.yaml config.yaml systemd/edge-holistic.service; do
  [ -e "$SRC/$f" ] || { echo "install.sh: $SRC/$f missing: run from a checkout" >&2; exit 1; }
done

echo "== user $USER_NAME"
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi
if getent group video >/dev/null; then usermod -a -G video "$USER_NAME"; fi

echo "== files -> $PREFIX"
mkdir -p "$PREFIX"
# Fresh copy of code, models and docs; the venv is kept between upgrades.
rm -rf "$PREFIX/src"
mkdir -p "$PREFIX/src"
cp -a "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/edge_holistic" "$PREFIX/src/"
rm -rf "$PREFIX/models" "$PREFIX/docs"
cp -a "$SRC/models" "$PREFIX/models"
[ -d "$SRC/docs" ] && cp -a "$SRC/docs" "$PREFIX/docs"
find "$PREFIX/src" -name __pycache__ -prune -exec rm -rf {} +

echo "== venv $PREFIX/.venv"
if [ ! -x "$PREFIX/.venv/bin/python" ]; then
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || {
    echo "install.sh: $PYTHON cannot create venvs: apt-get install python3-venv" >&2; exit 1; }
  "$PYTHON" -m venv $SITE "$PREFIX/.venv"
fi
"$PREFIX/.venv/bin/python" -m pip install -q --upgrade pip
"$PREFIX/.venv/bin/python" -m pip install -q "$PREFIX/src"
chown -R root:root "$PREFIX"
chmod -R a+rX "$PREFIX"

echo "== config $ETC/config.yaml"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ -e "$ETC/config.yaml" ]; then
  install -m 0640 -o root -g "$USER_NAME" "$SRC/config.yaml" "$ETC/config.yaml.dist"
  echo "   kept the existing config; the new default is $ETC/config.yaml.dist"
else
  install -m 0640 -o root -g "$USER_NAME" "$SRC/config.yaml" "$ETC/config.yaml"
fi
if ! runuser -u "$USER_NAME" -- "$PREFIX/.venv/bin/python" -c 'import edge_holistic' 2>/dev/null; then
  echo "install.sh: user $USER_NAME cannot run $PREFIX/.venv/bin/python (interpreter $PYTHON not readable?)" >&2
  exit 1
fi
if ! runuser -u "$USER_NAME" -- env EDGE_HOLISTIC_MODELS="$PREFIX/models" \
    "$PREFIX/.venv/bin/edge-holistic" check-config "$ETC/config.yaml"; then
  echo "   WARNING: fix $ETC/config.yaml before starting the service" >&2
fi

echo "== unit $UNIT_DIR/edge-holistic.service"
sed "s#/opt/edge-holistic#$PREFIX#g" "$SRC/systemd/edge-holistic.service" > "$UNIT_DIR/edge-holistic.service"
chmod 0644 "$UNIT_DIR/edge-holistic.service"

if [ "$ENABLE" = 1 ]; then
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now edge-holistic.service
    echo "== started: journalctl -u edge-holistic -f"
  else
    systemctl enable edge-holistic.service  # no running systemd (container/chroot): enable only
    echo "== enabled (systemd is not running here; it starts at boot)"
  fi
fi
echo "== done. Watch it: mosquitto_sub -t 'edge_holistic/#' -v"
