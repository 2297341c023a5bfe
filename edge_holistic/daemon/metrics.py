"""One Metrics object: the frame loop and the publisher write it, stats/status/status-line read it.

Why one object: before, counters lived as loose attributes of the Daemon and each reader
picked what it needed; a counter added in one place was missing in the other. Writers
call small methods (one lock, a few integer updates per frame: ~2 µs, nothing next to a
20 ms inference); readers take a consistent :meth:`snapshot`.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Optional

LATENCY_WINDOW = 300  # frames kept per stage for p50/p95


class LatencyWindow:
    """Recent per-stage latencies; percentiles computed only when stats are due."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self.size = size
        self.stages: Dict[str, Deque[float]] = {}

    def add(self, timings: Dict[str, float]) -> None:
        for stage, ms in timings.items():
            d = self.stages.get(stage)
            if d is None:
                d = self.stages[stage] = deque(maxlen=self.size)
            d.append(float(ms))

    def summary(self) -> Dict[str, Dict[str, float]]:
        import numpy as np

        out = {}
        for stage, d in list(self.stages.items()):
            values = list(d)
            if values:
                p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
                out[stage] = {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}
        return out

    def p50(self, stage: str) -> Optional[float]:
        d = self.stages.get(stage)
        values = sorted(d) if d else []
        return float(values[len(values) // 2]) if values else None


class Metrics:
    """Counters and recent values of one daemon run. Thread-safe; monotonic counters only."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self.started_wall = time.time()
        self.submitted = 0  # frames handed to the engine
        self.processed = 0  # frames whose result reached the publisher (published or not)
        self.with_person = 0
        self.process_errors = 0  # frames the engine or message building failed on
        self.publish_errors = 0  # sink or frame-tap failures (the frame itself was fine)
        self.tap_errors = 0
        self.paused_skipped = 0  # frames captured while paused
        self.last_person = False
        self.last_progress = self.started  # monotonic time of the last processed frame (or a resume)
        self.loop_tick = self.started  # monotonic time the frame loop last went round
        self.thread_deaths: Dict[str, int] = {}
        self.thread_errors: Dict[str, str] = {}
        self.latency = LatencyWindow()
        self.latest: Optional[Dict[str, Any]] = None  # the last landmarks@1 message
        self._prev: Dict[str, Dict[str, Any]] = {}

    # -- writers ------------------------------------------------------------------------
    def frame_submitted(self) -> None:
        with self._lock:
            self.submitted += 1

    def frame_done(self, person: bool, timings: Dict[str, float], message: Optional[Dict[str, Any]]) -> None:
        """One frame went through the publisher (called on the publisher thread)."""
        now = self._clock()
        with self._lock:
            self.processed += 1
            self.with_person += int(bool(person))
            self.last_person = bool(person)
            self.last_progress = now
            self.latency.add(timings)
            if message is not None:
                self.latest = message

    def frame_failed(self) -> None:
        """A frame that failed (counted). Still progress: the process is not wedged, and a
        source sending only bad frames must be counted, not restarted for."""
        now = self._clock()
        with self._lock:
            self.process_errors += 1
            self.last_progress = now

    def publish_failed(self) -> None:
        with self._lock:
            self.publish_errors += 1

    def tap_failed(self) -> None:
        with self._lock:
            self.tap_errors += 1

    def progress(self) -> None:
        """Reset the 'no frame processed' clock (on resume, after a source swap)."""
        with self._lock:
            self.last_progress = self._clock()

    def tick(self) -> None:
        """The frame loop went round (read by the watchdog to tell 'wedged' from 'idle')."""
        self.loop_tick = self._clock()

    def thread_died(self, name: str, error: str) -> None:
        with self._lock:
            self.thread_deaths[name] = self.thread_deaths.get(name, 0) + 1
            self.thread_errors[name] = error

    # -- readers ------------------------------------------------------------------------
    def counts(self) -> Dict[str, Any]:
        with self._lock:
            return {"submitted": self.submitted, "processed": self.processed, "with_person": self.with_person,
                    "process_errors": self.process_errors, "publish_errors": self.publish_errors,
                    "tap_errors": self.tap_errors, "paused_skipped": self.paused_skipped,
                    "thread_deaths": dict(self.thread_deaths)}

    def rates(self, counts: Dict[str, float], reader: str = "mqtt") -> Dict[str, Any]:
        """Per-second rates of ``counts`` since this ``reader``'s previous call, and the interval.

        Each reader has its own baseline, so a web page polling stats does not shorten the
        interval of the MQTT ``stats`` messages.
        """
        now = self._clock()
        with self._lock:
            prev = self._prev.get(reader, {})
            dt = now - prev.get("t", self.started)
            fps = {k: round((v - prev.get(k, 0)) / dt, 2) if dt > 0 else 0.0 for k, v in counts.items()}
            self._prev[reader] = {"t": now, **counts}
        return {"interval_s": round(dt, 2), "fps": fps}

    def paused_frame(self) -> None:
        with self._lock:
            self.paused_skipped += 1

    def processed_fps(self, reader: str) -> float:
        """Processed frames per second since this ``reader``'s previous call (its own baseline,
        as :meth:`rates`): the terminal line (every second), the log line (every
        stats_interval) and systemd's STATUS= (every 5 s) each get the rate over their own period."""
        with self._lock:
            processed = self.processed
        return float(self.rates({"processed": processed}, reader="line:" + reader)["fps"]["processed"])

    def latency_summary(self) -> Dict[str, Dict[str, float]]:
        with self._lock:
            stages = {k: list(v) for k, v in self.latency.stages.items()}
        w = LatencyWindow()
        for k, v in stages.items():
            w.stages[k] = deque(v, maxlen=w.size)
        return w.summary()

    def latency_p50(self, stage: str) -> Optional[float]:
        with self._lock:
            return self.latency.p50(stage)

    def uptime(self) -> float:
        return self._clock() - self.started


# -- the documents read from Metrics (and the parts' own counters) ------------------------------
def status_document(metrics: Metrics, control, watchdog_state: str, health: tuple, stopping: bool) -> Dict[str, Any]:
    """The retained ``status`` document (never contains secrets)."""
    import os
    import socket
    from datetime import datetime, timezone

    from .. import __version__
    from ..runtime import backend_version, resolve_precision

    parts = control.parts
    cfg, engine, grabber = parts.cfg, parts.engine, parts.grabber
    opts = engine.effective_options if engine is not None else None
    try:
        backend = backend_version()
    except Exception:  # noqa: BLE001 - status must always build
        backend = "unavailable"
    healthy, reason = health
    return {
        "version": __version__,
        "state": "stopping" if stopping else control.state,
        "device_id": cfg.device_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "task": opts.task if opts else cfg.pipeline.task,
        "models": dict(engine.models) if engine is not None else {},
        "pose_model": opts.pose_model if opts else None,
        "hand_model": opts.hand_model if opts else None,
        "precision": resolve_precision(str(opts.precision)) if opts else None,
        "threads": opts.threads if opts else None,
        "max_fps": control.max_fps,
        "source": grabber.source.description if grabber is not None else None,
        "source_state": grabber.state if grabber is not None else None,
        "backend": backend,
        "config_hash": cfg.digest,
        "config_path": cfg.path,
        "config_error": control.config_error,
        "started": datetime.fromtimestamp(metrics.started_wall, timezone.utc).isoformat(timespec="seconds"),
        "start_ts": metrics.started_wall,
        "shed_load": dict(control.shed),
        "watchdog": watchdog_state,
        "healthy": bool(healthy),
        "health": reason,
    }


def engine_counts(engine) -> Dict[str, int]:
    c = getattr(engine, "counters", None)
    if c is None:
        return {}
    if isinstance(c, dict):
        return {k: int(v) for k, v in c.items()}
    return {k: int(getattr(c, k)) for k in ("submitted", "completed", "dropped", "failed") if hasattr(c, k)}


def stats_document(metrics: Metrics, control, memory, cpu_percent: float, watchdog_state: str,
                   health: tuple, publish_backlog: int, reader: str = "mqtt") -> Dict[str, Any]:
    from ..health import rss_bytes, temperature_c, throttled

    parts = control.parts
    grabber, session = parts.grabber, parts.session
    g = grabber.counters.as_dict() if grabber is not None else {}
    mc = session.counters if session is not None else None
    own = metrics.counts()
    eng = engine_counts(parts.engine)
    counts = {"captured": g.get("captured", 0), "processed": own["processed"], "dropped": g.get("dropped", 0),
              "engine_dropped": eng.get("dropped", 0), "published": mc.published if mc else 0}
    rates = metrics.rates(counts, reader)
    healthy, reason = health
    return {
        "ts": time.time(),
        "uptime_s": round(metrics.uptime(), 1),
        "interval_s": rates["interval_s"],
        "fps": rates["fps"],
        "frames": {**g, "submitted": own["submitted"], "processed_total": own["processed"],
                   "with_person": own["with_person"],
                   "process_errors": own["process_errors"],  # the engine's failures arrive on error_callback
                   "publish_errors": own["publish_errors"], "tap_errors": own["tap_errors"],
                   "paused_skipped": own["paused_skipped"], "engine_dropped": eng.get("dropped", 0),
                   "publish_backlog": publish_backlog},
        "latency_ms": metrics.latency_summary(),
        "cpu_percent": cpu_percent,
        "rss_mb": round(rss_bytes() / (1024 * 1024), 1),  # read now; the guard's last check may be 5 s old
        "memory": {"soft_mb": round(memory.soft_mb, 1), "hard_mb": round(memory.hard_mb, 1),
                   "cgroup_max_mb": memory.cgroup_max_mb, "level": memory.level},
        "temperature_c": temperature_c(),
        "throttled": throttled(),
        "stalls": g.get("stalls", 0),
        "reopens": g.get("reopens", 0),
        "source_state": grabber.state if grabber is not None else None,
        "mqtt": None if mc is None else {**session.stats_dict(),
                                         "commands_dropped": control.counters["commands_dropped"]},
        "control": dict(control.counters),
        "threads": {"deaths": own["thread_deaths"]},
        "paused": control.paused,
        "shed_load": control.shed.get("active", False),
        "watchdog": watchdog_state,
        "healthy": bool(healthy),
        "health": reason,
    }


def status_line(metrics: Metrics, control, health: tuple, reader: str) -> str:
    """One line for a person: the terminal, the log, systemd's STATUS=. ``reader`` names which
    (the fps is the rate since that reader's previous line)."""
    parts = control.parts
    p50 = metrics.latency_p50("total")
    broker = "off" if parts.session is None else parts.session.state
    src = parts.grabber.state if parts.grabber is not None else "-"
    out = [f"{metrics.processed_fps(reader):5.1f} fps", f"{p50:5.1f} ms" if p50 is not None else "   -- ms",
           f"person {'yes' if metrics.last_person else 'no '}", f"mqtt {broker}", f"source {src}"]
    if control.paused:
        out.append("PAUSED")
    if control.shed.get("active"):
        out.append("SHEDDING LOAD")
    if not health[0]:
        out.append(f"UNHEALTHY: {health[1]}")
    return " | ".join(out)
