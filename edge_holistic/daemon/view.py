"""DaemonView: the ONE read/control facade of a running daemon for the web page and Home Assistant.

Everything it returns is built from the same objects the MQTT topics are built from —
``status()`` is the retained ``status`` document, ``stats()`` the ``stats`` document,
``command()`` goes through the same queue, validation and apply path as an MQTT ``cmd`` —
so a page, an HA entity and an MQTT subscriber can never disagree. Callers never reach
past it into the daemon's parts.

Threading: every method may be called from any thread. ``command`` blocks its caller
(up to ``timeout``) until the frame loop has applied the command between two frames.
Frame taps run on the publisher thread, in frame order, and must be cheap (copy what you
need, return): a slow tap delays every later message.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np


class DaemonView:
    """Read and control a running daemon. Built by ``app.Daemon``; tests may build one on fakes."""

    def __init__(self, daemon: Any) -> None:
        self._d = daemon

    def status(self) -> Dict[str, Any]:
        """The retained MQTT ``status`` document."""
        return self._d.status()

    def stats(self) -> Dict[str, Any]:
        """The MQTT ``stats`` document; its rates (fps, CPU) cover the time since this view's
        previous ``stats()`` call, without disturbing the interval of the MQTT messages."""
        return self._d.stats(reader="view")

    def latest(self) -> Optional[Dict[str, Any]]:
        """The last ``landmarks@1`` message (published or not), None before the first frame."""
        return self._d.metrics.latest

    def health(self) -> Tuple[bool, str]:
        """(healthy, reason): the same judgement the health thread makes for systemd."""
        return self._d.health()

    def memory_level(self) -> str:
        """The memory guard's level: "ok", or "soft" while load is shed (nothing new may load)."""
        return self._d.health_thread.memory.level

    def command(self, cmd: Dict[str, Any], origin: str, timeout: float = 5.0) -> Dict[str, Any]:
        """Apply ``cmd`` exactly as an MQTT ``cmd`` payload; returns its ``cmd/result`` document."""
        return self._d.control.command(cmd, origin, timeout)

    def add_frame_tap(self, fn: Callable[[np.ndarray, Any, Dict[str, Any]], None]) -> Callable[[], None]:
        """``fn(rgb, result, message)`` after each published frame; returns an unsubscribe."""
        return self._d.publisher.add_tap(fn)

    def installed_variants(self) -> Dict[str, list]:
        """What a ``set`` command may choose from on this install."""
        return self._d.installed_variants()

    @property
    def registry(self) -> Any:
        """The shared model registry (for web analyze / shadow)."""
        return self._d.registry

    @property
    def pool(self) -> Any:
        """The shared interpreter pool (for web analyze / shadow)."""
        return self._d.pool
