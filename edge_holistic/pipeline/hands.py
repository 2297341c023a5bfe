"""Holistic hands: 21 landmarks per hand found from the pose, as MediaPipe Holistic does it.

Per side and frame (reference notes, section 7): gate on the pose wrist visibility;
ROI from pose wrist/pinky/index; the hand re-crop model refines it into the "recrop"
ROI (every frame); the previous frame's hand landmarks give a competing ROI that is
kept while it agrees with the recrop ROI (RoiTracking); the hand landmark model runs
on the winner. Left/right is the pose side that fed the ROI, never the model's
handedness output. No smoothing: Holistic does not filter hand landmarks.

MediaPipe's Holistic runs the *full* hand model whatever its model_complexity (measured:
its complexity-0 output matches pose lite + hand full here to < 0.3% of the hand box);
the lite hand model is an extra speed option of ours with no MediaPipe counterpart.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np

from ..runtime.interpreter import TfliteModel
from .geometry import Rect, normalize_radians, project_to_image, rect_from_alignment_points, rotate_world, \
    transform_rect, warp_into
from .roi import HAND_TRACKING, keep_tracking
from .state import PartState
from .types import HandResult

# Pose indices [wrist, pinky, index] per side: "left" is the person's left.
POSE_HAND_POINTS = {"left": (15, 17, 19), "right": (16, 18, 20)}
MIN_WRIST_VISIBILITY = 0.1
NUM_HAND = 21
HAND_Z_NORM = 0.4  # normalize_z of the hand graph, "Z distribution in training data"
# Palm subset used for the previous-landmarks ROI: wrist, thumb base, and the MCP/PIP of
# each finger; fingertips are left out so a curled or spread finger does not move the box.
PALM_POINTS = np.array([0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18])


def hand_roi_from_pose(wrist: np.ndarray, pinky: np.ndarray, index: np.ndarray, width: int, height: int) -> Rect:
    """Coarse hand ROI from three pose points (normalised x, y).

    The middle-finger base is estimated as (2*index + pinky)/3; the box is twice its
    distance to the wrist, turned so the wrist -> middle direction points up, then
    x2.7 and shifted a tenth of its side towards the fingertips (shift_y -0.1 in the
    ROI frame), so the enlarged box covers the fingers rather than the forearm.
    """
    wx, wy = wrist[0] * width, wrist[1] * height
    mx = (2.0 * index[0] + pinky[0]) / 3.0 * width
    my = (2.0 * index[1] + pinky[1]) / 3.0 * height
    box = 2.0 * math.hypot(mx - wx, my - wy)
    theta = normalize_radians(math.pi / 2 - math.atan2(-(my - wy), mx - wx))
    r = Rect(mx / width, my / height, box / width, box / height, theta)
    return transform_rect(r, width, height, 2.7, 2.7, shift_y=-0.1, square_long=True)


def hand_roi_from_recrop(p0: np.ndarray, p1: np.ndarray, width: int, height: int) -> Rect:
    """Recrop ROI from the re-crop model's two points (image-normalised).

    Centre at p0, side 2*|p1 - p0|, upright when p1 lies straight below p0 (target -90
    degrees), then shifted up a tenth and made square.
    """
    r = rect_from_alignment_points(p0, p1, -math.pi / 2, width, height)
    return transform_rect(r, width, height, 1.0, 1.0, shift_y=-0.1, square_long=True)


def hand_roi_from_landmarks(hand_xy: np.ndarray, width: int, height: int) -> Rect:
    """Previous-landmarks ROI: rotated box of the palm subset, x2, shifted, square.

    Rotation points the wrist -> middle-of-palm direction (0.25*lm5 + 0.25*lm13 +
    0.5*lm9) up; the box is the palm's extent along the rotated axes, in pixels.
    """
    pts = hand_xy[PALM_POINTS, :2].astype(np.float64)
    wrist = pts[0]
    ref = 0.25 * hand_xy[5, :2] + 0.25 * hand_xy[13, :2] + 0.5 * hand_xy[9, :2]
    theta = normalize_radians(
        math.pi / 2 - math.atan2(-(ref[1] - wrist[1]) * height, (ref[0] - wrist[0]) * width))
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    d = (pts - centre) * (width, height)
    c, s = math.cos(-theta), math.sin(-theta)
    px = d[:, 0] * c - d[:, 1] * s
    py = d[:, 0] * s + d[:, 1] * c
    pcx = (px.max() + px.min()) / 2.0
    pcy = (py.max() + py.min()) / 2.0
    c, s = math.cos(theta), math.sin(theta)
    cx = pcx * c - pcy * s + width * centre[0]
    cy = pcx * s + pcy * c + height * centre[1]
    r = Rect(float(cx / width), float(cy / height), float((px.max() - px.min()) / width),
             float((py.max() - py.min()) / height), theta)
    return transform_rect(r, width, height, 2.0, 2.0, shift_y=-0.1, square_long=True)


class HandTracker:
    """One side's hand: re-crop model + hand landmark model, tracking its own previous ROI.

    Each side owns its interpreters, so left and right (and the face) can run on
    different threads.
    """

    def __init__(self, recrop: TfliteModel, landmarker: TfliteModel, side: str, state: Optional[PartState] = None,
                 min_presence: float = 0.5) -> None:
        self.state = state if state is not None else PartState()  # detector_runs counts re-crop runs
        if side not in POSE_HAND_POINTS:
            raise ValueError(f"hand side must be 'left' or 'right', got {side!r}")
        self.side = side
        self.recrop = recrop
        self.landmarker = landmarker
        self.recrop_name = recrop.name
        self.landmark_name = landmarker.name
        self.min_presence = min_presence
        self.recrop_size = recrop.width
        self.recrop_out = recrop.output_index_by_size([4])
        self.lm_size = landmarker.width
        # Outputs in graph order: landmarks, hand flag, handedness, world. The two
        # 63-value and the two 1-value outputs share sizes, so matching by size keeps
        # the model's own output order (Identity, Identity_1, ...) for the tie.
        self.lm_out = landmarker.output_index_by_size([NUM_HAND * 3, 1, 1, NUM_HAND * 3])
    def reset(self) -> None:
        self.state.reset()

    def refine(self, rgb: np.ndarray, roi: Rect) -> Rect:
        """Run the re-crop model on the pose ROI and turn its two points into the recrop ROI."""
        h, w = rgb.shape[:2]
        crop = self.recrop.write_input(lambda buf: warp_into(rgb, roi, buf, (0.0, 1.0), keep_aspect=True))
        (raw,) = self.recrop.invoke(self.recrop_out)
        self.state.detector_runs += 1
        pts = raw.reshape(2, 2).astype(np.float32) / np.float32(self.recrop_size)
        img = project_to_image(pts, crop, original=roi)
        return hand_roi_from_recrop(img[0], img[1], w, h)

    def landmarks(self, rgb: np.ndarray, roi: Rect) -> Optional[HandResult]:
        """Run the hand landmark model on ``roi``; None if the hand flag says no hand."""
        crop = self.landmarker.write_input(lambda buf: warp_into(rgb, roi, buf, (0.0, 1.0), keep_aspect=True))
        raw, flag, _handedness, world = self.landmarker.invoke(self.lm_out)
        self.state.landmark_runs += 1
        score = float(flag.reshape(-1)[0])  # already a probability; the graph applies no activation
        if not score > self.min_presence:
            return None
        lm = raw.reshape(NUM_HAND, 3).astype(np.float32)
        lm /= np.float32(self.lm_size)
        lm[:, 2] /= np.float32(HAND_Z_NORM)
        img = project_to_image(lm, crop, original=roi)
        wl = rotate_world(world.reshape(NUM_HAND, 3), roi.theta)
        return HandResult(score, img, wl)

    def step(self, rgb: np.ndarray, pose_landmarks: np.ndarray, timings: dict, prefix: str) -> Optional[HandResult]:
        """One frame for this side. ``pose_landmarks`` is the (33, 5) image-normalised pose."""
        h, w = rgb.shape[:2]
        self.state.last_pose_roi = self.state.last_detection_roi = self.state.last_roi = None
        iw, ip, ii = POSE_HAND_POINTS[self.side]
        if not pose_landmarks[iw, 3] > MIN_WRIST_VISIBILITY:
            self.reset()
            return None
        t0 = time.perf_counter()
        pose_roi = hand_roi_from_pose(pose_landmarks[iw], pose_landmarks[ip], pose_landmarks[ii], w, h)
        self.state.last_pose_roi = pose_roi
        recrop_roi = self.refine(rgb, pose_roi)
        self.state.last_detection_roi = recrop_roi
        timings[f"{prefix}recrop"] = (time.perf_counter() - t0) * 1e3
        roi = recrop_roi
        if self.state.prev_roi is not None and keep_tracking(self.state.prev_roi, self.state.prev_landmarks, recrop_roi,
                                                             w, h, HAND_TRACKING):
            roi = self.state.prev_roi
            self.state.tracked_frames += 1
        self.state.last_roi = roi
        t0 = time.perf_counter()
        hand = self.landmarks(rgb, roi)
        timings[f"{prefix}landmarks"] = (time.perf_counter() - t0) * 1e3
        if hand is None:
            self.reset()
            return None
        self.state.prev_landmarks = hand.landmarks
        self.state.prev_roi = hand_roi_from_landmarks(hand.landmarks, w, h)
        return hand
