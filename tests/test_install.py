"""scripts/install.sh for real, in a Debian bookworm chroot (x86, no emulation): install into the
shared prefix /usr/local, re-run with --system-site-packages (the venv is recreated), uninstall
and purge — and nothing else under /usr/local is touched (issue 10, item 9).

The chroot is a copy of the debootstrapped rootfs that tests/test_container.py caches in
/var/cache/edge-holistic-docker; python3-venv and the dependencies come from the network.
Cost: ~6-8 min on the 2-core box, so it runs only with EDGE_HOLISTIC_SLOW_CHECKS=1 (and root);
otherwise it skips and says why. The arm64 check runs the same script on bookworm and trixie.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTFS = Path(os.environ.get("EDGE_HOLISTIC_DOCKER_CACHE", "/var/cache/edge-holistic-docker")) / "bookworm-amd64"


def _chroot(root: Path, *cmd: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
           "PIP_CERT=/etc/ssl/certs/ca-certificates.crt", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
    return subprocess.run(["chroot", str(root), *env, *cmd], capture_output=True, text=True, timeout=timeout)


def test_install_upgrade_site_switch_uninstall_in_a_shared_prefix(tmp_path):
    if os.environ.get("EDGE_HOLISTIC_SLOW_CHECKS") != "1":
        pytest.skip("install.sh chroot test: ~6-8 min, runs only with EDGE_HOLISTIC_SLOW_CHECKS=1")
    if os.geteuid() != 0:
        pytest.skip("install.sh chroot test needs root")
    if not (ROOTFS / ".complete").is_file():
        pytest.skip(f"no cached bookworm rootfs in {ROOTFS} (tests/test_container.py builds it)")
    root = Path("/var/tmp") / f"edge-holistic-install-test-{os.getpid()}"
    shutil.copytree(ROOTFS, root, symlinks=True)
    mounts = []
    try:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        mounts.append(root / "proc")
        shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
        (root / "usr/local/share/ca-certificates").mkdir(parents=True, exist_ok=True)
        for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(crt, root / "usr/local/share/ca-certificates" / crt.name)
        r = _chroot(root, "bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                    "--no-install-recommends python3 python3-venv ca-certificates >/dev/null && update-ca-certificates")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        src = root / "tmp" / "src"
        for rel in filter(None, subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                               text=True).stdout.split("\0")):
            if (REPO / rel).is_file():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, src / rel)
        (root / "usr/local/keepme").write_text("not ours\n")
        before = sorted(p.name for p in (root / "usr/local").iterdir())
        install = ["bash", "/tmp/src/scripts/install.sh", "--prefix", "/usr/local", "--no-enable"]

        r = _chroot(root, *install)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        venv = root / "usr/local/.venv"
        assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
        assert not (root / "usr/local/src/edge_holistic").exists() and not (root / "usr/local/models").exists()
        r = _chroot(root, "runuser", "-u", "edge-holistic", "--", "/usr/local/.venv/bin/edge-holistic", "models", "verify")
        assert r.returncode == 0 and ", 0 failed" in r.stdout, r.stdout + r.stderr
        assert (root / "etc/edge-holistic/config.yaml").is_file()
        assert (root / "var/lib/edge-holistic/models").is_dir()
        unit = (root / "etc/systemd/system/edge-holistic.service").read_text()
        assert "ExecStart=/usr/local/.venv/bin/edge-holistic run" in unit

        r = _chroot(root, *install, "--system-site-packages")  # re-run: upgrade, and the venv is recreated
        assert r.returncode == 0 and "recreating" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
        assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
        assert "kept the existing config" in r.stdout

        r = _chroot(root, "bash", "/tmp/src/scripts/install.sh", "--prefix", "/usr/local", "--uninstall")
        assert r.returncode == 0, r.stdout + r.stderr
        assert not venv.exists() and not (root / "etc/systemd/system/edge-holistic.service").exists()
        assert (root / "etc/edge-holistic/config.yaml").is_file()  # config kept without --purge
        assert sorted(p.name for p in (root / "usr/local").iterdir()) == before
        assert (root / "usr/local/keepme").read_text() == "not ours\n"
        r = _chroot(root, "bash", "/tmp/src/scripts/install.sh", "--prefix", "/usr/local", "--uninstall", "--purge")
        assert r.returncode == 0 and not (root / "etc/edge-holistic").exists(), r.stdout + r.stderr
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", str(m)])
        if not any(os.path.ismount(m) for m in mounts):  # never delete through a live /proc mount
            shutil.rmtree(root, ignore_errors=True)
