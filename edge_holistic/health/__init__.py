"""Self-checks: systemd notify/watchdog, memory guard, process and board readings."""
from .memory import MemoryGuard, MemoryVerdict
from .notify import Notifier, one_line, watchdog_interval
from .system import CpuMeter, cgroup_dir, cgroup_limit, rss_bytes, temperature_c, throttled

__all__ = [
    "CpuMeter", "MemoryGuard", "MemoryVerdict", "Notifier", "cgroup_dir", "cgroup_limit", "one_line",
    "rss_bytes", "temperature_c", "throttled", "watchdog_interval",
]
