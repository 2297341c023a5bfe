#!/usr/bin/env bash
# Prove the package on its real targets' userland: Debian bookworm (= Raspberry Pi OS 12, Python 3.11)
# and trixie (= Pi OS 13, Python 3.13) arm64, run under qemu-user-static emulation on an x86 box.
#
#   sudo scripts/arm64_check.sh [--suites bookworm,trixie] [--short] [--golden full|stills|none] [--cache DIR] [--fresh] [--table FILE]
#   sudo scripts/arm64_check.sh --rootfs-only [--minimal] [--suites bookworm] [--cache DIR]
#
# Per suite: a debootstrapped arm64 rootfs (built once, cached in DIR, default
# /var/cache/edge-holistic-arm64; never inside the repo), then inside it:
#   1. install: the README's service install (scripts/install.sh --system-site-packages --no-enable)
#      with the wheel built from this checkout; a cached rootfs is upgraded in place (--fresh: new venv)
#   2. edge-holistic models verify --load
#   3. golden tests (pose + holistic vs MediaPipe, float; int8 vs float) with pytest in the installed venv
#   4. edge-holistic run --once on tests/data/clip.avi against a mosquitto inside the rootfs; every
#      message validated against the landmarks@1 JSON Schema
#   5. ARM-vs-x86 agreement on the committed stills (scripts/platform_agreement.py)
# --short (CI): bookworm, steps 1 and 3 on the golden stills only. --golden stills: step 3 on the
# golden stills only (pose + holistic vs MediaPipe, holistic int8 end to end), skipping the per-model
# int8 suite (the longest part under emulation); --golden none skips step 3.
# Prints a table (markdown) at the end; --table FILE also writes it there.
# --rootfs-only: only build (or find cached) the rootfs of each suite and exit; --minimal: a bare
# minbase (what debian:*-slim holds, the container test's arm64 base) instead of python3 + mosquitto.
#
# Emulation workarounds (artefacts of qemu-user, not product bugs):
#  - qemu 7.2 shows the host's x86 /proc/cpuinfo inside the rootfs and LiteRT then segfaults in
#    allocate_tensors: an ARM (Raspberry Pi 4 style) cpuinfo is bind-mounted over it, QEMU_CPU=cortex-a72;
#  - TLS to the package index may be intercepted by a local proxy: the host's locally added CA
#    certificates (/usr/local/share/ca-certificates) are installed into the rootfs for pip.
# Timings printed here are EMULATED (qemu-user on x86): 10-50x slower than a real Pi; they only
# show where time goes. Real-board numbers come from `edge-holistic bench` (docs/platforms.md).
set -euo pipefail

SUITES=bookworm,trixie
SHORT=0
GOLDEN=full
FRESH=0
CACHE=/var/cache/edge-holistic-arm64
TABLE_OUT=""
ROOTFS_ONLY=0
INCLUDE=python3,python3-venv,python3-pip,mosquitto,ca-certificates,passwd
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
while [ $# -gt 0 ]; do
  case "$1" in
    --suites) SUITES="${2:?}"; shift 2 ;;
    --short) SHORT=1; SUITES=bookworm; GOLDEN=stills; shift ;;
    --golden) GOLDEN="${2:?}"; shift 2 ;;
    --cache) CACHE="${2:?}"; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --table) TABLE_OUT="${2:?}"; shift 2 ;;
    --rootfs-only) ROOTFS_ONLY=1; shift ;;
    --minimal) INCLUDE=""; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "arm64_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "$0")/.." && pwd)"
