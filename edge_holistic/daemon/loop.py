"""The frame loop and the publisher: capture → ``engine.submit`` → publisher thread.

The main thread only takes frames from the grabber, applies queued changes between
frames (:class:`~.control.Control`) and submits to the engine in live mode, which returns
at once. Results come back in frame order on the engine's result callback; the
:class:`Publisher` queues them to its own thread, which builds the ``landmarks@1``
message, hands it to the sinks and the frame taps, and records the frame in Metrics.

Why a publisher thread instead of publishing in the callback: the callback runs on an
engine worker, and JSON encoding a holistic message (543 points, ~17 KB) costs ~1 ms that
would otherwise sit between two inferences. The queue between them is small and bounded;
when it is full the callback waits, which backs the engine up, which then drops the newest
waiting frame (counted by the engine) — memory never grows.

``latency_ms.total`` in each message is capture → hand-over to the sinks, so it includes
any wait for earlier frames in flight; the engine's own submit → result time is
``latency_ms.engine``.
"""
from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

log = logging.getLogger("edge_holistic.daemon")

PUBLISH_QUEUE = 8  # results waiting for the publisher; > engine max_in_flight so it rarely fills
_STOP = object()


class Publisher:
    """Message, sinks and frame taps for every result, in frame order, on one thread."""

    def __init__(self, metrics, sinks: Callable[[], List[Any]], device_id: Callable[[], str],
                 on_models: Callable[[Dict[str, str]], None] = lambda models: None,
                 on_death: Callable[[str, str], None] = lambda name, error: None,
                 maxsize: int = PUBLISH_QUEUE) -> None:
        from ..health.watchdog import supervised

        self.metrics = metrics
        self.sinks = sinks
        self.device_id = device_id
        self.on_models = on_models
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=maxsize)
        self._taps: List[Callable] = []
        self._taps_lock = threading.Lock()
        self._models: Optional[Dict[str, str]] = None
        self._errors_logged = 0
        self.dropped = 0  # results dropped because the publisher thread was gone
        self.thread = threading.Thread(target=supervised("publisher", self._run, on_death), name="publisher",
                                       daemon=True)

    # -- engine side ------------------------------------------------------------------------
    def start(self) -> "Publisher":
        self.thread.start()
        return self

    def on_result(self, result: Any, meta: Any) -> None:
        """The engine's result callback: hand over, waiting while the queue is full."""
        item = (result, meta)
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    self.dropped += 1
                    return

    def on_error(self, error: BaseException, meta: Any) -> None:
        """A frame the engine failed on: counted, logged (rate-limited), never raised."""
        self.on_result(error if isinstance(error, BaseException) else RuntimeError(str(error)), meta)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def add_tap(self, fn: Callable) -> Callable[[], None]:
        with self._taps_lock:
            self._taps = self._taps + [fn]

        def unsubscribe() -> None:
            with self._taps_lock:
                self._taps = [t for t in self._taps if t is not fn]

        return unsubscribe

    def drain(self, timeout: float) -> bool:
        """Wait until every queued result is published (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def stop(self, timeout: float = 3.0) -> None:
        self.drain(timeout)
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass
        if self.thread.ident is not None:
            self.thread.join(timeout)

    # -- publisher thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._publish(*item)
            finally:
                self._queue.task_done()

    def log_error(self, what: str, meta: Any, e: BaseException) -> None:
        self._errors_logged += 1
        if self._errors_logged <= 5 or self._errors_logged % 100 == 0:
            log.error("%s frame %s failed (%d so far): %s: %s", what, getattr(meta, "seq", "?"),
                      self._errors_logged, type(e).__name__, e)

    def _publish(self, result: Any, meta: Any) -> None:
        from ..message import build_message, dumps

        if isinstance(result, BaseException):
            self.metrics.frame_failed()
            self.log_error("processing", meta, result)
            return
        try:  # everything about this one frame stays inside this try: a NaN cannot escape
            if result.models != self._models:
                if self._models is not None:
                    self.on_models(dict(result.models))
                self._models = dict(result.models)
            msg = build_message(result, source=self.device_id(), seq=meta.seq, ts=meta.wall_ts)
            timings = dict(msg["latency_ms"])
            timings["engine"] = timings.pop("total", 0.0)
            sinks = self.sinks()
            timings["total"] = (time.monotonic() - meta.t_capture) * 1e3
            msg["latency_ms"] = {k: round(float(v), 3) for k, v in timings.items()}
            payload = dumps(msg).encode() if sinks else None
        except Exception as e:  # noqa: BLE001 - one bad frame must not end a years-long run
            self.metrics.frame_failed()
            self.log_error("building the message of", meta, e)
            return
        t0 = time.perf_counter()
        for sink in sinks:
            try:
                sink.publish(msg, payload)
            except Exception as e:  # noqa: BLE001 - a sink's failure is the sink's, not the frame's
                self.metrics.publish_failed()
                self.log_error(f"sink {type(sink).__name__} on", meta, e)
        if sinks:
            timings["publish"] = (time.perf_counter() - t0) * 1e3
        for tap in self._taps:
            try:
                tap(meta.rgb, result, msg)
            except Exception as e:  # noqa: BLE001
                self.metrics.tap_failed()
                self.log_error("a frame tap on", meta, e)
        self.metrics.frame_done(result.person, timings, msg)


class FrameLoop:
    """The main thread: changes between frames, pacing, capture → submit, periodic reports."""

    def __init__(self, control, metrics, publisher: Publisher, report: Callable[[float, bool], None],
                 stop_reason: Callable[[], Optional[str]], tty_line: Optional[Callable[[], str]] = None) -> None:
        self.control = control
        self.metrics = metrics
        self.publisher = publisher
        self.report = report  # periodic stats/status publishing: report(now, status_changed)
        self.stop_reason = stop_reason  # "SIGTERM", "memory", ... or None to go on
        self.tty_line = tty_line
        self._next_due = 0.0
        self._next_line = 0.0

    def _pace(self, now: float) -> bool:
        """True when the next frame may be taken now (max_fps)."""
        max_fps = self.control.max_fps
        if max_fps <= 0:
            self._next_due = 0.0
            return True
        if now < self._next_due:
            time.sleep(min(self._next_due - now, 0.1))
            return False
        self._next_due = max(self._next_due + 1.0 / max_fps, now) if self._next_due else now + 1.0 / max_fps
        return True

    def run(self) -> str:
        """Until a stop is requested or a finite source ends; returns why it stopped."""
        m = self.metrics
        while True:
            m.tick()
            reason = self.stop_reason()
            if reason:
                return reason
            changed = self.control.apply_pending() if self.control.pending else False
            now = time.monotonic()
            self.report(now, changed)
            if self.tty_line is not None and now >= self._next_line:
                self._next_line = now + 1.0
                sys.stderr.write("\r\x1b[K" + self.tty_line())
                sys.stderr.flush()
            parts = self.control.parts
            if self.control.paused and parts.grabber.lossless:
                time.sleep(0.1)  # a lossless file waits for resume (taking frames would skip them)
                continue
            if not self._pace(now):
                continue
            frame = parts.grabber.get(timeout=0.1)
            if frame is None:
                if parts.grabber.ended.is_set() and not self.control.pending:
                    log.info("source ended (--once): stopping")
                    return "ended"
                continue
            if self.control.paused:  # a camera keeps being read (fresh frames on resume); frames skipped
                m.paused_frame()
                continue
            try:  # a frame the engine refuses (zero-size, odd shape, timestamp) is one counted error
                parts.engine.submit(frame.rgb, frame.t_capture, meta=frame, block=parts.grabber.lossless)
            except Exception as e:  # noqa: BLE001 - one bad frame must not end a years-long run
                m.frame_failed()
                self.publisher.log_error("submitting", frame, e)
                continue
            m.frame_submitted()
