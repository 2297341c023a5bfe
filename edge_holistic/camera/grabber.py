"""The capture thread: reads a source continuously and keeps only the newest frame.

Why a thread: pose inference is slower than a camera, and a camera (or its
driver queue) that is not read keeps delivering ever older frames. Reading in
the background and overwriting the single slot means the pipeline always gets
the freshest frame; overwritten frames are counted as dropped.

For recorded sources played "as fast as possible" (``realtime: false``) nothing may
be dropped, but decoding must not wait for processing either: the thread decodes
ahead into a small bounded queue (``LOSSLESS_AHEAD`` frames) and waits only when it is
full. Before, it decoded one frame and waited until it was taken — lock-step, which
cost the daemon half its pose fps on a 720p file (bench 108 fps, daemon 55; issue 9).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Deque, Dict, Optional

import numpy as np

from .sources import EndOfStream, Source, SourceError

log = logging.getLogger("edge_holistic.camera")

BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
BAD_FRAME_PAUSE = 0.01
BAD_FRAME_PAUSE_MAX = 0.16
LOSSLESS_AHEAD = 4  # decoded frames waiting for the engine (a 720p RGB frame is 2.7 MB)


@dataclass
class Frame:
    rgb: np.ndarray  # H x W x 3 uint8, RGB
    seq: int  # 1, 2, ... over the grabber's life (survives reopens)
    t_capture: float  # time.monotonic() when read
    wall_ts: float  # time.time() when read, for messages


@dataclass
class CaptureCounters:
    """Monotonic counters; rates are computed by whoever samples them."""

    captured: int = 0  # frames read successfully
    processed: int = 0  # frames handed to the consumer
    dropped: int = 0  # frames overwritten before the consumer took them
    bad_frames: int = 0  # reads that gave no usable frame (corrupt, timeout, unreadable file)
    stalls: int = 0  # times no frame came for stall_timeout
    reopens: int = 0  # successful opens after the first
    open_failures: int = 0
    errors: int = 0  # source errors during read

    def as_dict(self) -> Dict[str, int]:
        return asdict(self)


class FrameGrabber:
    """Owns a Source and its thread. ``get()`` hands out the newest frame not yet taken."""

    def __init__(self, source: Source, stall_timeout: float, lossless: Optional[bool] = None,
                 on_event: Optional[Callable[[str, str], None]] = None) -> None:
        self.source = source
        self.stall_timeout = float(stall_timeout)
        self.lossless = (not source.live and not getattr(source.cfg, "realtime", True)) if lossless is None \
            else lossless
        self.counters = CaptureCounters()
        self.state = "starting"  # starting | running | reopening | ended | stopped
        self.last_error = ""
        self.ended = threading.Event()
        self._on_event = on_event or (lambda kind, text: None)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._frames: Deque[Frame] = deque()  # live: at most the newest one; lossless: up to LOSSLESS_AHEAD
        self._ahead = LOSSLESS_AHEAD if self.lossless else 1
        self._seq = 0
        self._last_frame_t = time.monotonic()  # the last real frame: what "source down" is judged by
        self._stall_from = self._last_frame_t  # the last frame or (re)open: what a stall is timed from
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._closed = False
        self._close_lock = threading.Lock()

    # -- consumer side ------------------------------------------------------------------
    def start(self) -> "FrameGrabber":
        self.thread.start()
        return self

    def get(self, timeout: float) -> Optional[Frame]:
        """The next frame (live: the newest not yet taken), waiting up to ``timeout``; None if none came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._frames and not self._stop.is_set() and not self.ended.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self.counters.processed += 1
            self._cond.notify_all()
            return frame

    @property
    def waiting(self) -> int:
        """Frames decoded and not yet taken."""
        with self._cond:
            return len(self._frames)

    @property
    def last_frame_age(self) -> float:
        return time.monotonic() - self._last_frame_t

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the thread and release the device (cleanly, so Argus/V4L2 are not left busy)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self.thread.ident is not None:  # built but never started (a reload that was rejected): no join
            self.thread.join(timeout)
        if self.thread.is_alive():
            # A read blocked for good is a dead device; releasing it is what can unblock the
            # read (V4L2, libcamera), and skipping it left the device busy for the next open.
            log.warning("capture thread did not stop within %.1f s (source blocked in read); "
                        "closing the source under it", timeout)
        self._close_source()
        self.state = "stopped"

    def _close_source(self) -> None:
        """Close once, whoever gets here first (stop() or the capture thread on its way out)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.source.close()
        except Exception as e:  # noqa: BLE001 - a failing close must not stop the shutdown
            log.warning("closing %s failed: %s", self.source.description, e)

    # -- capture thread -----------------------------------------------------------------
    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; False when stopping."""
        return not self._stop.wait(seconds)

    def _open(self, first: bool, backoff: float) -> bool:
        self._closed = False
        try:
            self.source.open()
        except (SourceError, OSError) as e:
            self.counters.open_failures += 1
            self.last_error = str(e)
            log.warning("cannot open %s: %s; retrying in %.1f s", self.source.description, e, backoff)
            self._on_event("open_failed", str(e))
            return False
        except Exception as e:  # a driver/library error must not kill the capture thread
            self.counters.open_failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("cannot open %s: %s; retrying in %.1f s", self.source.description, self.last_error, backoff)
            return False
        if not first:
            self.counters.reopens += 1
            log.info("reopened %s (reopen #%d)", self.source.description, self.counters.reopens)
            self._on_event("reopened", self.source.description)
        self.state = "running"
        self._stall_from = time.monotonic()
        return True

    def _wait(self, backoff: float) -> Optional[float]:
        """Sleep ``backoff``; the next, doubled and capped, or None when stopping (one schedule for every retry)."""
        if not self._sleep(backoff):
            return None
        return min(backoff * 2, BACKOFF_MAX)

    def _reopen_after(self, event: str, detail: str, backoff: float) -> Optional[float]:
        """A read error and a stall are recovered alike: say so, close, wait; the caller opens again.

        Returns the next backoff, or None when stopping.
        """
        self._on_event(event, detail)
        self.state = "reopening"
        try:
            self.source.close()
        except Exception as e:  # noqa: BLE001 - closing a failed device may fail too
            log.debug("closing %s failed: %s", self.source.description, e)
        return self._wait(backoff)

    def _run(self) -> None:
        try:
            self._capture()
        except Exception as e:  # noqa: BLE001 - logged and visible as state "failed"
            self.state = "failed"
            self.last_error = f"capture thread died: {type(e).__name__}: {e}"
            log.exception("capture thread died")
        finally:
            if self._stop.is_set() or self.state == "failed":
                self._close_source()
            with self._cond:
                self._cond.notify_all()

    @property
    def alive(self) -> bool:
        """The capture thread runs (or has ended normally: end of stream, stop)."""
        return self.thread.is_alive() or self.state in ("ended", "stopped")

    def _capture(self) -> None:
        opened = False
        first = True
        backoff = BACKOFF_MIN
        bad_run = 0  # reads in a row that gave no frame
        while not self._stop.is_set():
            if not opened:
                opened = self._open(first, backoff)
                first = False
                if not opened:
                    wait = self._wait(backoff)
                    if wait is None:
                        break
                    backoff = wait
                    continue
            try:
                rgb = self.source.read()
            except EndOfStream:
                log.info("%s: end of stream", self.source.description)
                self.state = "ended"
                self.ended.set()
                with self._cond:
                    self._cond.notify_all()
                return
            except Exception as e:  # SourceError, cv2.error, OSError: reopen, never crash
                self.counters.errors += 1
                self.last_error = f"{e}"
                log.warning("%s failed: %s; reopening in %.1f s", self.source.description, e, backoff)
                opened = False
                wait = self._reopen_after("error", str(e), backoff)
                if wait is None:
                    break
                backoff = wait
                continue
            now = time.monotonic()
            if rgb is None:
                self.counters.bad_frames += 1
                bad_run += 1
                if bad_run > 1:
                    # A device whose read() fails at once used to spin a core until stall_timeout:
                    # 10, 20, 40 ... 160 ms between attempts (a real camera's frame period or more).
                    if not self._sleep(min(BAD_FRAME_PAUSE_MAX, BAD_FRAME_PAUSE * 2 ** min(bad_run - 2, 6))):
                        break
                if now - self._stall_from > self.stall_timeout:
                    self.counters.stalls += 1
                    self.last_error = f"no frame for {now - self._last_frame_t:.1f} s"
                    log.warning("%s: no frame for %.1f s (stall #%d); reopening in %.1f s",
                                self.source.description, now - self._last_frame_t, self.counters.stalls, backoff)
                    opened = False
                    wait = self._reopen_after("stall", self.last_error, backoff)
                    if wait is None:
                        break
                    backoff = wait
                continue
            backoff = BACKOFF_MIN
            bad_run = 0
            self._last_frame_t = self._stall_from = now
            with self._cond:
                self._seq += 1
                if not self.lossless and self._frames:
                    self._frames.clear()  # live: the newer frame wins
                    self.counters.dropped += 1
                self._frames.append(Frame(rgb=rgb, seq=self._seq, t_capture=now, wall_ts=time.time()))
                self.counters.captured += 1
                self._cond.notify_all()
                while self.lossless and len(self._frames) >= self._ahead and not self._stop.is_set():
                    self._cond.wait(0.5)  # decoded far enough ahead: wait for the engine to take one
        self.state = "stopped"
