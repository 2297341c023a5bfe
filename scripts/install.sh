#!/usr/bin/env bash
# Install edge-holistic as a systemd service on a Raspberry Pi / Jetson / any Debian-like box.
#
#   sudo scripts/install.sh [--system-site-packages] [--system-opencv] [--no-enable] [--prefix /opt/edge-holistic] [--wheel FILE]
#   sudo scripts/install.sh --uninstall [--purge] [--prefix /opt/edge-holistic]
#   (PYTHON=/path/to/python3 picks the interpreter; default /usr/bin/python3)
#
# - builds a wheel from this checkout (or uses --wheel FILE) and installs it into the venv
#   PREFIX/.venv (default /opt/edge-holistic/.venv); no source tree is copied, the models are
#   package data inside the wheel. Re-running upgrades in place and restarts a running service;
# - --system-site-packages lets the venv see apt's python3-picamera2 (Pi) or JetPack's GStreamer
#   OpenCV; an existing venv made with the other setting (or another Python) is recreated;
# - --system-opencv (Jetson; implies --system-site-packages): removes the pip OpenCV wheel from the
#   venv so the system's GStreamer-enabled cv2 (JetPack's) is the one imported;
# - creates the system user 'edge-holistic' (groups: video) if missing;
# - installs config.yaml to /etc/edge-holistic/config.yaml, never overwriting an existing one
#   (the new default is written next to it as config.yaml.dist);
# - creates /var/lib/edge-holistic/models for user-added models (edge-holistic models add);
# - installs the unit to /etc/systemd/system, enables it and (re)starts it.
# --uninstall stops and removes the unit and PREFIX/.venv; config, user models and the user
# stay unless --purge. Only paths this script creates are ever removed; PREFIX itself only if empty.
set -euo pipefail
umask 022

PREFIX=/opt/edge-holistic
ETC=/etc/edge-holistic
STATE=/var/lib/edge-holistic
UNIT_DIR=/etc/systemd/system
UNIT=edge-holistic.service
USER_NAME=edge-holistic
SITE=0
SYS_CV=0
ENABLE=1
WHEEL=""
UNINSTALL=0
PURGE=0
# The system interpreter: the service user must be able to run it (a pyenv under /root is not).
PYTHON="${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}"

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --system-site-packages) SITE=1; shift ;;
    --system-opencv) SITE=1; SYS_CV=1; shift ;;
    --no-enable) ENABLE=0; shift ;;
    --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$PREFIX" in
  /*) PREFIX="${PREFIX%/}" ;;
  *) echo "install.sh: --prefix must be an absolute path, got '$PREFIX'" >&2; exit 2 ;;
esac
[ -n "$PREFIX" ] || { echo "install.sh: --prefix / is not allowed" >&2; exit 2; }
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo $0)" >&2
  exit 1
fi
VENV="$PREFIX/.venv"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
have_systemd() { [ -d /run/systemd/system ]; }

# ---------------------------------------------------------------------------- uninstall
if [ "$UNINSTALL" = 1 ]; then
  echo "== removing the service"
  if have_systemd; then
    systemctl disable --now "$UNIT" 2>/dev/null || true
  elif command -v systemctl >/dev/null; then
    systemctl disable "$UNIT" 2>/dev/null || true
  fi
  rm -f "$UNIT_DIR/$UNIT"
  have_systemd && systemctl daemon-reload
  # The device leaves Home Assistant too: empty retained discovery configs (needs the broker).
  if [ -x "$VENV/bin/edge-holistic" ] && [ -f "$ETC/config.yaml" ]; then
    echo "== removing the device from Home Assistant (ha-remove)"
    "$VENV/bin/edge-holistic" ha-remove --config "$ETC/config.yaml" --timeout 5 \
      || echo "   Home Assistant entities not removed (broker unreachable?); run 'edge-holistic ha-remove' later"
  fi
  if [ -f "$VENV/pyvenv.cfg" ]; then   # only a venv this script made (it has pyvenv.cfg)
    echo "== removing $VENV"
    rm -rf -- "$VENV"
  fi
  rmdir -- "$PREFIX" 2>/dev/null && echo "== removed empty $PREFIX" || true
  if [ "$PURGE" = 1 ]; then
    echo "== purging $ETC, $STATE and user $USER_NAME"
    rm -rf -- "$ETC" "$STATE"
    if id "$USER_NAME" >/dev/null 2>&1; then userdel "$USER_NAME" || true; fi
  else
    echo "   kept $ETC (config) and $STATE (user-added models); --purge removes them"
  fi
  echo "== uninstalled"
  exit 0
fi

for f in pyproject.toml config.yaml systemd/$UNIT; do
  [ -e "$SRC/$f" ] || { echo "install.sh: $SRC/$f missing: run from a checkout" >&2; exit 1; }
done

echo "== user $USER_NAME"
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi
if getent group video >/dev/null; then usermod -a -G video "$USER_NAME"; fi

echo "== venv $VENV"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || {
  echo "install.sh: $PYTHON cannot create venvs: apt-get install python3-venv" >&2; exit 1; }
want_site=false; [ "$SITE" = 1 ] && want_site=true
want_ver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -f "$VENV/pyvenv.cfg" ]; then
  have_site="$(sed -n 's/^include-system-site-packages *= *//p' "$VENV/pyvenv.cfg" | tr 'A-Z' 'a-z')"
  have_ver="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)"
  if [ "$have_site" != "$want_site" ] || [ "$have_ver" != "$want_ver" ]; then
    echo "   recreating: the venv has system-site-packages=$have_site python=$have_ver;" \
         "wanted system-site-packages=$want_site python=$want_ver"
    rm -rf -- "$VENV"
  fi
