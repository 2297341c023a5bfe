"""Health judgement (pure) and the health thread (systemd watchdog, memory guard, supervision).

Two questions, kept apart on purpose:

* :func:`judge` — is the daemon doing its job? (``healthy``, ``reason``). Red for a source
  that is down, a dead thread, a wedged process. This is what ``status``/``stats``, the web
  page and Home Assistant show (``DaemonView.health``).
* :func:`wedged` — can only a restart help? Only then are systemd ``WATCHDOG=1`` pings
  withheld. A source that is down is *not* wedged: the grabber already retries with
  backoff, and a restart would reload and checksum every model (≈2-4 s of CPU on a Pi 4)
  and dump core on an SD card every ~95 s, for nothing (issue 10, item 7).

Both are pure functions of a :class:`Readings` snapshot, so every rule has a unit test
without threads or clocks (tests/test_watchdog.py). The thread only gathers readings,
pings, runs the memory guard (its only caller) and hands shedding requests to control.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

log = logging.getLogger("edge_holistic.health")

STATUS_EVERY_S = 5.0


@dataclass(frozen=True)
class Readings:
    """What the judgement needs, sampled at one instant (ages in seconds)."""

    unhealthy_after: float
    stall_timeout: float = 10.0
    paused: bool = False
    source_state: str = "running"  # the grabber's: starting | running | reopening | ended | stopped
    source_error: str = ""
    last_frame_age: float = 0.0  # since the grabber last captured a frame
    progress_age: float = 0.0  # since a frame last came out of the engine (or since start / resume)
    loop_age: float = 0.0  # since the frame loop last went round
    dead_threads: Tuple[str, ...] = ()  # supervised threads found dead right now
    critical_dead: Tuple[str, ...] = ()  # the subset without which nothing is published
    memory_level: str = "ok"


def source_down(r: Readings) -> Optional[str]:
    """Why the source gives no frames (None when it does)."""
    if r.source_state in ("ended", "stopped"):
        return None
    if r.source_state in ("starting", "reopening") and r.last_frame_age > r.stall_timeout:
        return f"source down ({r.source_state}, no frame for {r.last_frame_age:.0f} s)" + \
            (f": {r.source_error}" if r.source_error else "")
    if r.last_frame_age > max(r.stall_timeout, 1.0):
        return f"source down (no frame for {r.last_frame_age:.0f} s)" + \
            (f": {r.source_error}" if r.source_error else "")
    return None


def wedged(r: Readings) -> Optional[str]:
    """The reason only a restart can help, or None. Only this withholds watchdog pings."""
    limit = r.unhealthy_after
    if r.critical_dead:
        return "thread died: " + ", ".join(r.critical_dead)
    if r.loop_age > limit:
        return f"frame loop stuck for {r.loop_age:.0f} s"
    # Frames arrive but none come out: an inference, the engine or the publisher is stuck.
    if not r.paused and r.progress_age > limit and r.last_frame_age <= r.stall_timeout:
        return f"no frame processed for {r.progress_age:.0f} s while the source delivers"
    return None


def judge(r: Readings) -> Tuple[bool, str]:
    """(healthy, reason): red when wedged, when the source is down, or when a thread is dead."""
    reason = wedged(r)
    if reason:
        return False, reason
    down = source_down(r)
    if down:
        return False, down
    if r.dead_threads:
        return False, "thread died: " + ", ".join(r.dead_threads)
    if r.memory_level == "soft":
        return True, "shedding load (memory soft limit)"
    return True, ""


def _kind(reason: str) -> str:
    """A verdict without its changing numbers: 'source down (reopening, no frame for 19 s)' -> 'source down'."""
    return reason.split(" (", 1)[0].split(":", 1)[0]


@dataclass
class Watched:
    """A supervised thread: ``get`` returns the current Thread (it changes on a reload)."""

    name: str
    get: Callable[[], Optional[threading.Thread]]
    critical: bool = True


class ThreadSupervisor:
    """Notices supervised threads that died; each death is logged once and counted."""

    def __init__(self, on_death: Callable[[str, str], None]) -> None:
        self._watched: Dict[str, Watched] = {}
        self._lock = threading.Lock()
        self._reported: Dict[str, int] = {}  # name -> id() of the dead Thread already reported
        self._on_death = on_death

    def watch(self, name: str, get: Callable[[], Optional[threading.Thread]], critical: bool = True) -> None:
        with self._lock:
            self._watched[name] = Watched(name, get, critical)

    def check(self) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        """(dead, critical dead) right now; reports each newly dead thread once."""
        with self._lock:
            watched = list(self._watched.values())
        dead, critical = [], []
        for w in watched:
            try:
                t = w.get()
            except Exception:  # noqa: BLE001 - a getter on a half-built part: not a death
                continue
            if t is None or t.ident is None or t.is_alive():  # absent, not started yet, or fine
                continue
            dead.append(w.name)
            if w.critical:
                critical.append(w.name)
            if self._reported.get(w.name) != id(t):
                self._reported[w.name] = id(t)
                log.error("thread %s died", w.name)
                self._on_death(w.name, "found dead")
        return tuple(dead), tuple(critical)


def supervised(name: str, target: Callable[[], None], on_death: Callable[[str, str], None]) -> Callable[[], None]:
    """Wrap a thread body so an exception escaping it is logged and counted, never silent."""

    def run() -> None:
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - the point is to see it
            log.exception("thread %s died: %s", name, e)
            on_death(name, f"{type(e).__name__}: {e}")

    return run


class HealthThread:
    """Every ``tick``: gather readings, judge, ping systemd, check memory, update STATUS=.

    ``read`` returns a fresh :class:`Readings`; ``memory`` is the MemoryGuard (its only
    caller is this thread); ``on_shed(level, reason)`` hands a change of memory level to
    control (one atomic hand-over, coalesced there); ``on_hard(reason)`` ends the process.
    """

    def __init__(self, notifier, watchdog_every: Optional[float], read: Callable[[], Readings],
                 memory, memory_interval: Callable[[], float], on_shed: Callable[[str, str], None],
                 on_hard: Callable[[str], None], status_line: Callable[[], str],
                 on_death: Callable[[str, str], None], clock=time.monotonic) -> None:
        self.notifier = notifier
        self.watchdog_every = watchdog_every
        self.read = read
        self.memory = memory
        self.memory_interval = memory_interval
        self.on_shed = on_shed
        self.on_hard = on_hard
        self.status_line = status_line
        self.clock = clock
        self.state = "off" if not watchdog_every else "pinging"
        self.last: Tuple[bool, str] = (True, "")
        self.on_change: Optional[Callable[[], None]] = None  # verdict changed (not just its numbers)
        self._stop = threading.Event()
        self._on_death = on_death
        self.thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=supervised("health", self._run, self._on_death), name="health", daemon=True)

    def start(self) -> "HealthThread":
        self.thread.start()
        return self

    def restart(self) -> None:
        """Start a fresh thread after the old one died (the frame loop calls this)."""
        if not self.thread.is_alive() and not self._stop.is_set():
            self.thread = self._new_thread()
            self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def set_memory(self, memory) -> None:
        self.memory = memory

    def step(self, now: float, due: Dict[str, float]) -> bool:
        """One round; False when the process must end (memory hard limit)."""
        r = self.read()
        healthy, reason = judge(r)
        stuck = wedged(r)
        if self.watchdog_every:
            if not stuck and now >= due.get("ping", 0.0):
                self.notifier.watchdog()
                due["ping"] = now + self.watchdog_every
            if not stuck and self.state != "pinging":
                log.info("no longer wedged; watchdog pings resumed")
            if stuck and self.state == "pinging":
                log.error("wedged (%s): watchdog pings stopped, systemd will restart the service", stuck)
            self.state = "withheld" if stuck else "pinging"
        if self.on_change is not None and (healthy, _kind(reason)) != (self.last[0], _kind(self.last[1])):
            self.on_change()  # the retained status carries the verdict: republish it when it changes
        if (healthy, reason) != self.last and not healthy:
            log.warning("unhealthy: %s", reason)
        elif not self.last[0] and healthy:
            log.info("healthy again")
        self.last = (healthy, reason)
        if now >= due.get("memory", 0.0):
            due["memory"] = now + self.memory_interval()
            verdict = self.memory.check()
            if verdict.level == "hard":
                self.on_hard(verdict.reason)
                return False
            if verdict.changed:
                self.on_shed(verdict.level, verdict.reason)
        if now >= due.get("status", 0.0):
            due["status"] = now + STATUS_EVERY_S
            self.notifier.status(self.status_line())
        return True

    def _run(self) -> None:
        tick = min(1.0, self.watchdog_every or 1.0)
        due: Dict[str, float] = {}
        while not self._stop.wait(tick):
            if not self.step(self.clock(), due):
                return
