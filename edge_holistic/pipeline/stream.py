"""Frame streams: the pose of the next frame overlapped with this frame's face and hands.

Why: in tracking mode the pose of frame i+1 needs only frame i's *pose* (its ROI comes
from the previous pose landmarks), never frame i's face or hands. So while one core
runs the face and hand models of frame i, the other can already run the pose model of
frame i+1: throughput approaches (pose + face + hands) / cores instead of their sum.
LiteRT releases the GIL inside ``invoke``, so plain threads give real parallelism.
Each part (face, left hand, right hand) has its own single-thread queue, so a part's
frames run strictly in order and its tracker is only ever touched by that thread (the
pose tracker only by the caller's); there is no barrier between frames, up to
``MAX_IN_FLIGHT`` frames may be in progress, and results come out in frame order.
MediaPipe's own graph scheduler overlaps consecutive frames the same way.

Overlap needs a free second core to pay off; by default (``schedule="auto"``) the stream
measures overlapped against one-model-after-the-other scheduling every so often and
keeps the faster (:class:`ScheduleChooser`), so a busy board does not lose throughput.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .task import Pipeline, as_rgb
from .types import FrameResult, PoseResult


PARTS = ("face", "left_hand", "right_hand")
# Frames whose face/hands may still be running while the caller starts the next pose.
# 3 keeps every thread fed across uneven frames (a re-detection, a found face) and bounds
# latency to about three frames.
MAX_IN_FLIGHT = 3


@dataclass
class _InFlight:
    result: FrameResult
    timings: Dict[str, float]
    t_start: float
    futures: List[Future]


class ScheduleChooser:
    """Picks a schedule by measured throughput, and re-checks now and then.

    "overlap": face, left and right hand on three workers while the caller runs the next
    pose (four compute threads); "split": both hands on one worker, face and the next
    pose on the caller (two threads, less time-slicing, slightly less balanced);
    "inline": everything on the caller, one model after the other.

    Why: overlap only pays when a second core is actually free. On a shared or busy
    board (another process holding a core), four compute threads time-sliced on one
    core thrash the caches and run slower than the same work one model after the
    other — measured here at 16 vs 21 fps in one minute and 37 vs 21 fps in the next.
    So the stream tries both for ``probe`` frames, keeps the faster (median time per
    frame) for ``hold`` frames, and probes again. Results are identical either way.
    """

    MODES = ("overlap", "split", "inline")

    def __init__(self, probe: int = 15, hold: int = 120) -> None:
        self.probe = probe
        self.hold = hold
        # (mode, is a timed probe frame); the first frame after a switch is untimed:
        # it still carries the other mode's work in flight.
        self._plan: List[Tuple[str, bool]] = []
        self._samples: Dict[str, List[float]] = {m: [] for m in self.MODES}
        self._timed = False
        self.choices: List[str] = []  # the winner of each probe, for reports

    def next_mode(self) -> str:
        if not self._plan:
            if all(self._samples.values()):
                medians = {m: float(np.median(v)) for m, v in self._samples.items()}
                winner = min(medians, key=medians.get)
                self.choices.append(winner)
                self._samples = {m: [] for m in self.MODES}
                self._plan = [(winner, False)] * self.hold
            else:
                for m in self.MODES:
                    self._plan += [(m, False)] + [(m, True)] * self.probe
        mode, self._timed = self._plan.pop(0)
        return mode

    def record(self, mode: str, seconds: float) -> None:
        """Wall time of the frame just scheduled by :meth:`next_mode`."""
        if self._timed:
            self._samples[mode].append(seconds)


def reset_tracking(pipe: Pipeline) -> None:
    """Forget every tracked ROI and filter state, as if the stream started again.

    The benchmark warms a pipeline up and then restarts the clip at frame 0; without
    this the first timed frame would continue from the warm-up's last frame.
    """
    pipe.pose.reset()
    for tracker in (pipe.face, pipe.left_hand, pipe.right_hand):
        if tracker is not None:
            tracker.reset()
    pipe._frame_index = 0


class FrameStream:
    """Runs a :class:`Pipeline` over a sequence of frames, overlapping consecutive frames.

    Use :meth:`run` as a generator; call :meth:`close` (or use ``with``) to stop the
    worker threads. With ``schedule="per-frame"`` (or the pose task, where there is
    nothing to overlap) it is exactly ``pipe.process`` per frame.
    """

    SCHEDULES = ("auto", "overlap", "split", "inline", "per-frame")

    def __init__(self, pipe: Pipeline, schedule: str = "auto") -> None:
        """``schedule``: "auto" (measure and pick), one of :attr:`ScheduleChooser.MODES`
        to force it, or "per-frame" (plain ``pipe.process`` per frame)."""
        if schedule not in self.SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(self.SCHEDULES)}; got {schedule!r}")
        self.pipe = pipe
        self.schedule = schedule
        self.chooser: Optional[ScheduleChooser] = ScheduleChooser() if schedule == "auto" else None
        self._executors: Dict[str, ThreadPoolExecutor] = {}

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=True)
        self._executors = {}

    def run(self, frames: Iterable[Tuple[np.ndarray, float]]) -> Iterator[FrameResult]:
        """Yield one FrameResult per ``(rgb, timestamp)``, in order.

        ``latency_ms["total"]`` is each frame's submit-to-result time, so with overlap
        it includes the wait for earlier frames' face and hands.
        """
        pipe = self.pipe
        if self.schedule == "per-frame" or pipe.options.task != "holistic":
            for rgb, ts in frames:
                yield pipe.process(rgb, ts)
            return
        if not self._executors:
            # One single-thread queue per part: a part's frames run strictly in order on its
            # own thread, while different parts (and the next frames' poses) run side by side.
            self._executors = {name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) for name in PARTS}
        ex = self._executors
        inflight: Deque[_InFlight] = deque()
        last: Optional[Tuple[str, float]] = None  # (mode, loop start) of the previous frame
        prev_mode: Optional[str] = None
        for image, ts in frames:
            t_start = time.perf_counter()
            if self.chooser is not None:
                if last is not None:
                    self.chooser.record(last[0], t_start - last[1])
                mode = self.chooser.next_mode()
            else:
                mode = self.schedule
            last = (mode, t_start)
            if mode != prev_mode or pipe._pending is not None:
                # Schedules use the part threads differently, and a model/task switch rebuilds
                # the trackers: either way, let every frame in flight finish first.
                while inflight:
                    yield self._finish(inflight.popleft())
                prev_mode = mode
            if pipe._pending is not None:
                with pipe._lock:
                    if pipe._pending is not None:
                        pending, pipe._pending = pipe._pending, None
                        pipe._build(pending)
                if pipe.options.task != "holistic":
                    yield pipe.process(image, ts)
                    continue
            rgb = as_rgb(image)
            h, w = rgb.shape[:2]
            pipe._frame_index += 1
            timings: Dict[str, float] = {}
            result = FrameResult(width=w, height=h, models=dict(pipe.models))
            out = pipe.pose.step(rgb, float(ts), timings)
            futs: List[Future] = []
            lms = None
            if out is not None:
                raw, lms, world = out
                result.pose = PoseResult(raw.score, lms, world)
            if mode == "overlap":
                futs = [ex[name].submit(self._part, name, rgb, lms) for name in PARTS]
            elif mode == "split":
                futs = [ex["left_hand"].submit(self._hands, rgb, lms)]
                _, part, t = self._part("face", rgb, lms)
                result.face = part
                timings.update(t)
            else:
                for name in PARTS:
                    _, part, t = self._part(name, rgb, lms)
                    setattr(result, name, part)
                    timings.update(t)
            inflight.append(_InFlight(result, timings, t_start, futs))
            # Hand out every finished frame at once; block only when too many are queued.
            while inflight and (len(inflight) > MAX_IN_FLIGHT or all(f.done() for f in inflight[0].futures)):
                yield self._finish(inflight.popleft())
        while inflight:
            yield self._finish(inflight.popleft())

    def _hands(self, rgb: np.ndarray, pose_lms: Optional[np.ndarray]) -> List[Tuple[str, object, Dict[str, float]]]:
        return [self._part("left_hand", rgb, pose_lms), self._part("right_hand", rgb, pose_lms)]

    def _part(self, name: str, rgb: np.ndarray,
              pose_lms: Optional[np.ndarray]) -> Tuple[str, object, Dict[str, float]]:
        """One part of one frame, touching only that part's tracker. ``pose_lms`` None means
        no person this frame: the tracker forgets its ROI (in order with its other frames)."""
        t: Dict[str, float] = {}
        tracker = {"face": self.pipe.face, "left_hand": self.pipe.left_hand, "right_hand": self.pipe.right_hand}[name]
        if pose_lms is None:
            tracker.reset()
            return name, None, t
        if name == "face":
            return name, tracker.step(rgb, pose_lms, t), t
        return name, tracker.step(rgb, pose_lms, t, name.split("_")[0] + "_"), t

    @staticmethod
    def _finish(f: _InFlight) -> FrameResult:
        for fut in f.futures:
            done = fut.result()
            for name, part, t in (done if isinstance(done, list) else [done]):
                setattr(f.result, name, part)
                f.timings.update(t)
        f.timings["total"] = (time.perf_counter() - f.t_start) * 1e3
        f.result.latency_ms = f.timings
        return f.result
