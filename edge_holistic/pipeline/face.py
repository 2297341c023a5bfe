"""Holistic face: 468-point face mesh found from the pose, as MediaPipe Holistic does it.

Per frame (reference notes, section 6): pose landmarks 0..10 give a coarse face ROI;
the short-range face detector runs inside it (every frame); its keypoints give the
detection ROI; the previous frame's mesh gives a competing ROI that is kept while it
agrees with the detection (RoiTracking); the face landmark model runs on the winner.
No smoothing: Holistic does not filter face landmarks.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np

from ..runtime.interpreter import TfliteModel
from .geometry import (
    Detections,
    Rect,
    decode_detections,
    project_detections,
    project_to_image,
    ssd_anchors,
    transform_rect,
    warp_into,
    weighted_nms,
)
from .roi import FACE_TRACKING, bbox_rect, keep_tracking
from .state import PartState
from .types import FaceResult

FACE_POSE_POINTS = slice(0, 11)  # nose, eyes, ears, mouth
POSE_RIGHT_EYE, POSE_LEFT_EYE = 5, 2
FACE_DETECTOR_STRIDES = (8, 16, 16, 16)
FACE_DETECTOR_ANCHORS = 896
FACE_DETECTOR_KEYPOINTS = 6
NUM_FACE = 468
MESH_RIGHT_EYE_OUTER, MESH_LEFT_EYE_OUTER = 33, 263


def face_roi_from_pose(pose_xy: np.ndarray, width: int, height: int) -> Rect:
    """Coarse face ROI: box of pose 0..10, levelled on the eyes (5 -> 2), x3, square."""
    pts = pose_xy[FACE_POSE_POINTS, :2]
    r = bbox_rect(pts, POSE_RIGHT_EYE, POSE_LEFT_EYE, 0.0, width, height)
    return transform_rect(r, width, height, 3.0, 3.0, square_long=True)


def face_roi_from_detection(keypoints: np.ndarray, width: int, height: int) -> Rect:
    """Detection ROI: box of the 6 detector keypoints, levelled on the eyes (kp0 -> kp1),
    x2, nudged up by a tenth, square."""
    r = bbox_rect(keypoints, 0, 1, 0.0, width, height)
    return transform_rect(r, width, height, 2.0, 2.0, shift_y=-0.1, square_long=True)


def face_roi_from_landmarks(mesh_xy: np.ndarray, width: int, height: int) -> Rect:
    """Previous-mesh ROI: box of all 468 points, levelled on the outer eye corners, x1.5."""
    r = bbox_rect(mesh_xy, MESH_RIGHT_EYE_OUTER, MESH_LEFT_EYE_OUTER, 0.0, width, height)
    return transform_rect(r, width, height, 1.5, 1.5, square_long=True)


class FaceTracker:
    """Face detector + face landmark model, with the previous mesh as the tracking ROI.

    State (in ``state``, owned by the engine) is only the previous frame's mesh and its
    ROI; :meth:`reset` clears it when the pose (and therefore the face ROI source) is lost.
    """

    def __init__(self, detector: TfliteModel, landmarker: TfliteModel, state: Optional[PartState] = None,
                 min_detection_score: float = 0.5, min_presence: float = 0.5) -> None:
        self.state = state if state is not None else PartState()
        self.detector = detector
        self.landmarker = landmarker
        self.detector_name = detector.name
        self.landmark_name = landmarker.name
        self.min_detection_score = min_detection_score
        self.min_presence = min_presence
        self.det_size = detector.width
        self.anchors = ssd_anchors(self.det_size, FACE_DETECTOR_STRIDES)
        if self.anchors.shape[0] != FACE_DETECTOR_ANCHORS:
            raise ValueError(f"face detector: expected {FACE_DETECTOR_ANCHORS} anchors, built {self.anchors.shape[0]}")
        num_coords = 4 + 2 * FACE_DETECTOR_KEYPOINTS
        self.det_out = detector.output_index_by_size([FACE_DETECTOR_ANCHORS * num_coords, FACE_DETECTOR_ANCHORS])
        self.lm_size = landmarker.width
        self.lm_out = landmarker.output_index_by_size([NUM_FACE * 3, 1])
    def reset(self) -> None:
        self.state.reset()

    def detect(self, rgb: np.ndarray, roi: Rect) -> Detections:
        """Face detections inside ``roi``, in image-normalised coordinates, best first."""
        h, w = rgb.shape[:2]
        crop = self.detector.write_input(
            lambda buf: warp_into(rgb, roi, buf, (-1.0, 1.0), keep_aspect=True, border="zero"))
        raw_boxes, raw_scores = self.detector.invoke(self.det_out)
        self.state.detector_runs += 1
        d = decode_detections(raw_boxes, raw_scores, self.anchors, float(self.det_size),
                              FACE_DETECTOR_KEYPOINTS, self.min_detection_score)
        d = weighted_nms(d, 0.3)
        return project_detections(d, crop, w, h)

    def landmarks(self, rgb: np.ndarray, roi: Rect) -> Optional[FaceResult]:
        """Run the mesh model on ``roi`` (stretched, no letterbox); None if no face."""
        crop = self.landmarker.write_input(lambda buf: warp_into(rgb, roi, buf, (0.0, 1.0), keep_aspect=False))
        raw, flag = self.landmarker.invoke(self.lm_out)
        self.state.landmark_runs += 1
        score = float(1.0 / (1.0 + math.exp(-float(flag.reshape(-1)[0]))))
        if not score > self.min_presence:
            return None
        lm = raw.reshape(NUM_FACE, 3).astype(np.float32) / np.float32(self.lm_size)
        return FaceResult(score, project_to_image(lm, crop, original=roi))

    def step(self, rgb: np.ndarray, pose_landmarks: np.ndarray, timings: dict) -> Optional[FaceResult]:
        """One frame. ``pose_landmarks`` is the (33, 5) image-normalised (smoothed) pose."""
        h, w = rgb.shape[:2]
        self.state.last_detection_roi = self.state.last_roi = None
        t0 = time.perf_counter()
        pose_roi = face_roi_from_pose(pose_landmarks, w, h)
        self.state.last_pose_roi = pose_roi
        dets = self.detect(rgb, pose_roi)
        timings["face_detect"] = (time.perf_counter() - t0) * 1e3
        if len(dets) == 0:
            # No detection, no face this frame even if it was tracked (Holistic's rule).
            self.reset()
            return None
        det_roi = face_roi_from_detection(dets.keypoints[0], w, h)
        self.state.last_detection_roi = det_roi
        roi = det_roi
        if self.state.prev_roi is not None and keep_tracking(self.state.prev_roi, self.state.prev_landmarks, det_roi,
                                                             w, h, FACE_TRACKING):
            roi = self.state.prev_roi
            self.state.tracked_frames += 1
        self.state.last_roi = roi
        t0 = time.perf_counter()
        face = self.landmarks(rgb, roi)
        timings["face_landmarks"] = (time.perf_counter() - t0) * 1e3
        if face is None:
            self.reset()
            return None
        self.state.prev_landmarks = face.landmarks
        self.state.prev_roi = face_roi_from_landmarks(face.landmarks, w, h)
        return face
