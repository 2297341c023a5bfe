"""Short form of the arm64 check (scripts/arm64_check.sh --short): the wheel installed the README's
way into a Debian bookworm arm64 rootfs (= Raspberry Pi OS 12 userland) under qemu-user
emulation, then the golden still-image tests (pose and holistic vs MediaPipe, int8 end to end)
run there against the installed package.

CI cost: COSTS_LINE. The rootfs is cached in /var/cache/edge-holistic-arm64; building it
(debootstrap under emulation) takes far longer than the suite's budget, so on a cold cache the
test skips and says so, unless EDGE_HOLISTIC_SLOW_CHECKS=1. The full check (bookworm and trixie,
daemon, agreement table) is run by hand: docs/platforms.md.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDGE_HOLISTIC_ARM64_CACHE", "/var/cache/edge-holistic-arm64"))
SLOW = os.environ.get("EDGE_HOLISTIC_SLOW_CHECKS") == "1"


def test_bookworm_arm64_install_and_golden_stills(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("arm64 check needs root (debootstrap, chroot, mounts)")
    missing = [t for t in ("debootstrap", "qemu-aarch64-static", "chroot") if not shutil.which(t)]
    if missing:
        pytest.skip(f"arm64 check: {', '.join(missing)} not installed (apt-get install debootstrap qemu-user-static)")
    if not SLOW:
        pytest.skip("arm64 short check skipped: EDGE_HOLISTIC_SLOW_CHECKS is not 1 (COSTS_LINE)")
    if not (CACHE / "bookworm" / ".complete").is_file() and not SLOW:
        pytest.skip(f"arm64 check skipped: cold cache (no {CACHE / 'bookworm'}); building the rootfs under "
                    "emulation takes ~20 min. Warm it once with `sudo scripts/arm64_check.sh --short` "
                    "or set EDGE_HOLISTIC_SLOW_CHECKS=1")
    table = tmp_path / "table.md"
    r = subprocess.run(["bash", str(REPO / "scripts" / "arm64_check.sh"), "--short", "--cache", str(CACHE),
                        "--table", str(table)], capture_output=True, text=True, timeout=3600)
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    text = table.read_text()
    assert "| bookworm |" in text and "| pass |" in text, text
    assert "Python 3.11" in text and "ai-edge-litert 2.3.0" in text, text