elif [ -e "$VENV" ]; then
  echo "install.sh: $VENV exists but is not a venv (no pyvenv.cfg); move it away first" >&2
  exit 1
fi
if [ ! -f "$VENV/pyvenv.cfg" ]; then
  mkdir -p -- "$PREFIX"
  if [ "$SITE" = 1 ]; then "$PYTHON" -m venv --system-site-packages "$VENV"; else "$PYTHON" -m venv "$VENV"; fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip

TMP="$(mktemp -d)"
trap 'rm -rf -- "$TMP"' EXIT
if [ -z "$WHEEL" ]; then
  echo "== building the wheel from $SRC"
  # Build from a scratch copy so the checkout gets no root-owned build/ or *.egg-info.
  mkdir "$TMP/src"
  (cd "$SRC" && tar --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
      --exclude=__pycache__ -cf - .) | tar -C "$TMP/src" -xf -
  "$VENV/bin/python" -m pip wheel -q --no-deps -w "$TMP/dist" "$TMP/src"
  WHEEL="$(ls "$TMP"/dist/edge_holistic-*.whl)"
fi
[ -f "$WHEEL" ] || { echo "install.sh: wheel $WHEEL not found" >&2; exit 1; }
echo "== installing $(basename "$WHEEL")"
# --force-reinstall --no-deps: the same version number rebuilt from newer code is still installed;
# the second call brings the dependencies (already satisfied ones are left alone).
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$WHEEL"
"$VENV/bin/python" -m pip install -q "$WHEEL"
if [ "$SYS_CV" = 1 ]; then
  "$PYTHON" -c 'import cv2' 2>/dev/null || {
    echo "install.sh: --system-opencv: $PYTHON has no cv2 (Jetson: JetPack's python3-opencv)" >&2; exit 1; }
  "$VENV/bin/python" -m pip uninstall -q -y opencv-python-headless opencv-python 2>/dev/null || true
  echo "   using the system OpenCV: $("$VENV/bin/python" -c 'import cv2; print(cv2.__version__, cv2.__file__)')"
fi
if [ -d "$SRC/docs" ]; then  # docs inside the venv: removed with it, nothing else under PREFIX
  install -d "$VENV/share/doc/edge-holistic"
  install -m 0644 "$SRC"/docs/*.md "$SRC/README.md" "$VENV/share/doc/edge-holistic/"
fi

echo "== config $ETC/config.yaml"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
if [ -e "$ETC/config.yaml" ]; then
  install -m 0640 -o root -g "$USER_NAME" "$SRC/config.yaml" "$ETC/config.yaml.dist"
  echo "   kept the existing config; the new default is $ETC/config.yaml.dist"
else
  install -m 0640 -o root -g "$USER_NAME" "$SRC/config.yaml" "$ETC/config.yaml"
fi
echo "== user models $STATE/models"
install -d -m 0755 -o "$USER_NAME" -g "$USER_NAME" "$STATE"
install -d -m 0755 -o "$USER_NAME" -g "$USER_NAME" "$STATE/models"
if ! runuser -u "$USER_NAME" -- "$VENV/bin/python" -c 'import edge_holistic' 2>/dev/null; then
  echo "install.sh: user $USER_NAME cannot run $VENV/bin/python (interpreter $PYTHON not readable?)" >&2
  exit 1
fi
if ! runuser -u "$USER_NAME" -- env EDGE_HOLISTIC_MODELS_DIR="$STATE/models" \
    "$VENV/bin/edge-holistic" check-config "$ETC/config.yaml"; then
  echo "   WARNING: fix $ETC/config.yaml before starting the service" >&2
fi

echo "== unit $UNIT_DIR/$UNIT"
sed "s#/opt/edge-holistic#$PREFIX#g" "$SRC/systemd/$UNIT" > "$UNIT_DIR/$UNIT"
chmod 0644 "$UNIT_DIR/$UNIT"

if [ "$ENABLE" = 1 ]; then
  if have_systemd; then
    systemctl daemon-reload
    systemctl enable "$UNIT"
    # restart, not 'enable --now': an upgraded running service must pick up the new code
    systemctl restart "$UNIT"
    echo "== (re)started: journalctl -u edge-holistic -f"
  else
    systemctl enable "$UNIT"  # no running systemd (container/chroot): enable only
    echo "== enabled (systemd is not running here; it starts at boot)"
  fi
elif have_systemd; then
  systemctl daemon-reload
  if systemctl is-active --quiet "$UNIT"; then
    systemctl restart "$UNIT"
    echo "== restarted the running service on the new version"
  fi
fi
echo "== done: $("$VENV/bin/edge-holistic" --version 2>/dev/null || echo edge-holistic). Watch it: mosquitto_sub -t 'edge_holistic/#' -v"