case "$(cd "$CACHE" 2>/dev/null && pwd || echo "$CACHE")/" in
  "$REPO"/*) echo "arm64_check.sh: the cache must be outside the repo ($CACHE)" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "arm64_check.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
for tool in debootstrap qemu-aarch64-static; do
  command -v "$tool" >/dev/null || { echo "arm64_check.sh: $tool missing: apt-get install debootstrap qemu-user-static" >&2; exit 1; }
done

log() { echo "[arm64_check $(date -u +%H:%M:%S)] $*"; }
now() { date +%s; }

ensure_binfmt() {
  # qemu-user-static registers aarch64 through binfmt_misc; containers may need it mounted.
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null || {
    echo "arm64_check.sh: cannot register qemu-aarch64 with binfmt_misc" >&2; exit 1; }
}

build_rootfs() {  # suite -> $CACHE/$suite (atomic: built in .partial, renamed when complete)
  local suite="$1" dir="$CACHE/$1" t0
  [ -f "$dir/.complete" ] && return 0
  t0=$(now)
  log "$suite: debootstrap arm64 (slow under emulation; cached afterwards in $dir)"
  mkdir -p "$CACHE"
  rm -rf -- "$dir.partial"
  debootstrap --arch=arm64 --foreign --variant=minbase ${INCLUDE:+--include=$INCLUDE} \
    "$suite" "$dir.partial" "$MIRROR" >"$CACHE/$suite.debootstrap.log" 2>&1
  chroot "$dir.partial" /debootstrap/debootstrap --second-stage >>"$CACHE/$suite.debootstrap.log" 2>&1
  rm -rf -- "$dir"
  mv "$dir.partial" "$dir"
  echo "$(( $(now) - t0 ))" > "$dir/.complete"
  log "$suite: rootfs built in $(( $(now) - t0 )) s"
}

MOUNTS=()
cleanup_mounts() {
  local i
  for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  MOUNTS=()
}
trap cleanup_mounts EXIT

enter() {  # suite: mounts for running things inside
  local root="$CACHE/$1"
  mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc"; MOUNTS+=("$root/proc"); }
  mountpoint -q "$root/dev" || { mount --bind /dev "$root/dev"; MOUNTS+=("$root/dev"); }
  mountpoint -q "$root/dev/shm" || { mount -t tmpfs shm "$root/dev/shm"; MOUNTS+=("$root/dev/shm"); }
  mount --bind "$REPO/scripts/cpuinfo-arm64" "$root/proc/cpuinfo"; MOUNTS+=("$root/proc/cpuinfo")
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    if ! cmp -s <(cat /usr/local/share/ca-certificates/*.crt) <(cat "$root"/usr/local/share/ca-certificates/*.crt 2>/dev/null); then
      cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
      in_root "$1" update-ca-certificates >/dev/null 2>&1
    fi
  fi
}

in_root() {  # suite, command...: run inside the rootfs, emulated as a Cortex-A72
  local suite="$1"; shift
  chroot "$CACHE/$suite" /usr/bin/env -i QEMU_CPU=cortex-a72 HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TF_CPP_MIN_LOG_LEVEL=2 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$@"
}

declare -A R  # results: R[suite.key]=value
VENV=/opt/edge-holistic/.venv
WORK=/tmp/edge-holistic-check

check_suite() {
  local suite="$1" root="$CACHE/$1" t0 rc
  R[$suite.status]=FAIL
  build_rootfs "$suite"
  R[$suite.rootfs_s]="$(cat "$root/.complete")"
  enter "$suite"
  rm -rf -- "$root$WORK"
  mkdir -p "$root$WORK/src" "$root$WORK/out"
  # the checkout install.sh needs (config.yaml, unit), without models: they come in the wheel
  (cd "$REPO" && tar --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
     --exclude=__pycache__ --exclude='./models/*.tflite' -cf - .) | tar -C "$root$WORK/src" -xf -
  cp "$WHEEL" "$root$WORK/"
  [ "$FRESH" = 1 ] && rm -rf -- "$root$VENV"

  log "$suite: install (scripts/install.sh with the wheel)"
  t0=$(now)
  if in_root "$suite" bash "$WORK/src/scripts/install.sh" --system-site-packages --no-enable \
       --wheel "$WORK/$(basename "$WHEEL")" >"$OUT/$suite.install.log" 2>&1 \
     && in_root "$suite" "$VENV/bin/python" -m pip install -q pytest 'jsonschema>=4' >>"$OUT/$suite.install.log" 2>&1; then
    R[$suite.install]=pass
  else
    R[$suite.install]=FAIL; tail -n 30 "$OUT/$suite.install.log"; return 1
  fi
  R[$suite.install_s]=$(( $(now) - t0 ))
  R[$suite.versions]="$(in_root "$suite" "$VENV/bin/python" -c '
import sys, numpy, cv2
from importlib.metadata import version
litert = version("ai-edge-litert")
print(f"Python {sys.version.split()[0]}, ai-edge-litert {litert}, numpy {numpy.__version__}, opencv {cv2.__version__}")')"
  log "$suite: ${R[$suite.versions]}"

  local tests
  if [ "$GOLDEN" = stills ]; then
    tests=(tests/test_pose.py::test_agreement_with_mediapipe_static
           "tests/test_holistic.py::test_static_distance_to_mediapipe_within_limits"
           "tests/test_holistic.py::test_static_found_agreement_with_mediapipe"
           tests/test_int8.py::test_end_to_end_holistic_int8_within_one_percent_of_person_box)
  else
    tests=(tests/test_pose.py::test_agreement_with_mediapipe_static
           tests/test_holistic.py::test_edge_golden_matches_the_edge_images
           "tests/test_holistic.py::test_static_distance_to_mediapipe_within_limits"
           "tests/test_holistic.py::test_static_found_agreement_with_mediapipe"
           tests/test_int8.py)
  fi
  if [ "$SHORT" = 0 ]; then
    log "$suite: models verify --load"
    t0=$(now)
    if in_root "$suite" "$VENV/bin/edge-holistic" models verify --load >"$OUT/$suite.verify.log" 2>&1; then
      R[$suite.verify]="pass ($(tail -n 1 "$OUT/$suite.verify.log"))"
    else
      R[$suite.verify]="FAIL ($(tail -n 1 "$OUT/$suite.verify.log"))"
    fi
    R[$suite.verify_s]=$(( $(now) - t0 ))
  fi
  # tests (and the clip) run against the INSTALLED package: cwd is the tests' parent, no edge_holistic/ there
  mkdir -p "$root$WORK/t"
  cp -a "$root$WORK/src/tests" "$root$WORK/t/"
  if [ "$GOLDEN" = none ]; then
    tests=()
    R[$suite.tests]="skipped (--golden none)"; R[$suite.tests_s]=0
  else
    log "$suite: golden tests ($GOLDEN: ${#tests[@]} ids)"
    t0=$(now)
    set +e
    in_root "$suite" bash -c "cd $WORK/t && $VENV/bin/pytest -q -p no:cacheprovider -o addopts= --durations=0 ${tests[*]}" \
      >"$OUT/$suite.tests.log" 2>&1
    rc=$?
    set -e
    R[$suite.tests]="$( [ $rc = 0 ] && echo pass || echo FAIL ) ($(grep -E '[0-9]+ (passed|failed)' "$OUT/$suite.tests.log" | tail -n 1 | tr -d '=' | sed 's/^ *//;s/ *$//'))"
    R[$suite.tests_s]=$(( $(now) - t0 ))
  fi

  if [ "$SHORT" = 0 ]; then
    log "$suite: daemon --once on the clip against mosquitto in the rootfs"
    t0=$(now)
    cp "$REPO/scripts/_arm64_daemon_once.py" "$REPO/scripts/soak.py" "$root$WORK/"
    set +e
    in_root "$suite" "$VENV/bin/python" "$WORK/_arm64_daemon_once.py" "$WORK/t/tests/data/clip.avi" "$WORK/out" \
      >"$OUT/$suite.daemon.log" 2>&1
    rc=$?
    set -e
    R[$suite.daemon]="$( [ $rc = 0 ] && echo pass || echo FAIL ) ($(tail -n 1 "$OUT/$suite.daemon.log"))"
    R[$suite.daemon_s]=$(( $(now) - t0 ))

    log "$suite: ARM vs x86 agreement on the committed stills"
    t0=$(now)
    cp "$REPO/scripts/platform_agreement.py" "$root$WORK/"
    local imgs
    imgs=$(cd "$REPO/tests/data" && ls images/*.jpg edge/*.jpg | sed "s#^#$WORK/t/tests/data/#" | tr '\n' ' ')
    if in_root "$suite" "$VENV/bin/python" "$WORK/platform_agreement.py" dump "$WORK/out/arm.json" $imgs \
         >"$OUT/$suite.agree.log" 2>&1; then
      python3 "$REPO/scripts/platform_agreement.py" compare "$OUT/x86.json" "$root$WORK/out/arm.json" \
        >>"$OUT/$suite.agree.log" 2>&1 || true
      R[$suite.agree]="$(python3 - "$OUT/$suite.agree.log" <<'PY'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith('{"agreement"')][-1]
a = json.loads(line)["agreement"]
print("; ".join(f"{k} {v['median_pct']:.2f}% (worst {v['worst_pct']:.2f}%, {v['presence_flips']} flips)" for k, v in a.items()))
PY
)"
      R[$suite.agree_s]=$(( $(now) - t0 ))
    else
      R[$suite.agree]="FAIL (see $OUT/$suite.agree.log)"
      R[$suite.agree_s]=$(( $(now) - t0 ))
    fi
  fi
  cleanup_mounts
  if [[ "${R[$suite.install]}" == pass && ( "${R[$suite.tests]}" == pass* || "$GOLDEN" = none ) ]] \
     && { [ "$SHORT" = 1 ] || [[ "${R[$suite.verify]}" == pass* && "${R[$suite.daemon]}" == pass* ]]; }; then
    R[$suite.status]=pass
  fi
}

ensure_binfmt
if [ "$ROOTFS_ONLY" = 1 ]; then
  IFS=, read -r -a suite_list <<< "$SUITES"
  for s in "${suite_list[@]}"; do build_rootfs "$s"; log "$s: rootfs ready in $CACHE/$s"; done
  exit 0
fi
OUT="$(mktemp -d /tmp/edge-holistic-arm64-check.XXXXXX)"
log "logs in $OUT"
T_ALL=$(now)
log "building the wheel"
(cd "$REPO" && tar --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
   --exclude=__pycache__ -cf - .) | (mkdir -p "$OUT/src" && tar -C "$OUT/src" -xf -)
PYBUILD="${PYTHON:-python3}"
"$PYBUILD" -m pip wheel -q --no-deps -w "$OUT/dist" "$OUT/src" >"$OUT/wheel.log" 2>&1 || {
  cat "$OUT/wheel.log"; exit 1; }
rm -rf -- "$OUT/src"
WHEEL="$(ls "$OUT"/dist/edge_holistic-*.whl)"
if [ "$SHORT" = 0 ]; then
  log "x86 reference landmarks (this machine)"
  EH_PY="${EH_PYTHON:-$REPO/.venv/bin/python}"
  [ -x "$EH_PY" ] || { echo "arm64_check.sh: $EH_PY missing (scripts/test.sh makes .venv; or set EH_PYTHON)" >&2; exit 1; }
  imgs=$(cd "$REPO/tests/data" && ls images/*.jpg edge/*.jpg | sed "s#^#$REPO/tests/data/#" | tr '\n' ' ')
  "$EH_PY" "$REPO/scripts/platform_agreement.py" dump "$OUT/x86.json" $imgs
fi

overall=0
IFS=, read -r -a suite_list <<< "$SUITES"
for s in "${suite_list[@]}"; do
  check_suite "$s" || true
  cleanup_mounts
  [ "${R[$s.status]}" = pass ] || overall=1
done

{
  echo "arm64 check, $(date -u +%Y-%m-%d) ($([ "$SHORT" = 1 ] && echo short || echo full) form), qemu-user $(qemu-aarch64-static --version | head -n 1 | awk '{print $3}') on $(uname -m); times are EMULATED seconds"
  echo
  if [ "$SHORT" = 1 ]; then
    echo "| suite | versions | install | golden stills | result |"
    echo "|---|---|---|---|---|"
  else
    echo "| suite | versions | install | models verify --load | golden tests | daemon --once + schema | ARM vs x86 (median % of part box) | result |"
    echo "|---|---|---|---|---|---|---|---|"
  fi
  for s in "${suite_list[@]}"; do
    v="${R[$s.versions]:-?}"
    inst="${R[$s.install]:-?} (${R[$s.install_s]:-?} s; rootfs build ${R[$s.rootfs_s]:-?} s)"
    tst="${R[$s.tests]:-?} ($GOLDEN, ${R[$s.tests_s]:-?} s)"
    if [ "$SHORT" = 1 ]; then
      echo "| $s | $v | $inst | $tst | ${R[$s.status]} |"
    else
      echo "| $s | $v | $inst | ${R[$s.verify]:-?} (${R[$s.verify_s]:-?} s) | $tst | ${R[$s.daemon]:-?} (${R[$s.daemon_s]:-?} s) | ${R[$s.agree]:-?} (${R[$s.agree_s]:-?} s) | ${R[$s.status]} |"
    fi
  done
  echo
  echo "total $(( $(now) - T_ALL )) s; logs: $OUT"
} | tee "$OUT/table.md"
[ -n "$TABLE_OUT" ] && cp "$OUT/table.md" "$TABLE_OUT"
exit $overall
