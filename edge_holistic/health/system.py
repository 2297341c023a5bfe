"""Process and board readings for stats and the memory guard: /proc and /sys only, no psutil.

Why no psutil: one less native wheel to build on a Pi, and the few numbers we
need are one read each.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional

PAGE = os.sysconf("SC_PAGE_SIZE")
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under_voltage", 1: "freq_capped", 2: "throttled", 3: "soft_temp_limit",
    16: "under_voltage_occurred", 17: "freq_capped_occurred", 18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}


def rss_bytes(statm: str = "/proc/self/statm") -> int:
    """Resident set size: second field of statm, in pages."""
    with open(statm) as f:
        return int(f.read().split()[1]) * PAGE


def cgroup_dir(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> Optional[Path]:
    """This process's cgroup v2 directory (the unified '0::/path' line), or None."""
    try:
        with open(proc_cgroup) as f:
            for line in f:
                if line.startswith("0::"):
                    d = Path(root) / line[3:].strip().lstrip("/")
                    return d if d.is_dir() else None
    except OSError:
        return None
    return None


def cgroup_limit(name: str = "memory.max", directory: Optional[Path] = None) -> Optional[int]:
    """The cgroup's memory.max / memory.high in bytes; None when unset ('max') or unavailable.

    Pi kernels often run with the memory controller off: then the file is missing and
    our own RSS check is the only guard.
    """
    d = directory if directory is not None else cgroup_dir()
    if d is None:
        return None
    try:
        text = (d / name).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def temperature_c(path: Path = THERMAL_ZONE) -> Optional[float]:
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def throttled() -> Optional[Dict[str, object]]:
    """Decoded `vcgencmd get_throttled` on a Pi, or None where there is no vcgencmd."""
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        value = int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return {"raw": hex(value), "flags": [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]}


class CpuMeter:
    """Process CPU % (100 = one core busy) between successive calls."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), self._cpu())

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system

    def percent(self) -> float:
        now, cpu = time.monotonic(), self._cpu()
        wall = now - self._last[0]
        pct = 100.0 * (cpu - self._last[1]) / wall if wall > 0 else 0.0
        self._last = (now, cpu)
        return round(pct, 1)
