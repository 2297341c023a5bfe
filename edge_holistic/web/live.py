"""What the live page shows: the annotated MJPEG stream and the pushed numbers.

Both are fed by frame taps (``DaemonView.add_frame_tap``), which run on the
daemon's publisher thread and so must cost next to nothing there:

- ``FrameHub`` subscribes its tap only while someone watches ``/stream.mjpg``.
  The tap keeps a reference to the newest frame and result (no copy, no
  drawing) at most ``max_fps`` times a second and wakes the server's loop;
  drawing (``draw.py``) and JPEG encoding run in a worker thread of the web
  server, once per frame for every watcher together. A watcher that reads
  slowly gets the newest frame when it is ready for one (never a backlog), and
  one that does not read for ``WRITE_TIMEOUT_S`` is disconnected.
- ``LiveNumbers`` counts frames, keeps the last latency and person flag: a few
  attribute writes per frame, always on.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional

log = logging.getLogger(__name__)

STREAM_MAX_FPS = 10.0  # watchers see at most this many frames a second
STREAM_MAX_WIDTH = 960  # frames wider than this are scaled down before drawing (CPU and bandwidth)
JPEG_QUALITY = 75
WRITE_TIMEOUT_S = 10.0
BOUNDARY = "edgeholisticframe"


class FrameHub:
    """Draws and encodes live frames only while at least one client watches."""

    def __init__(self, view: Any, loop: asyncio.AbstractEventLoop, executor, metrics=None,
                 max_fps: float = STREAM_MAX_FPS) -> None:
        self.view = view
        self.loop = loop
        self.executor = executor
        self.metrics = metrics
        self.min_interval = 1.0 / max_fps
        self.watchers = 0
        self.jpeg: Optional[bytes] = None
        self.seq = 0
        self._lock = threading.Lock()
        self._pending: Optional[tuple] = None  # (rgb, result), written by the tap
        self._last_taken = 0.0
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: Optional[asyncio.Task] = None
        self.encoded = 0
        self.tap_calls = 0

    # -- publisher thread ---------------------------------------------------------------
    def _tap(self, rgb: Any, result: Any, message: Any) -> None:
        now = time.monotonic()
        self.tap_calls += 1
        if now - self._last_taken < self.min_interval:
            return
        self._last_taken = now
        with self._lock:
            self._pending = (rgb, result)
        try:
            self.loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # loop closed while stopping
            pass

    # -- server loop -----------------------------------------------------------------------
    @staticmethod
    def encode_frame(rgb: Any, result: Any) -> Optional[bytes]:
        """One stream frame: scaled to STREAM_MAX_WIDTH, annotated, JPEG."""
        import cv2

        from ..draw import draw_result

        h, w = rgb.shape[:2]
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if w > STREAM_MAX_WIDTH:
            bgr = cv2.resize(bgr, (STREAM_MAX_WIDTH, round(h * STREAM_MAX_WIDTH / w)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", draw_result(bgr, result), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return buf.tobytes() if ok else None

    async def _encoder(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                item, self._pending = self._pending, None
            if item is None:
                continue
            try:
                jpeg = await self.loop.run_in_executor(self.executor, self.encode_frame, *item)
            except Exception as e:  # noqa: BLE001 - a bad frame must not end the stream
                log.warning("mjpeg: cannot encode a frame: %s", e)
                continue
            if jpeg is None:
                continue
            self.encoded += 1
            if self.metrics is not None:
                self.metrics.stream_frames.inc()
            async with self._changed:
                self.jpeg = jpeg
                self.seq += 1
                self._changed.notify_all()

    def _subscribe(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.view.add_frame_tap(self._tap)
            self._task = self.loop.create_task(self._encoder())
            log.info("mjpeg: first watcher; drawing live frames")

    def _unsubscribe_all(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            log.info("mjpeg: no watcher left; frames are no longer drawn")
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.jpeg = None
        with self._lock:
            self._pending = None

    async def next_frame(self, after: int, timeout: float) -> Optional[tuple]:
        """(seq, jpeg) newer than ``after``, or None after ``timeout`` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.seq > after and self.jpeg is not None),
                                       timeout)
            except asyncio.TimeoutError:
                return None
            return self.seq, self.jpeg

    def enter(self) -> None:
        self.watchers += 1
        if self.metrics is not None:
            self.metrics.stream_watchers.set(self.watchers)
        self._subscribe()

    def leave(self) -> None:
        self.watchers -= 1
        if self.metrics is not None:
            self.metrics.stream_watchers.set(self.watchers)
        if self.watchers <= 0:
            self.watchers = 0
            self._unsubscribe_all()

    def close(self) -> None:
        self._unsubscribe_all()


class LiveNumbers:
    """fps, latency and person flag of the live stream, from an always-on frame tap."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self._times: Deque[float] = deque(maxlen=512)
        self.latency_ms: Optional[float] = None
        self.person = False
        self.frames = 0
        self.models: Dict[str, str] = {}

    def tap(self, rgb: Any, result: Any, message: Any) -> None:
        self._times.append(time.monotonic())
        self.frames += 1
        self.latency_ms = (result.latency_ms or {}).get("total")
        self.person = bool(result.person)
        if result.models != self.models:
            self.models = dict(result.models)

    def fps(self) -> float:
        now = time.monotonic()
        times = [t for t in list(self._times) if now - t <= self.window_s]
        if len(times) < 2:
            return 0.0
        span = max(now - times[0], 1e-6)
        return round(len(times) / span, 2) if span > 0.2 else 0.0
