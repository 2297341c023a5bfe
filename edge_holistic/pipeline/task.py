"""The per-stream pipeline: pose first, then face and hands from the pose.

One ``Pipeline`` per video stream. It owns its interpreters (never shared
across threads), keeps the tracking state between frames, and lets the task,
model variants and precision change between two frames without a restart.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Dict, Optional

import numpy as np

from ..runtime.pool import ModelPool
from ..runtime.registry import ModelError, Registry, auto_threads, resolve_precision
from .pose import PoseDetector, PoseLandmarker, PoseTracker
from .types import FrameResult, PoseResult

log = logging.getLogger(__name__)

TASKS = ("pose", "holistic")
RELEASE_CHECK_S = 10.0  # how often idle interpreters (from before a switch) are looked at
POSE_VARIANTS = ("lite", "full", "heavy")
HAND_VARIANTS = ("lite", "full")


@dataclass(frozen=True)
class PipelineOptions:
    task: str = "pose"
    pose_model: str = "full"
    hand_model: str = "full"
    precision: str = "float"  # float | int8 | auto
    threads: object = 2  # int or "auto"
    static_image_mode: bool = False
    smooth: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    parallel: bool = True  # run face and hands concurrently (holistic)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept RGB, grayscale or RGBA uint8; anything else is a clear error."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3 (RGB), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"frame is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


class Pipeline:
    """detect -> landmarks -> ROI tracking -> smoothing, for one stream."""

    def __init__(self, options: PipelineOptions = PipelineOptions(), registry: Optional[Registry] = None,
                 pool: Optional[ModelPool] = None) -> None:
        self.registry = registry or Registry()
        self.options = self._validated(options)
        self.pool = pool or ModelPool(self.registry)
        self._lock = threading.Lock()
        self._pending: Optional[PipelineOptions] = None
        self._frame_index = 0
        self._last_release_check = time.perf_counter()
        self._executor: Optional[ThreadPoolExecutor] = None
        self._build(self.options)

    # -- configuration ------------------------------------------------------------------
    def _validated(self, o: PipelineOptions) -> PipelineOptions:
        if o.task not in TASKS:
            raise ValueError(f"unknown task {o.task!r}; valid: {', '.join(TASKS)}")
        precision = resolve_precision(str(o.precision))
        for name, value in (("min_detection_confidence", o.min_detection_confidence),
                            ("min_tracking_confidence", o.min_tracking_confidence)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        self.registry.spec("pose_landmark", o.pose_model, precision)
        self.registry.spec("pose_detector", "default", precision)
        if o.task == "holistic":
            self.registry.spec("hand_landmark", o.hand_model, precision)
            for role in ("face_detector", "face_landmark", "hand_recrop"):
                self.registry.spec(role, "default", precision)
        threads = o.threads
        if threads == "auto" or threads is None:
            threads = auto_threads()
        try:
            threads = int(threads)
        except (TypeError, ValueError):
            raise ValueError(f"threads must be a positive integer or 'auto', got {o.threads!r}") from None
        if threads < 1:
            raise ValueError(f"threads must be a positive integer or 'auto', got {o.threads!r}")
        return replace(o, threads=threads)

    def _pose_role(self, variant: str, precision: str) -> str:
        """Load the landmark-only build of a pose variant when the manifest has one.

        The pipeline never publishes the segmentation mask; the pruned build computes the
        same landmark, heatmap and world outputs (checked bit for bit when it was made)
        for about a third less arithmetic, so it is always preferred.
        """
        return "pose_landmark_only" if ("pose_landmark_only", str(variant), precision) in self.registry.specs \
            else "pose_landmark"

    def _model_keys(self, o: PipelineOptions) -> Dict[str, tuple]:
        """Every interpreter the options need: name -> (role, variant, precision, threads, slot)."""
        p = resolve_precision(str(o.precision))
        t = int(o.threads)
        keys = {
            "pose_detector": ("pose_detector", "default", p, t, "main"),
            "pose": (self._pose_role(o.pose_model, p), o.pose_model, p, t, "main"),
        }
        if o.task == "holistic":
            keys.update({
                "face_detector": ("face_detector", "default", p, t, "face"),
                "face": ("face_landmark", "default", p, t, "face"),
                "left_recrop": ("hand_recrop", "default", p, t, "left"),
                "left_hand": ("hand_landmark", o.hand_model, p, t, "left"),
                "right_recrop": ("hand_recrop", "default", p, t, "right"),
                "right_hand": ("hand_landmark", o.hand_model, p, t, "right"),
            })
        return keys

    def _load(self, o: PipelineOptions) -> Dict[str, object]:
        return {name: self.pool.get(*key) for name, key in self._model_keys(o).items()}

    def _build(self, o: PipelineOptions) -> None:
        m = self._load(o)
        detector = PoseDetector(m["pose_detector"], o.min_detection_confidence)
        landmarker = PoseLandmarker(m["pose"], o.min_tracking_confidence)
        prev = getattr(self, "pose", None)
        self.pose = PoseTracker(detector, landmarker, o.static_image_mode, o.smooth)
        if prev is not None and not o.static_image_mode:
            # Keep tracking across a model switch: the next frame needs no detection.
            self.pose.prev_roi = prev.prev_roi
            self.pose.lm_filter, self.pose.world_filter, self.pose.aux_filter = (
                prev.lm_filter, prev.world_filter, prev.aux_filter)
            self.pose.detector_runs = prev.detector_runs
        self.models: Dict[str, str] = {"pose_detector": m["pose_detector"].name, "pose": m["pose"].name}
        old_parts = (getattr(self, "face", None), getattr(self, "left_hand", None), getattr(self, "right_hand", None))
        self.face = self.left_hand = self.right_hand = None
        if o.task == "holistic":
            from .face import FaceTracker
            from .hands import HandTracker

            self.face = FaceTracker(m["face_detector"], m["face"])
            self.left_hand = HandTracker(m["left_recrop"], m["left_hand"], "left")
            self.right_hand = HandTracker(m["right_recrop"], m["right_hand"], "right")
            for new_part, old_part in zip((self.face, self.left_hand, self.right_hand), old_parts):
                if old_part is not None:  # a switch keeps face and hand tracking, like the pose's
                    new_part.prev_landmarks, new_part.prev_roi = old_part.prev_landmarks, old_part.prev_roi
            self.models.update({
                "face_detector": m["face_detector"].name,
                "face": m["face"].name,
                "hand_recrop": m["left_recrop"].name,
                "hand": m["left_hand"].name,
            })
        self.options = o
        self.pool.retain(id(model) for model in m.values())

    @property
    def effective_options(self) -> PipelineOptions:
        """The options in force from the next frame on (a pending switch included)."""
        with self._lock:
            return self._pending or self.options

    def update(self, **changes) -> PipelineOptions:
        """Validate a change now (raising, nothing changed, on a bad value); apply it
        before the next frame. Model files load here, so the frame loop never waits
        on a load and no frame goes without output."""
        unknown = set(changes) - set(PipelineOptions.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown pipeline option(s): {', '.join(sorted(unknown))}")
        with self._lock:
            new = self._validated(replace(self._pending or self.options, **changes))
            self._load(new)  # load (or find) every interpreter now, off the frame loop
            self._pending = new
        return new

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.pool.close()

    # -- per frame -------------------------------------------------------------------------
    def process(self, image: np.ndarray, timestamp: Optional[float] = None) -> FrameResult:
        t_start = time.perf_counter()
        with self._lock:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._build(pending)
        if t_start - self._last_release_check >= RELEASE_CHECK_S:
            self._last_release_check = t_start
            for name in self.pool.release_idle():
                log.info("released idle model %s", name)
        rgb = as_rgb(image)
        h, w = rgb.shape[:2]
        if timestamp is None:
            timestamp = self._frame_index / 30.0  # MediaPipe's Python wrapper assumes 30 fps
        self._frame_index += 1
        timings: Dict[str, float] = {}
        result = FrameResult(width=w, height=h, models=dict(self.models))
        out = self.pose.step(rgb, float(timestamp), timings)
        if out is not None:
            raw, lms, world = out
            result.pose = PoseResult(raw.score, lms, world)
            if self.options.task == "holistic":
                self._holistic(rgb, lms, timings, result)
        else:
            for tracker in (self.face, self.left_hand, self.right_hand):
                if tracker is not None:
                    tracker.reset()
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        result.latency_ms = timings
        return result

    def _holistic(self, rgb: np.ndarray, pose_lms: np.ndarray, timings: Dict[str, float], result: FrameResult) -> None:
        """Face and both hands depend only on the pose, so they may run concurrently.

        Left and right hand each get a worker (each ~40% of a holistic frame, the face
        ~10%), the face runs on the calling thread: with two cores the three parts
        finish in about the time of the slowest one instead of their sum.
        """
        face_t: Dict[str, float] = {}
        left_t: Dict[str, float] = {}
        right_t: Dict[str, float] = {}
        if self.options.parallel:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hands")
            left = self._executor.submit(self.left_hand.step, rgb, pose_lms, left_t, "left_")
            right = self._executor.submit(self.right_hand.step, rgb, pose_lms, right_t, "right_")
            result.face = self.face.step(rgb, pose_lms, face_t)
            result.left_hand, result.right_hand = left.result(), right.result()
        else:
            result.face = self.face.step(rgb, pose_lms, face_t)
            result.left_hand = self.left_hand.step(rgb, pose_lms, left_t, "left_")
            result.right_hand = self.right_hand.step(rgb, pose_lms, right_t, "right_")
        timings.update(face_t)
        timings.update(left_t)
        timings.update(right_t)
