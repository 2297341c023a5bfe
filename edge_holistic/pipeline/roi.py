"""ROI rules shared by the holistic face and hands: landmark boxes and the tracking check.

Holistic re-runs a cheap detector (face detector, hand re-crop model) on every frame
and then decides whether the previous frame's landmarks still give a better ROI than
the fresh detection. These helpers are that decision and the box it is made on,
kept as pure functions so they can be tested on numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import Rect, rotation_from_points

# LandmarksToDetection starts its max accumulators at FLT_MIN (smallest positive float),
# not at -FLT_MAX, so a box of all-negative coordinates ends at FLT_MIN. Kept for fidelity.
_FLT_MIN = float(np.finfo(np.float32).tiny)


def bbox_rect(xy: np.ndarray, rot_from: int, rot_to: int, target: float, width: int, height: int) -> Rect:
    """Axis-aligned box of normalised points, rotated by the ``rot_from -> rot_to`` direction.

    This is LandmarksToDetection followed by DetectionsToRects (bounding-box mode):
    the rect is the box itself (centre and size), only its angle comes from two points.
    """
    lo = xy[:, :2].min(axis=0)
    hi = np.maximum(xy[:, :2].max(axis=0), _FLT_MIN)
    theta = rotation_from_points(xy[rot_from], xy[rot_to], target, width, height)
    return Rect(float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2),
                float(hi[0] - lo[0]), float(hi[1] - lo[1]), theta)


@dataclass(frozen=True)
class TrackingRequirements:
    """RoiTracking thresholds: how far the fresh ROI may differ from the landmark ROI."""

    rotation_degrees: float
    translation: float  # fraction of the fresh ROI's side, per axis
    scale: float  # fraction of the fresh ROI's side, per axis
    margin: float  # previous landmarks must lie inside the fresh ROI grown by (1 + margin)


FACE_TRACKING = TrackingRequirements(15.0, 0.1, 0.3, -0.2)
HAND_TRACKING = TrackingRequirements(40.0, 0.2, 0.4, -0.1)


def rect_requirements_met(prev: Rect, recrop: Rect, width: int, height: int, req: TrackingRequirements) -> bool:
    """Previous-landmarks ROI close enough to this frame's detection ROI?

    Centres are compared along the detection ROI's own axes (both rotated by its
    -theta in pixel space); sizes in pixels; angles in degrees wrapped once to ±180.
    """
    c, s = math.cos(-recrop.theta), math.sin(-recrop.theta)
    px, py = prev.cx * width, prev.cy * height
    rx, ry = recrop.cx * width, recrop.cy * height
    dx = abs((px * c - py * s) - (rx * c - ry * s))
    dy = abs((px * s + py * c) - (rx * s + ry * c))
    rw, rh = recrop.w * width, recrop.h * height
    dw = abs(prev.w * width - rw)
    dh = abs(prev.h * height - rh)
    drot = math.degrees(prev.theta) - math.degrees(recrop.theta)
    if drot > 180.0:
        drot -= 360.0
    if drot < -180.0:
        drot += 360.0
    return (abs(drot) <= req.rotation_degrees
            and dx <= rw * req.translation and dy <= rh * req.translation
            and dw <= rw * req.scale and dh <= rh * req.scale)


def landmarks_inside(prev_xy: np.ndarray, recrop: Rect, width: int, height: int, margin: float) -> bool:
    """All previous landmarks strictly inside the detection ROI resized by (1 + margin)?

    A negative margin shrinks the ROI: the object must sit well inside the fresh
    crop, or the old landmarks are too far off to trust their ROI.
    """
    c, s = math.cos(-recrop.theta), math.sin(-recrop.theta)
    x = prev_xy[:, 0] * width
    y = prev_xy[:, 1] * height
    xr = x * c - y * s
    yr = x * s + y * c
    rx = recrop.cx * width * c - recrop.cy * height * s
    ry = recrop.cx * width * s + recrop.cy * height * c
    half_w = recrop.w * width * (1.0 + margin) * 0.5
    half_h = recrop.h * height * (1.0 + margin) * 0.5
    return bool(np.all((xr > rx - half_w) & (xr < rx + half_w) & (yr > ry - half_h) & (yr < ry + half_h)))


def keep_tracking(prev_rect: Rect, prev_xy: np.ndarray, recrop: Rect, width: int, height: int,
                  req: TrackingRequirements) -> bool:
    """RoiTracking's choice: True means reuse the previous-landmarks ROI this frame."""
    return (rect_requirements_met(prev_rect, recrop, width, height, req)
            and landmarks_inside(prev_xy, recrop, width, height, req.margin))
