"""Holistic ROI rules on numbers: face and hand ROIs from pose, detections and landmarks,
and the RoiTracking decision. Expected values are worked out by hand from the rules in
MediaPipe's graphs (shift in the ROI's rotated frame, square on the long side in pixels,
then scale)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge_holistic.pipeline.face import face_roi_from_detection, face_roi_from_landmarks, face_roi_from_pose
from edge_holistic.pipeline.geometry import Rect
from edge_holistic.pipeline.hands import (
    PALM_POINTS, hand_roi_from_landmarks, hand_roi_from_pose, hand_roi_from_recrop,
)
from edge_holistic.pipeline.roi import (
    FACE_TRACKING, HAND_TRACKING, bbox_rect, keep_tracking, landmarks_inside, rect_requirements_met,
)

W, H = 200, 100  # a non-square image, so pixel/normalised mix-ups show


def px(x: float, y: float) -> np.ndarray:
    """Pixel coordinates -> normalised point."""
    return np.array([x / W, y / H])


def rect_tuple(r: Rect):
    return (r.cx, r.cy, r.w, r.h, r.theta)


# --- face ----------------------------------------------------------------------------


def test_face_roi_from_pose_level_eyes():
    # Pose 0..10 spread over x 80..120 px, y 40..60 px; eyes level (right eye 5 on the image left).
    pose = np.zeros((33, 5))
    pose[:11, :2] = [px(100, 50)] * 11
    pose[1, :2] = px(80, 40)
    pose[9, :2] = px(120, 60)
    pose[5, :2] = px(90, 45)
    pose[2, :2] = px(110, 45)
    r = face_roi_from_pose(pose, W, H)
    # box 40x20 px -> square 40 px -> x3 = 120 px: w = 0.6, h = 1.2; centre of the box; level.
    assert rect_tuple(r) == pytest.approx((0.5, 0.5, 0.6, 1.2, 0.0))


def test_face_roi_from_pose_tilted_head_and_later_points_ignored():
    pose = np.zeros((33, 5))
    pose[:11, :2] = [px(100, 50)] * 11
    pose[5, :2] = px(90, 55)  # right eye lower-left, left eye upper-right: head tilted
    pose[2, :2] = px(110, 45)
    pose[11:, :2] = px(0, 0)  # shoulders and below must not enter the face box
    r = face_roi_from_pose(pose, W, H)
    assert r.theta == pytest.approx(-math.atan2(10, 20))
    assert (r.cx, r.cy) == pytest.approx((0.5, 0.5))
    assert (r.w * W, r.h * H) == pytest.approx((60.0, 60.0))  # box 20x10 px -> 20 px square x3


def test_face_roi_from_detection_uses_keypoint_box_and_shifts_up():
    # Six keypoints spanning 60..100 x 30..50 px, eyes (kp0 right, kp1 left) level.
    kp = np.array([px(70, 35), px(90, 35), px(80, 42), px(80, 30), px(60, 40), px(100, 50)])
    r = face_roi_from_detection(kp, W, H)
    # box 40x20 px centred (80, 40); shift_y -0.1 of 20 px -> cy 38 px; square 40 px; x2 -> 80 px.
    assert rect_tuple(r) == pytest.approx((80 / W, 38 / H, 80 / W, 80 / H, 0.0))


def test_face_roi_from_landmarks_bbox_eye_corners_and_scale():
    rng = np.random.default_rng(0)
    mesh = np.column_stack([rng.uniform(50, 110, 468) / W, rng.uniform(20, 80, 468) / H, np.zeros(468)])
    mesh[0, :2] = px(50, 20)
    mesh[1, :2] = px(110, 80)
    mesh[33, :2] = px(70, 40)  # right eye outer corner
    mesh[263, :2] = px(90, 40)  # left eye outer corner, level
    r = face_roi_from_landmarks(mesh, W, H)
    # box 60x60 px centred (80, 50) -> x1.5 = 90 px
    assert rect_tuple(r) == pytest.approx((80 / W, 50 / H, 90 / W, 90 / H, 0.0))


def test_bbox_rect_keeps_flt_min_quirk_for_all_negative_points():
    r = bbox_rect(np.array([[-0.3, -0.2], [-0.1, -0.4]]), 0, 1, 0.0, W, H)
    # max starts at FLT_MIN, so the box ends just above 0, not at -0.1 / -0.2
    assert r.w == pytest.approx(0.3) and r.h == pytest.approx(0.4)


# --- hands ---------------------------------------------------------------------------


def test_hand_roi_from_pose_upright_hand():
    wrist, index, pinky = px(100, 80), px(100, 50), px(100, 50)
    r = hand_roi_from_pose(wrist, pinky, index, W, H)
    # middle (100, 50) px, box 2*30 = 60 px, fingers up -> theta 0;
    # shift -0.1*60 = 6 px up -> cy 44 px; square 60 px; x2.7 = 162 px.
    assert rect_tuple(r) == pytest.approx((100 / W, 44 / H, 162 / W, 162 / H, 0.0))


def test_hand_roi_from_pose_middle_weights_index_twice():
    wrist, index, pinky = px(100, 80), px(94, 50), px(112, 50)
    r = hand_roi_from_pose(wrist, pinky, index, W, H)
    # middle = (2*94 + 112)/3 = 100 px: still straight up from the wrist.
    assert r.theta == pytest.approx(0.0, abs=1e-12)
    assert r.cx == pytest.approx(100 / W)


def test_hand_roi_from_pose_hand_pointing_right_shifts_towards_fingers():
    wrist, index, pinky = px(60, 50), px(100, 50), px(100, 50)
    r = hand_roi_from_pose(wrist, pinky, index, W, H)
    assert r.theta == pytest.approx(math.pi / 2)  # clockwise quarter turn
    # box 80 px; the -0.1 shift in the ROI frame moves the centre 8 px along +x (to the fingers).
    assert (r.cx * W, r.cy * H) == pytest.approx((108.0, 50.0))
    assert (r.w * W, r.h * H) == pytest.approx((216.0, 216.0))


def test_hand_roi_from_recrop_points():
    # p1 straight below p0: upright, target -90 degrees.
    r = hand_roi_from_recrop(px(100, 50), px(100, 80), W, H)
    assert rect_tuple(r) == pytest.approx((100 / W, 44 / H, 60 / W, 60 / H, 0.0))
    # p1 to the left of p0: the ROI is turned a quarter clockwise.
    r = hand_roi_from_recrop(px(100, 50), px(70, 50), W, H)
    assert r.theta == pytest.approx(math.pi / 2)


def _upright_hand() -> np.ndarray:
    """21 pixel points of a stylised open right hand, wrist at (0, 0), fingers towards -y."""
    pts = np.zeros((21, 2))
    pts[1:5] = [(-12, -8), (-20, -16), (-26, -24), (-30, -32)]  # thumb
    for f, x in enumerate((-9, 0, 9, 17)):  # index, middle, ring, pinky: MCP, PIP, DIP, tip
        pts[5 + 4 * f: 9 + 4 * f] = [(x, -30), (x, -42), (x, -50), (x, -57)]
    return pts


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, -75.0, 160.0])
def test_hand_roi_from_landmarks_follows_rotation(angle_deg):
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # clockwise in image coords
    centre = np.array([100.0, 50.0])
    pix = _upright_hand() @ rot.T + centre
    lm = np.column_stack([pix[:, 0] / W, pix[:, 1] / H, np.zeros(21)])
    r = hand_roi_from_landmarks(lm, W, H)
    assert r.theta == pytest.approx(math.remainder(a, 2 * math.pi), abs=1e-9)
    # In the hand's own frame the palm subset (thumb tip and finger DIPs/tips excluded) spans
    # x -26..17 (43 px) and y -42..0 (42 px): centre (-4.5, -21), shifted 4.2 px towards the
    # fingers, squared on 43 px, x2 = 86 px.
    local_c = np.array([-4.5, -21.0 - 4.2])
    expected_c = local_c @ rot.T + centre
    assert (r.cx * W, r.cy * H) == pytest.approx(tuple(expected_c), abs=1e-6)
    assert (r.w * W, r.h * H) == pytest.approx((86.0, 86.0), abs=1e-6)


def test_hand_roi_from_landmarks_ignores_fingertips():
    lm = np.column_stack([_upright_hand() / (W, H) + 0.3, np.zeros(21)])
    moved = lm.copy()
    tips = np.setdiff1d(np.arange(21), PALM_POINTS)
    moved[tips, :2] += 0.05  # curl/spread the fingers: tips are not in the palm subset
    assert rect_tuple(hand_roi_from_landmarks(moved, W, H)) == pytest.approx(
        rect_tuple(hand_roi_from_landmarks(lm, W, H)))


# --- RoiTracking ---------------------------------------------------------------------


RECROP = Rect(0.5, 0.5, 0.4, 0.8, 0.0)  # 80x80 px at (100, 50)


def test_rect_requirements_identical_and_limits():
    assert rect_requirements_met(RECROP, RECROP, W, H, FACE_TRACKING)
    # translation limit 0.1 of 80 px = 8 px
    assert rect_requirements_met(Rect(0.5 + 7.9 / W, 0.5, 0.4, 0.8), RECROP, W, H, FACE_TRACKING)
    assert not rect_requirements_met(Rect(0.5 + 8.1 / W, 0.5, 0.4, 0.8), RECROP, W, H, FACE_TRACKING)
    assert not rect_requirements_met(Rect(0.5, 0.5 + 8.1 / H, 0.4, 0.8), RECROP, W, H, FACE_TRACKING)
    # scale limit 0.3 of 80 px = 24 px
    assert rect_requirements_met(Rect(0.5, 0.5, (80 + 23.9) / W, 0.8), RECROP, W, H, FACE_TRACKING)
    assert not rect_requirements_met(Rect(0.5, 0.5, (80 + 24.1) / W, 0.8), RECROP, W, H, FACE_TRACKING)
    # hands allow more: 0.2 translation, 0.4 scale
    assert rect_requirements_met(Rect(0.5 + 15 / W, 0.5, (80 + 30) / W, 0.8), RECROP, W, H, HAND_TRACKING)


def test_rect_requirements_rotation_and_wrap():
    deg = math.radians
    assert rect_requirements_met(Rect(0.5, 0.5, 0.4, 0.8, deg(14.9)), RECROP, W, H, FACE_TRACKING)
    assert not rect_requirements_met(Rect(0.5, 0.5, 0.4, 0.8, deg(15.1)), RECROP, W, H, FACE_TRACKING)
    assert rect_requirements_met(Rect(0.5, 0.5, 0.4, 0.8, deg(39.0)), RECROP, W, H, HAND_TRACKING)
    # 179 and -179 degrees are 2 degrees apart, not 358
    a = Rect(0.5, 0.5, 0.4, 0.8, deg(179.0))
    b = Rect(0.5, 0.5, 0.4, 0.8, deg(-179.0))
    assert rect_requirements_met(a, b, W, H, FACE_TRACKING)


def test_rect_translation_measured_along_recrop_axes():
    # Recrop turned 90 degrees: a 10 px image-x offset is a 10 px offset along the ROI's y axis.
    rec = Rect(0.5, 0.5, 0.4, 0.8 * 2, math.pi / 2)  # 80x160 px: x limit 8 px, y limit 16 px
    prev = Rect(0.5 + 10 / W, 0.5, 0.4, 1.6, math.pi / 2)
    assert rect_requirements_met(prev, rec, W, H, FACE_TRACKING)
    prev = Rect(0.5, 0.5 + 10 / H, 0.4, 1.6, math.pi / 2)
    assert not rect_requirements_met(prev, rec, W, H, FACE_TRACKING)


def test_landmarks_inside_shrunk_recrop():
    # Face margin -0.2: the 80 px recrop shrinks to 64 px, i.e. +-32 px around (100, 50).
    inside = np.array([px(100 - 31.9, 50), px(100 + 31.9, 50 + 31.9)])
    assert landmarks_inside(inside, RECROP, W, H, FACE_TRACKING.margin)
    outside = np.vstack([inside, px(100, 50 - 32.1)])
    assert not landmarks_inside(outside, RECROP, W, H, FACE_TRACKING.margin)
    # Hand margin -0.1: +-36 px.
    assert landmarks_inside(np.array([px(135, 50)]), RECROP, W, H, HAND_TRACKING.margin)


def test_keep_tracking_needs_both_checks():
    lm = np.array([px(100, 50)])
    assert keep_tracking(RECROP, lm, RECROP, W, H, FACE_TRACKING)
    assert not keep_tracking(RECROP, np.array([px(140, 50)]), RECROP, W, H, FACE_TRACKING)
    assert not keep_tracking(Rect(0.5, 0.5, 0.4, 0.8, 0.5), lm, RECROP, W, H, FACE_TRACKING)
