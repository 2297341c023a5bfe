"""systemd notifications without libsystemd: one datagram per message to $NOTIFY_SOCKET.

The protocol is stable API (sd_notify(3)): a leading '/' is a filesystem
AF_UNIX socket, a leading '@' an abstract-namespace one. Outside systemd
(no NOTIFY_SOCKET) every call is a cheap no-op, so the daemon runs the same
under systemd, in a terminal and in tests.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Optional

log = logging.getLogger("edge_holistic.health")


class Notifier:
    def __init__(self, address: Optional[str] = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]
        elif addr.startswith("/"):
            self.address = addr
        elif addr:
            log.warning("NOTIFY_SOCKET %r is not a unix socket path; systemd notifications disabled", addr)
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        """Send one state string (e.g. 'READY=1\\nSTATUS=...'); True when delivered."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self.address)
                s.sendall(message.encode("utf-8"))
            self._failed = False
            return True
        except OSError as e:
            if not self._failed:  # say it once, not on every ping
                log.warning("systemd notify failed: %s", e)
            self._failed = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={one_line(status)}" if status else ""))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={one_line(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1" + (f"\nSTATUS={one_line(status)}" if status else ""))


def one_line(text: str) -> str:
    return " ".join(str(text).split())[:200]


def watchdog_interval() -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when not requested.

    As sd_watchdog_enabled(3): honoured only if $WATCHDOG_PID is unset or is our pid.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; watchdog pings disabled", usec)
        return None
    return value / 2e6 if value > 0 else None
