"""Pose: person detection -> rotated ROI -> 33 landmarks, with tracking and smoothing.

Numbers (anchors, scales, thresholds, filter parameters) follow MediaPipe's
legacy pose graphs as recorded in the project's reference notes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..runtime.interpreter import TfliteModel
from .geometry import (
    Detections,
    Rect,
    decode_detections,
    detections_remove_letterbox,
    project_to_image,
    rect_from_alignment_points,
    rotate_world,
    ssd_anchors,
    transform_rect,
    warp_into,
    weighted_nms,
)
from .state import PoseState

POSE_DETECTOR_STRIDES = (8, 16, 32, 32, 32)
POSE_ROI_SCALE = 1.25
NUM_POSE = 33
NUM_POSE_MODEL = 39  # 33 landmarks + 2 auxiliary ROI points + 4 unused
# The graph text says kernel_size 7, but MediaPipe's Python wheels run the calculator's
# default 9 (an unmerged upstream fix says the option is not applied there; reference
# notes, caveat C6).
# Measured: fed MediaPipe's own pose ROI, kernel 9 reproduces the 0.10.21 Pose/Holistic
# landmarks to ~0.05-0.15 px median on the test stills, kernel 7 to ~0.3-0.8 px.
HEATMAP_KERNEL = 9
BODY_ROWS = slice(0, NUM_POSE)
AUX_ROWS = slice(NUM_POSE, NUM_POSE + 2)  # the two ROI alignment points


def detection_to_pose_roi(kp_hip: np.ndarray, kp_scale: np.ndarray, width: int, height: int) -> Rect:
    """ROI centred at the hip centre, sized by the full-body point, upright at 90 degrees."""
    r = rect_from_alignment_points(kp_hip, kp_scale, math.pi / 2, width, height)
    return transform_rect(r, width, height, POSE_ROI_SCALE, POSE_ROI_SCALE, square_long=True)


class PoseDetector:
    """SSD person detector on the letterboxed full frame (224x224, range [-1, 1])."""

    def __init__(self, model: TfliteModel, min_score: float = 0.5) -> None:
        self.model = model
        self.min_score = min_score
        self.size = model.width
        self.anchors = ssd_anchors(self.size, POSE_DETECTOR_STRIDES)
        if self.anchors.shape[0] != 2254:
            raise ValueError(f"pose detector: expected 2254 anchors, built {self.anchors.shape[0]}")
        self.out_idx = model.output_index_by_size([2254 * 12, 2254])

    def detect(self, image: np.ndarray) -> Detections:
        """Detections in image-normalised coordinates, best first."""
        h, w = image.shape[:2]
        crop = self.model.write_input(
            lambda buf: warp_into(image, Rect(0.5, 0.5, 1.0, 1.0, 0.0), buf, (-1.0, 1.0), keep_aspect=True, border="zero"))
        raw_boxes, raw_scores = self.model.invoke(self.out_idx)
        d = decode_detections(raw_boxes, raw_scores, self.anchors, float(self.size), 4, self.min_score)
        d = weighted_nms(d, 0.3)
        return detections_remove_letterbox(d, crop.pad)


@dataclass
class PoseInference:
    """One landmark-model run, before refinement: crop-normalised (39, 5), heatmap, world."""

    score: float
    lm: np.ndarray
    heatmap: np.ndarray
    world: np.ndarray
    crop: object
    roi: Rect


@dataclass
class PoseStep:
    """What the critical path hands to :meth:`PoseTracker.finish`."""

    inference: PoseInference
    aux: np.ndarray  # (2, 5) ROI points, image-normalised
    timestamp: float
    width: int
    height: int
    object_scale: float


def refine_from_heatmap(lm: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = 0.5) -> np.ndarray:
    """Move each landmark to the confidence-weighted centre of its heatmap window.

    ``lm`` is (N, >=2) in crop-normalised coordinates; ``heatmap`` (Hm, Wm, N) logits.
    Vectorised over landmarks: one gather of N x k x k cells.
    """
    hm_h, hm_w, n = heatmap.shape
    cols = (lm[:n, 0] * hm_w).astype(np.int64)  # truncation toward zero, like C++ int cast
    rows = (lm[:n, 1] * hm_h).astype(np.int64)
    inside = (cols >= 0) & (cols < hm_w) & (rows >= 0) & (rows < hm_h)
    off = np.arange(kernel) - kernel // 2
    rr = rows[:, None] + off[None, :]  # (N, k)
    cc = cols[:, None] + off[None, :]
    rvalid = (rr >= 0) & (rr < hm_h)
    cvalid = (cc >= 0) & (cc < hm_w)
    idx = np.arange(n)
    vals = heatmap[np.clip(rr, 0, hm_h - 1)[:, :, None], np.clip(cc, 0, hm_w - 1)[:, None, :], idx[:, None, None]]
    conf = 1.0 / (1.0 + np.exp(-vals.astype(np.float64)))
    conf *= rvalid[:, :, None] & cvalid[:, None, :]
    total = conf.sum(axis=(1, 2))
    ok = inside & (conf.max(axis=(1, 2)) >= min_confidence) & (total > 0)
    safe = np.where(total > 0, total, 1.0)
    x = (conf * cc[:, None, :]).sum(axis=(1, 2)) / safe / hm_w
    y = (conf * rr[:, :, None]).sum(axis=(1, 2)) / safe / hm_h
    out = lm.copy()
    out[:n, 0] = np.where(ok, x, lm[:n, 0])
    out[:n, 1] = np.where(ok, y, lm[:n, 1])
    return out


class PoseLandmarker:
    """Pose landmark model (lite/full/heavy) on a rotated 256x256 ROI crop, range [0, 1]."""

    def __init__(self, model: TfliteModel, min_presence: float = 0.5) -> None:
        self.model = model
        self.min_presence = min_presence
        self.size = model.width
        hm = [s for s in model.output_shapes if len(s) == 4 and s[-1] == NUM_POSE_MODEL]
        hm_size = int(np.prod(hm[0])) if hm else 64 * 64 * NUM_POSE_MODEL
        self.out_idx = model.output_index_by_size([NUM_POSE_MODEL * 5, 1, hm_size, NUM_POSE_MODEL * 3])
        self.hm_shape = hm[0][1:] if hm else (64, 64, NUM_POSE_MODEL)

    def infer(self, image: np.ndarray, roi: Rect) -> Optional["PoseInference"]:
        """Crop, invoke, presence check: the model's raw output (None: no person)."""
        crop = self.model.write_input(lambda buf: warp_into(image, roi, buf, (0.0, 1.0), keep_aspect=True))
        raw, flag, heatmap, world = self.model.invoke(self.out_idx)
        score = float(flag.reshape(-1)[0])
        if not score > self.min_presence:
            return None
        lm = raw.reshape(NUM_POSE_MODEL, 5).astype(np.float32)
        lm[:, :3] /= self.size
        return PoseInference(score, lm, heatmap.reshape(self.hm_shape), world, crop, roi)

    @staticmethod
    def points(inf: "PoseInference", rows: slice) -> np.ndarray:
        """Landmarks ``rows`` refined on their heatmaps, activated and projected to the image.

        Every landmark is refined on its own heatmap channel and projected on its own, so
        any subset gives exactly the numbers the whole set would: the tracker computes the
        two ROI points first (they decide the next frame's crop) and the 33 body landmarks
        off the critical path.
        """
        lm = refine_from_heatmap(inf.lm[rows], inf.heatmap[..., rows])
        lm[:, 3:5] = 1.0 / (1.0 + np.exp(-lm[:, 3:5]))
        return project_to_image(lm, inf.crop, original=inf.roi)


