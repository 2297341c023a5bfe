"""The pipeline engine: pose first, then face and hands from the pose, in three running modes.

Modes, as MediaPipe's Tasks API has them (IMAGE / VIDEO / LIVE_STREAM):

* ``image`` — :meth:`Engine.detect`: one still, static mode (detection on every image, no
  smoothing). ``analyze`` and the web upload.
* ``video`` — :meth:`Engine.detect_for_video` (one frame) or :meth:`Engine.run` (an iterable of
  frames, overlapped, lossless, results in order). ``bench``, tests, recorded files.
* ``live`` — :meth:`Engine.submit` (alias ``detect_async``) returns at once; results arrive in
  frame order on ``result_callback(result, meta)``. At most ``max_in_flight`` frames are being
  computed and one more waits; a newer frame replaces the waiting one (newest wins, the
  replaced frame is counted in ``counters.dropped``). ``block=True`` waits for room instead
  (a file processed losslessly). A frame the engine fails on goes, in the same order, to
  ``error_callback(exception, meta)`` (counted in ``counters.failed``). The daemon's path.

Calling the wrong method for the mode raises :class:`EngineModeError` naming both modes.

Why one engine: the overlapped scheduler used to live in a separate FrameStream that reached
into the per-frame Pipeline's private state, and the daemon ran the slower per-frame path
(measured 1.04x MediaPipe end to end against 1.61x for bench, issue 9). Now every caller
gets the same scheduler.

Scheduling (private to this module). In tracking mode the pose of frame i+1 needs only
frame i's *pose* (its ROI comes from the previous pose landmarks), never frame i's face or
hands. So while workers run the face and hand models of frame i, the pose thread already
runs the pose model of frame i+1: throughput approaches (pose + face + hands) / cores
instead of their sum. LiteRT releases the GIL inside ``invoke``, so plain threads give real
parallelism. Each part (face, left hand, right hand) has its own single-thread queue, so a
part's frames run strictly in order and its state is only touched by that thread; the pose
state only by the pose thread. Which arrangement is fastest depends on whether a second
core is really free, so by default :class:`ScheduleChooser` measures and picks.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ..runtime.pool import ModelPool
from ..runtime.registry import Registry, auto_threads, resolve_precision
from . import settings as _settings
from .frame import as_rgb
from .pose import PoseDetector, PoseLandmarker, PoseTracker
from .state import TrackingState
from .types import FrameResult, PoseResult

log = logging.getLogger(__name__)

RELEASE_CHECK_S = 10.0  # how often idle interpreters (from before a switch) are looked at
PARTS = ("face", "left_hand", "right_hand")
SCHEDULES = ("auto", "overlap", "split", "inline", "sequential")
# Options fixed for an engine's life (a new Engine is cheap: the pool keeps the models).
FIXED_OPTIONS = ("running_mode", "result_callback", "error_callback", "max_in_flight")


class RunningMode(str, Enum):
    IMAGE = "image"
    VIDEO = "video"
    LIVE = "live"


class EngineModeError(RuntimeError):
    """A call that does not belong to the engine's running mode."""


@dataclass(frozen=True)
class EngineOptions:
    """Everything an engine is built from. Setting names, ranges and defaults: ``settings.SETTINGS``.

    ``schedule``: auto (measure overlap/split/inline and keep the fastest, re-checked now and
    then) | overlap (next frame's pose beside this frame's face, left and right hand on three
    workers) | split (both hands on one worker, face and next pose on the pose thread) | inline
    (one model after the other, next frame's pose after) | sequential (no worker threads at all).
    Results are identical under every schedule.
    """

    running_mode: RunningMode = RunningMode.VIDEO
    task: str = _settings.SETTINGS["task"].default
    pose_model: str = _settings.SETTINGS["pose_model"].default
    hand_model: str = _settings.SETTINGS["hand_model"].default
    precision: str = _settings.SETTINGS["precision"].default
    threads: Any = _settings.SETTINGS["threads"].default  # int or "auto"
    smooth: bool = _settings.SETTINGS["smooth"].default
    min_detection_confidence: float = _settings.SETTINGS["min_detection_confidence"].default
    min_tracking_confidence: float = _settings.SETTINGS["min_tracking_confidence"].default
    schedule: str = "auto"
    # Frames computing at once (live: plus one waiting). 3 keeps every worker fed across
    # uneven frames (a re-detection, a found face) and bounds latency to about three frames.
    max_in_flight: int = 3
    result_callback: Optional[Callable[[FrameResult, Any], None]] = None
    # Live: called instead of result_callback, in the same frame order, for a frame the engine
    # failed on (a model error, a bug); None = logged. Either way counted in counters.failed.
    error_callback: Optional[Callable[[BaseException, Any], None]] = None


