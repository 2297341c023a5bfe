"""The memory guard: soft limit -> shed load, hard limit -> exit for systemd to restart us.

Limits come from the config, or default to fractions of the cgroup's
``memory.high`` / ``memory.max`` (systemd ``MemoryHigh=`` / ``MemoryMax=``) when set. RSS is read from
/proc/self/statm every ``memory_check_interval`` seconds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import HealthConfig
from .system import cgroup_limit, rss_bytes

MB = 1024 * 1024
SOFT_FRACTION = 0.85
HARD_FRACTION = 0.95
RECOVER_FRACTION = 0.8  # shedding stops when RSS falls below this fraction of the soft limit


@dataclass
class MemoryVerdict:
    rss_mb: float
    level: str  # ok | soft | hard
    changed: bool  # level differs from the previous check
    reason: str = ""


class MemoryGuard:
    def __init__(self, cfg: HealthConfig, cgroup_max: Optional[int] = -1, cgroup_high: Optional[int] = -1) -> None:
        limit = cgroup_limit("memory.max") if cgroup_max == -1 else cgroup_max
        high = cgroup_limit("memory.high") if cgroup_high == -1 else cgroup_high
        self.cgroup_max_mb = limit / MB if limit else None
        self.cgroup_high_mb = high / MB if high else None
        # Shed before the kernel starts throttling us at MemoryHigh, or else before MemoryMax.
        soft_base = self.cgroup_high_mb or self.cgroup_max_mb
        self.soft_mb = cfg.memory_soft_mb or (soft_base * SOFT_FRACTION if soft_base else 0.0)
        self.hard_mb = cfg.memory_hard_mb or (self.cgroup_max_mb * HARD_FRACTION if self.cgroup_max_mb else 0.0)
        if self.soft_mb and self.hard_mb and self.soft_mb >= self.hard_mb:
            self.soft_mb = self.hard_mb * SOFT_FRACTION
        self.level = "ok"
        self.rss_mb = 0.0

    def reconfigured(self, cfg: HealthConfig) -> "MemoryGuard":
        """A guard with the new limits that keeps this one's level and last reading.

        Why: a SIGHUP during load shedding used to build a fresh guard at level "ok"; the
        next check then saw no *change* back to ok, so shedding never ended (issue 10, #5).
        """
        new = MemoryGuard(cfg, cgroup_max=int(self.cgroup_max_mb * MB) if self.cgroup_max_mb else None,
                          cgroup_high=int(self.cgroup_high_mb * MB) if self.cgroup_high_mb else None)
        new.level = self.level
        new.rss_mb = self.rss_mb
        return new

    def check(self, rss: Optional[int] = None) -> MemoryVerdict:
        self.rss_mb = (rss if rss is not None else rss_bytes()) / MB
        prev = self.level
        reason = ""
        if self.hard_mb and self.rss_mb > self.hard_mb:
            self.level = "hard"
            reason = f"RSS {self.rss_mb:.0f} MB > hard limit {self.hard_mb:.0f} MB"
        elif self.soft_mb and self.rss_mb > self.soft_mb:
            self.level = "soft"
            reason = f"RSS {self.rss_mb:.0f} MB > soft limit {self.soft_mb:.0f} MB"
        elif self.level == "soft" and self.rss_mb > self.soft_mb * RECOVER_FRACTION:
            reason = f"RSS {self.rss_mb:.0f} MB still above {RECOVER_FRACTION:.0%} of the soft limit"
        else:
            self.level = "ok"
        return MemoryVerdict(round(self.rss_mb, 1), self.level, self.level != prev, reason)