class PoseTracker:
    """Pose detection and landmarks around a :class:`PoseState`. Call :meth:`step` once per frame.

    The tracker holds only models and flags; everything carried between frames is in
    ``state``, so a rebuilt tracker (another model) continues where the old one stopped.
    """

    def __init__(self, detector: PoseDetector, landmarker: PoseLandmarker, state: PoseState,
                 static_image_mode: bool = False, smooth: bool = True) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.state = state
        self.static_image_mode = static_image_mode
        self.smooth = smooth and not static_image_mode

    def step(self, image: np.ndarray, timestamp: float, timings: dict) -> Optional[Tuple[float, np.ndarray, np.ndarray]]:
        """One frame: (score, smoothed landmarks (33,5), smoothed world (33,3)) or None."""
        s = self.track(image, timestamp, timings)
        if s is None:
            self.lost_landmarks()
            return None
        return self.finish(s)

    def track(self, image: np.ndarray, timestamp: float, timings: dict) -> Optional[PoseStep]:
        """The critical path: detection if needed, the landmark model, and the next frame's
        ROI from the two filtered ROI points. None: no person (call :meth:`lost_landmarks`
        in order with :meth:`finish`)."""
        h, w = image.shape[:2]
        roi = None if self.static_image_mode else self.state.prev_roi
        if roi is None:
            t0 = time.perf_counter()
            dets = self.detector.detect(image)
            timings["pose_detect"] = (time.perf_counter() - t0) * 1e3
            self.state.detector_runs += 1
            if len(dets) == 0:
                self.state.lost_roi()
                return None
            kp = dets.keypoints[0]
            roi = detection_to_pose_roi(kp[0], kp[1], w, h)
        t0 = time.perf_counter()
        inf = self.landmarker.infer(image, roi)
        self.state.last_roi = roi
        if inf is None:
            timings["pose_landmarks"] = (time.perf_counter() - t0) * 1e3
            self.state.lost_roi()
            return None
        aux = self.landmarker.points(inf, AUX_ROWS)
        timings["pose_landmarks"] = (time.perf_counter() - t0) * 1e3
        scale_roi = rect_from_alignment_points(aux[0], aux[1], math.pi / 2, w, h)
        object_scale = (scale_roi.w * w + scale_roi.h * h) / 2.0
        aux_f = self.state.aux_filter.apply(aux, timestamp, w, h, object_scale)
        nxt = rect_from_alignment_points(aux_f[0], aux_f[1], math.pi / 2, w, h)
        self.state.prev_roi = transform_rect(nxt, w, h, POSE_ROI_SCALE, POSE_ROI_SCALE, square_long=True)
        return PoseStep(inf, aux, float(timestamp), w, h, object_scale)

    def finish(self, s: PoseStep) -> Tuple[float, np.ndarray, np.ndarray]:
        """The 33 body landmarks and world points of a tracked frame, smoothed. Touches only
        the landmark and world filters, so it may run on another thread than :meth:`track`,
        one frame after the other."""
        inf = s.inference
        lms = self.landmarker.points(inf, BODY_ROWS)
        world = rotate_world(inf.world.reshape(NUM_POSE_MODEL, 3)[:NUM_POSE], inf.roi.theta)
        if self.smooth:
            lms = self.state.lm_filter.apply(lms, s.timestamp, s.width, s.height, s.object_scale)
            world = self.state.world_filter.apply(world, s.timestamp, s.width, s.height, pixel_space=False)
        return inf.score, lms, world

    def lost_landmarks(self) -> None:
        """No person this frame: the landmark filter's part of losing the pose, in order with
        :meth:`finish`."""
        self.state.lost_landmarks()