@dataclass
class EngineCounters:
    """Frames accepted, finished (result delivered), replaced while waiting, failed."""

    submitted: int = 0
    completed: int = 0
    dropped: int = 0
    failed: int = 0

    def as_dict(self) -> Dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ScheduleChooser:
    """Picks a schedule by measured throughput, and re-checks now and then.

    "overlap": face, left and right hand on three workers while the pose thread runs the
    next pose (four compute threads); "split": both hands on one worker, face and the next
    pose on the pose thread (two threads, less time-slicing, slightly less balanced);
    "inline": everything on the pose thread, one model after the other.

    Why: overlap only pays when a second core is actually free. On a shared or busy
    board (another process holding a core), four compute threads time-sliced on one
    core thrash the caches and run slower than the same work one model after the
    other — measured here at 16 vs 21 fps in one minute and 37 vs 21 fps in the next.
    So the engine tries each for ``probe`` frames, keeps the fastest (median time per
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


@dataclass
class _Frame:
    rgb: np.ndarray
    timestamp: float
    meta: Any
    t_submit: float


@dataclass
class _InFlight:
    result: FrameResult
    timings: Dict[str, float]
    t_start: float
    futures: List[Future]
    meta: Any = None
    error: Optional[BaseException] = None  # the pose stage failed (live): delivered as an error


@dataclass
class _Trackers:
    """The models of one configuration, wrapped around the engine's state objects."""

    pose: PoseTracker
    face: Any = None
    left_hand: Any = None
    right_hand: Any = None
    models: Dict[str, str] = field(default_factory=dict)


