"""The systemd unit, the install script, sd_notify over real sockets, and the memory guard."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge_holistic.config import HealthConfig
from edge_holistic.health import MemoryGuard, Notifier, cgroup_dir, cgroup_limit, rss_bytes, watchdog_interval

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edge-holistic.service"
INSTALLED_EXEC = "/opt/edge-holistic/.venv/bin/edge-holistic"


def _directives(text: str) -> list:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "["))]


def test_unit_passes_systemd_analyze_verify(tmp_path):
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed (scripts/test.sh installs the systemd package)")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_EXEC} run --config /etc/edge-holistic/config.yaml" in text
    # verify checks that ExecStart exists; point it at this checkout's real entry point
    # (the install puts the same script at /opt/edge-holistic/.venv/bin/).
    entry = Path(sys.executable).parent / "edge-holistic"
    assert entry.is_file(), f"{entry} missing: pip install -e . into this venv"
    unit = tmp_path / "edge-holistic.service"
    unit.write_text(text.replace(INSTALLED_EXEC, str(entry)))
    r = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "edge-holistic.service" not in r.stderr, r.stderr  # no warnings about our unit either


def test_unit_has_the_required_settings():
    d = _directives(UNIT.read_text())
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "RestartSec=5", "StartLimitIntervalSec=0",
                 "User=edge-holistic", "SupplementaryGroups=video", "DeviceAllow=char-video4linux rw",
                 "DeviceAllow=char-media rw", "ExecReload=/bin/kill -HUP $MAINPID", "PrivateTmp=no"):
        assert line in d, line
    assert any(x.startswith("MemoryHigh=") for x in d) and any(x.startswith("MemoryMax=") for x in d)
    assert not any(x.startswith("PrivateDevices=") and x.endswith("yes") for x in d)
    assert "argus_socket" in UNIT.read_text()  # the Jetson PrivateTmp note


def test_install_script_is_valid_bash_and_documents_itself():
    script = REPO / "scripts" / "install.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    r = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "/etc/edge-holistic/config.yaml" in r.stdout
    r = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--bogus" in r.stderr
    # a prefix is never taken relative or as / (the script removes PREFIX/.venv on uninstall)
    for bad, needle in (("relative/dir", "absolute path"), ("/", "--prefix / is not allowed")):
        r = subprocess.run(["bash", str(script), "--prefix", bad, "--uninstall"], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
    text = script.read_text()
    assert "chown -R" not in text and "chmod -R" not in text  # issue 10: no recursive chown of a shared prefix


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_sends_one_datagram_per_message(tmp_path, abstract):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"edge-holistic-test-{os.getpid()}"
        srv.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "n.sock")
        srv.bind(address)
    srv.settimeout(5)
    try:
        n = Notifier(address)
        assert n.enabled
        assert n.ready("loaded\nmodels")  # STATUS is forced onto one line
        assert srv.recv(1024).decode() == "READY=1\nSTATUS=loaded models"
        assert n.watchdog()
        assert srv.recv(1024) == b"WATCHDOG=1"
        assert n.stopping()
        assert srv.recv(1024) == b"STOPPING=1"
    finally:
        srv.close()


def test_notifier_is_a_noop_outside_systemd(tmp_path):
    assert not Notifier("").enabled and Notifier("").watchdog() is False
    gone = Notifier(str(tmp_path / "missing.sock"))
    assert gone.enabled and gone.watchdog() is False  # fails quietly, never raises


def test_watchdog_interval_follows_sd_watchdog_enabled(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0


def test_rss_and_cgroup_readers(tmp_path):
    assert rss_bytes() > 10 * 1024 * 1024  # this interpreter with numpy loaded
    root = tmp_path / "cg"
    (root / "system.slice" / "edge-holistic.service").mkdir(parents=True)
    (root / "system.slice" / "edge-holistic.service" / "memory.max").write_text("838860800\n")
    (root / "system.slice" / "edge-holistic.service" / "memory.high").write_text("max\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/edge-holistic.service\n")
    d = cgroup_dir(str(proc), str(root))
    assert d == root / "system.slice" / "edge-holistic.service"
    assert cgroup_limit("memory.max", d) == 838860800
    assert cgroup_limit("memory.high", d) is None  # 'max' means unlimited
    proc.write_text("12:memory:/legacy\n")  # cgroup v1 only: no unified line
    assert cgroup_dir(str(proc), str(root)) is None


def test_memory_guard_levels():
    mb = 1024 * 1024
    g = MemoryGuard(HealthConfig(memory_soft_mb=100, memory_hard_mb=200), cgroup_max=None, cgroup_high=None)
    v = g.check(50 * mb)
    assert v.level == "ok" and not v.changed
    v = g.check(150 * mb)
    assert v.level == "soft" and v.changed and "soft limit 100" in v.reason
    v = g.check(90 * mb)  # hysteresis: stays soft until well below the limit
    assert v.level == "soft" and not v.changed
    v = g.check(70 * mb)
    assert v.level == "ok" and v.changed
    assert g.check(250 * mb).level == "hard"


def test_memory_guard_defaults_from_cgroup():
    mb = 1024 * 1024
    g = MemoryGuard(HealthConfig(), cgroup_max=800 * mb, cgroup_high=600 * mb)
    assert g.soft_mb == pytest.approx(510) and g.hard_mb == pytest.approx(760)
    off = MemoryGuard(HealthConfig(), cgroup_max=None, cgroup_high=None)
    assert off.soft_mb == 0 and off.hard_mb == 0 and off.check(10**10).level == "ok"