class Engine:
    """detect -> landmarks -> ROI tracking -> smoothing, for one stream, in one running mode.

    Interpreters come from ``pool``, keyed by model, threads and *slot*: the thread role that
    runs them (pose thread, face, left, right worker), inside ``namespace``. An interpreter
    must never run on two threads at once, so engines that may run at the same time on one
    pool (the daemon's live engine and a web upload, a shadow engine) need different
    namespaces; engines used one after the other (a reload building its replacement, tests)
    may share the default one and its loaded interpreters.
    ``update()`` validates and loads now and applies between frames.
    """

    def __init__(self, options: EngineOptions = EngineOptions(), registry: Optional[Registry] = None,
                 pool: Optional[ModelPool] = None, namespace: str = "") -> None:
        self.namespace = str(namespace)
        self.registry = registry or (pool.registry if pool is not None else Registry())
        self._own_pool = pool is None
        self.pool = pool or ModelPool(self.registry)
        self._options = self._validated(options)
        self.running_mode: RunningMode = self._options.running_mode
        self.counters = EngineCounters()
        self._lock = threading.Lock()  # guards _pending (held only for the swap)
        self._update_lock = threading.Lock()  # serialises update() calls (held while models load)
        self._pending: Optional[EngineOptions] = None
        self._tracking = TrackingState()
        self._t: Optional[_Trackers] = None
        self._executors: Dict[str, ThreadPoolExecutor] = {}
        self._chooser: Optional[ScheduleChooser] = None
        self._last_ts: Optional[float] = None
        self._frame_index = 0
        self._last_release_check = time.perf_counter()
        self._closed = False
        # live mode
        self._cond = threading.Condition()
        self._waiting: Optional[_Frame] = None
        self._active = 0  # frames taken by the pose thread and not yet delivered
        self._inflight: Deque[_InFlight] = deque()
        self._stopping = False
        self._threads: List[threading.Thread] = []
        self._apply(self._options)

    # -- options ----------------------------------------------------------------------------
    def _validated(self, o: EngineOptions) -> EngineOptions:
        try:
            mode = RunningMode(getattr(o.running_mode, "value", o.running_mode))
        except ValueError:
            raise ValueError(f"running_mode must be one of {', '.join(m.value for m in RunningMode)}, "
                             f"got {o.running_mode!r}") from None
        # Task and precision first, then model names against what is installed (a ModelError
        # listing the installed variants says more than the list of every known name).
        values = {name: _settings.validate(name, getattr(o, name)) for name in ("task", "precision")}
        precision = resolve_precision(values["precision"])
        self.registry.spec("pose_landmark", str(o.pose_model), precision)
        self.registry.spec("pose_detector", "default", precision)
        if values["task"] == "holistic":
            self.registry.spec("hand_landmark", str(o.hand_model), precision)
            for role in ("face_detector", "face_landmark", "hand_recrop"):
                self.registry.spec(role, "default", precision)
        values.update({name: _settings.validate(name, getattr(o, name)) for name in _settings.ENGINE_SETTINGS})
        if values["threads"] == "auto":
            values["threads"] = auto_threads()
        if o.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}")
        if isinstance(o.max_in_flight, bool) or not isinstance(o.max_in_flight, int) or o.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive integer, got {o.max_in_flight!r}")
        if mode is RunningMode.LIVE and not callable(o.result_callback):
            raise ValueError("result_callback is required in live mode: results arrive on it")
        for name in ("result_callback", "error_callback"):
            if mode is not RunningMode.LIVE and getattr(o, name) is not None:
                raise ValueError(f"{name} is only for live mode; this engine is in {mode.value} mode")
        if o.error_callback is not None and not callable(o.error_callback):
            raise ValueError("error_callback must be callable")
        return replace(o, running_mode=mode, **values)

    @property
    def options(self) -> EngineOptions:
        """The options the last frame ran with."""
        return self._options

    @property
    def effective_options(self) -> EngineOptions:
        """The options in force from the next frame on (a pending change included)."""
        with self._lock:
            return self._pending or self._options

    @property
    def models(self) -> Dict[str, str]:
        """part -> model name of the configuration in force (see also ``FrameResult.models``)."""
        return dict(self._t.models)

    @property
    def tracking(self) -> TrackingState:
        """The stream's tracking state and counters, for reading (tests, debugging)."""
        return self._tracking

    @property
    def schedule_choices(self) -> List[str]:
        """The schedule each measurement picked so far (``schedule="auto"``)."""
        return list(self._chooser.choices) if self._chooser is not None else []

    def update(self, **changes) -> EngineOptions:
        """Validate a change now (raising ValueError/ModelError naming the key; nothing
        changes on error), load its models now, apply it before the next frame.

        Model files load here, on the caller's thread, so the frame path never waits on a
        load and no frame goes without output. Returns the options that will be in force.
        """
        unknown = set(changes) - {f.name for f in fields(EngineOptions)}
        if unknown:
            raise ValueError(f"unknown pipeline option(s): {', '.join(sorted(unknown))}; "
                             f"valid: {', '.join(_settings.ENGINE_SETTINGS + ('schedule',))}")
        fixed = set(changes) & set(FIXED_OPTIONS)
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))} cannot change on a running engine; build a new Engine")
        with self._update_lock:  # one update at a time; the frame path never waits on this lock
            new = self._validated(replace(self.effective_options, **changes))
            self._load(new)  # load (or find) every interpreter now, off the frame path
            with self._lock:
                self._pending = new
        return new

    def _model_keys(self, o: EngineOptions) -> Dict[str, tuple]:
        """Every interpreter the options need: name -> (role, variant, precision, threads, slot).

        The pose landmark model loads as its landmark-only build when the manifest has one:
        the engine never publishes the segmentation mask, and the pruned build computes the
        same landmark, heatmap and world outputs (checked bit for bit when it was made) for
        about a third less arithmetic.
        """
        p = resolve_precision(o.precision)
        t = int(o.threads)
        ns = f"{self.namespace}/" if self.namespace else ""
        pose_role = "pose_landmark_only" if ("pose_landmark_only", o.pose_model, p) in self.registry.specs \
            else "pose_landmark"
        keys = {
            "pose_detector": ("pose_detector", "default", p, t, ns + "main"),
            "pose": (pose_role, o.pose_model, p, t, ns + "main"),
        }
        if o.task == "holistic":
            keys.update({
                "face_detector": ("face_detector", "default", p, t, ns + "face"),
                "face": ("face_landmark", "default", p, t, ns + "face"),
                "left_recrop": ("hand_recrop", "default", p, t, ns + "left"),
                "left_hand": ("hand_landmark", o.hand_model, p, t, ns + "left"),
                "right_recrop": ("hand_recrop", "default", p, t, ns + "right"),
                "right_hand": ("hand_landmark", o.hand_model, p, t, ns + "right"),
            })
        return keys

    def _load(self, o: EngineOptions) -> Dict[str, Any]:
        return {name: self.pool.get(*key) for name, key in self._model_keys(o).items()}

    def _apply(self, o: EngineOptions) -> None:
        """New trackers around the same state objects. Only between frames (none in flight)."""
        from .face import FaceTracker
        from .hands import HandTracker

        m = self._load(o)
        static = o.running_mode is RunningMode.IMAGE
        s = self._tracking
        t = _Trackers(
            pose=PoseTracker(PoseDetector(m["pose_detector"], o.min_detection_confidence),
                             PoseLandmarker(m["pose"], o.min_tracking_confidence), s.pose, static, o.smooth),
            models={"pose_detector": m["pose_detector"].name, "pose": m["pose"].name})
        if o.task == "holistic":
            if self._t is not None and self._t.face is None:
                s.reset_parts()  # pose -> holistic: whatever the parts tracked is stale
            t.face = FaceTracker(m["face_detector"], m["face"], s.face)
            t.left_hand = HandTracker(m["left_recrop"], m["left_hand"], "left", s.left_hand)
            t.right_hand = HandTracker(m["right_recrop"], m["right_hand"], "right", s.right_hand)
            t.models.update({"face_detector": m["face_detector"].name, "face": m["face"].name,
                             "hand_recrop": m["left_recrop"].name, "hand": m["left_hand"].name})
        else:
            s.reset_parts()
        if o.schedule == "auto" and self._chooser is None:
            self._chooser = ScheduleChooser()
        self._t = t
        self._options = o
        self.pool.retain((id(model) for model in m.values()), owner=id(self))

    def _apply_pending(self) -> bool:
        """Apply a pending update (call only with no frame in flight)."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                self._apply(pending)
        return pending is not None

    def _has_pending(self) -> bool:
        return self._pending is not None

    def reset(self) -> None:
        """Forget the tracked person and the last timestamp, as if the stream started again.

        For a caller restarting a clip (the benchmark warms up, then starts at frame 0).
        Only between frames: in live mode call :meth:`flush` first.
        """
        if self._active or self._waiting is not None:
            raise RuntimeError("reset() with frames in flight; flush() first")
        self._tracking.reset()
        self._last_ts = None
        self._frame_index = 0

    # -- mode guards ------------------------------------------------------------------------
    def _require(self, mode: RunningMode, call: str) -> None:
        if self._closed:
            raise RuntimeError("engine is closed")
        if self.running_mode is not mode:
            raise EngineModeError(f"{call}() needs running_mode={mode.value}; "
                                  f"this engine is in {self.running_mode.value} mode")

    def _check_timestamp(self, timestamp: Any) -> float:
        try:
            ts = float(timestamp)
        except (TypeError, ValueError):
            raise ValueError(f"timestamp must be a number (seconds), got {timestamp!r}") from None
        if not np.isfinite(ts):
            raise ValueError(f"timestamp must be finite, got {timestamp!r}")
        if self._last_ts is not None and ts <= self._last_ts:
            raise ValueError(f"timestamps must increase: got {ts!r} after {self._last_ts!r}")
        self._last_ts = ts
        return ts

    # -- image and video --------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> FrameResult:
        """Image mode: one still (detection on every image, no smoothing)."""
        self._require(RunningMode.IMAGE, "detect")
        self._between_frames()
        rgb = as_rgb(image)
        self.counters.submitted += 1
        ts = self._frame_index / 30.0
        result = self._finish(self._begin(rgb, ts, self._single_frame_mode(), time.perf_counter()))
        self.counters.completed += 1
        return result

    def detect_for_video(self, image: np.ndarray, timestamp: float) -> FrameResult:
        """Video mode, one frame: the result of this frame, tracking from the previous one."""
        self._require(RunningMode.VIDEO, "detect_for_video")
        rgb = as_rgb(image)
        ts = self._check_timestamp(timestamp)
        self._between_frames()
        self.counters.submitted += 1
        result = self._finish(self._begin(rgb, ts, self._single_frame_mode(), time.perf_counter()))
        self.counters.completed += 1
        return result

    def run(self, frames: Iterable[Tuple[np.ndarray, float]]) -> Iterator[FrameResult]:
        """Video mode: one FrameResult per ``(rgb, timestamp)``, in order, none dropped,
        consecutive frames overlapped.

        ``latency_ms["total"]`` is each frame's start-to-result time, so with overlap it
        includes the wait for earlier frames' face and hands.
        """
        self._require(RunningMode.VIDEO, "run")
        inflight: Deque[_InFlight] = deque()
        last: Optional[Tuple[str, float]] = None  # (mode, start) of the previous frame
        prev_mode: Optional[str] = None
        try:
            for image, timestamp in frames:
                rgb = as_rgb(image)
                ts = self._check_timestamp(timestamp)
                t_start = time.perf_counter()
                mode = self._next_mode(last, t_start)
                last = (mode, t_start)
                drained = mode != prev_mode or self._has_pending()
                if drained:
                    # Schedules use the part threads differently, and a model/task switch builds
                    # new trackers: either way, let every frame in flight finish first.
                    while inflight:
                        yield self._deliver(inflight.popleft())
                    prev_mode = mode
                self._between_frames(drained)
                self.counters.submitted += 1
                inflight.append(self._begin(rgb, ts, mode, t_start))
                # Hand out every finished frame at once; block only when too many are queued.
                while inflight and (len(inflight) > self._options.max_in_flight
                                    or all(f.done() for f in inflight[0].futures)):
                    yield self._deliver(inflight.popleft())
            while inflight:
                yield self._deliver(inflight.popleft())
        finally:
            for f in inflight:  # the caller stopped early: let the workers finish what they hold
                for fut in f.futures:
                    fut.exception()

    def _deliver(self, f: _InFlight) -> FrameResult:
        result = self._finish(f)
        self.counters.completed += 1
        return result

    # -- live -------------------------------------------------------------------------------
    def submit(self, image: np.ndarray, timestamp: float, meta: Any = None, block: bool = False) -> bool:
        """Live mode: queue one frame and return at once.

        The result arrives on ``result_callback(result, meta)``, in frame order, on the
        engine's delivery thread (keep the callback short; hand work to your own thread).
        When a frame is already waiting, this one replaces it (newest wins) and the
        replaced frame is counted in ``counters.dropped``; returns False then, True when
        nothing was dropped. ``block=True`` waits for room instead and never drops.
        A bad frame or timestamp raises here, on the caller's thread.
        """
        self._require(RunningMode.LIVE, "submit")
        rgb = as_rgb(image)
        with self._cond:
            if self._stopping:
                raise RuntimeError("engine is closed")
            ts = self._check_timestamp(timestamp)
            self._start_threads()
            frame = _Frame(rgb, ts, meta, time.perf_counter())
            self.counters.submitted += 1
            if block:
                while self._waiting is not None and not self._stopping:
                    self._cond.wait()
            dropped = self._waiting is not None
            if dropped:
                self.counters.dropped += 1
            self._waiting = frame
            self._cond.notify_all()
        return not dropped

    detect_async = submit  # MediaPipe's name

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Live mode: wait until every accepted frame's result was delivered. False on timeout."""
        self._not_on_engine_thread("flush")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._waiting is not None or self._active:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    @property
    def in_flight(self) -> int:
        """Frames accepted and not yet delivered (live: computing plus waiting)."""
        with self._cond:
            return self._active + (self._waiting is not None)

    def _not_on_engine_thread(self, call: str) -> None:
        if threading.current_thread() in self._threads:
            raise RuntimeError(f"{call}() from the result callback would wait for itself")

    def _start_threads(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._pose_loop, name="engine-pose", daemon=True),
                             threading.Thread(target=self._deliver_loop, name="engine-deliver", daemon=True)]
            for t in self._threads:
                t.start()

    def _pose_loop(self) -> None:
        """Takes the waiting frame, runs its pose, hands its parts to the workers."""
        last: Optional[Tuple[str, float]] = None
        prev_mode: Optional[str] = None
        cond = self._cond
        while True:
            with cond:
                idle = self._waiting is None
                while self._waiting is None and not self._stopping:
                    cond.wait()
                if self._waiting is None:
                    return
                while self._active >= self._options.max_in_flight:
                    cond.wait()  # the waiting frame may be replaced meanwhile: newest wins
                frame, self._waiting = self._waiting, None
                self._active += 1
                cond.notify_all()  # room for a blocked submit
            t_start = time.perf_counter()
            # A gap with nothing to do measures the camera, not the schedule: untimed.
            mode = self._next_mode(None if idle else last, t_start)
            last = (mode, t_start)
            drained = mode != prev_mode or self._has_pending()
            if drained:
                with cond:
                    while self._active > 1:  # every earlier frame delivered
                        cond.wait()
                prev_mode = mode
            try:
                self._between_frames(drained)
                inf = self._begin(frame.rgb, frame.timestamp, mode, frame.t_submit)
            except Exception as e:  # a bug or a model failure must not stop the stream
                inf = _InFlight(FrameResult(0, 0), {}, frame.t_submit, [], error=e)
            inf.meta = frame.meta
            with cond:
                self._inflight.append(inf)
                cond.notify_all()

    def _deliver_loop(self) -> None:
        """Finishes frames in order and calls the result callback."""
        cond = self._cond
        callback = self._options.result_callback
        on_error = self._options.error_callback
        while True:
            with cond:
                while not self._inflight and not (self._stopping and self._active == 0 and self._waiting is None):
                    cond.wait()
                if not self._inflight:
                    return
                head = self._inflight.popleft()
            error = head.error
            if error is None:
                try:
                    result = self._finish(head)
                except Exception as e:  # face/hands failed
                    error = e
            try:
                if error is None:
                    callback(result, head.meta)
                elif on_error is not None:
                    on_error(error, head.meta)
                else:
                    log.error("engine: a frame failed: %s", error, exc_info=error)
            except Exception:
                log.exception("engine: result/error callback raised (the stream goes on)")
            ok = error is None
            with cond:
                if ok:
                    self.counters.completed += 1
                else:
                    self.counters.failed += 1
                self._active -= 1
                cond.notify_all()

    # -- per frame --------------------------------------------------------------------------
    def _single_frame_mode(self) -> str:
        return "inline" if self._options.schedule in ("inline", "sequential") else "overlap"

    def _next_mode(self, last: Optional[Tuple[str, float]], t_start: float) -> str:
        o = self._options
        if o.task != "holistic" or o.schedule == "sequential":
            return "inline"
        if o.schedule != "auto":
            return o.schedule
        if self._chooser is None:
            self._chooser = ScheduleChooser()
        if last is not None:
            self._chooser.record(last[0], t_start - last[1])
        return self._chooser.next_mode()

    def _between_frames(self, drained: bool = True) -> None:
        """Pending switch (only when ``drained``: no frame in flight), idle-model release.
        On the pose thread."""
        if drained:
            self._apply_pending()
        now = time.perf_counter()
        if now - self._last_release_check >= RELEASE_CHECK_S:
            self._last_release_check = now
            for name in self.pool.release_idle():
                log.info("released idle model %s", name)

    def _executor(self, name: str) -> ThreadPoolExecutor:
        ex = self._executors.get(name)
        if ex is None:
            # One single-thread queue per part: a part's frames run strictly in order on its own
            # thread, while different parts (and the next frames' poses) run side by side.
            ex = self._executors[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        return ex

    def _begin(self, rgb: np.ndarray, ts: float, mode: str, t_start: float) -> _InFlight:
        """The pose of one frame on this thread; face and hands started per ``mode``."""
        h, w = rgb.shape[:2]
        self._frame_index += 1
        t = self._t
        timings: Dict[str, float] = {}
        result = FrameResult(width=w, height=h, models=dict(t.models))
        out = t.pose.step(rgb, ts, timings)
        lms = None
        if out is not None:
            raw, lms, world = out
            result.pose = PoseResult(raw.score, lms, world)
        futs: List[Future] = []
        if t.face is not None:
            parts = {"face": t.face, "left_hand": t.left_hand, "right_hand": t.right_hand}
            if mode == "overlap":
                futs = [self._executor(name).submit(_part, name, tr, rgb, lms) for name, tr in parts.items()]
            elif mode == "split":
                futs = [self._executor("left_hand").submit(_hands, t.left_hand, t.right_hand, rgb, lms)]
                _, part, pt = _part("face", t.face, rgb, lms)
                result.face = part
                timings.update(pt)
            else:
                for name, tr in parts.items():
                    _, part, pt = _part(name, tr, rgb, lms)
                    setattr(result, name, part)
                    timings.update(pt)
        return _InFlight(result, timings, t_start, futs)

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

    # -- life -------------------------------------------------------------------------------
    def close(self, timeout: Optional[float] = None) -> None:
        """Deliver every accepted frame, stop the threads, release the pool if it is ours."""
        if self._closed:
            return
        self._not_on_engine_thread("close")
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        for ex in self._executors.values():
            ex.shutdown(wait=True)
        self._executors = {}
        self._closed = True
        self.pool.retain((), owner=id(self))  # its interpreters may go idle now
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _part(name: str, tracker, rgb: np.ndarray, pose_lms: Optional[np.ndarray]) -> Tuple[str, Any, Dict[str, float]]:
    """One part of one frame, touching only that part's tracker. ``pose_lms`` None means no
    person this frame: the tracker forgets its ROI (in order with its other frames)."""
    t: Dict[str, float] = {}
    if pose_lms is None:
        tracker.reset()
        return name, None, t
    if name == "face":
        return name, tracker.step(rgb, pose_lms, t), t
    return name, tracker.step(rgb, pose_lms, t, name.split("_")[0] + "_"), t


def _hands(left, right, rgb: np.ndarray, pose_lms: Optional[np.ndarray]) -> List[Tuple[str, Any, Dict[str, float]]]:
    return [_part("left_hand", left, rgb, pose_lms), _part("right_hand", right, rgb, pose_lms)]
