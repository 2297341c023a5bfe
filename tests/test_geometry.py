"""Geometry on numbers: anchors, ROIs, crops and projections."""
import math

import numpy as np
import pytest

from edge_holistic.pipeline.geometry import (
    Crop, Detections, Rect, crop_matrix, decode_detections, normalize_radians, project_to_image,
    rect_from_alignment_points, remove_letterbox, rotate_world, ssd_anchors, transform_rect, warp_into,
    weighted_nms,
)
from edge_holistic.pipeline.pose import POSE_DETECTOR_STRIDES, detection_to_pose_roi, refine_from_heatmap
from edge_holistic.pipeline.smoothing import OneEuro


def test_pose_anchor_count_and_known_centres():
    a = ssd_anchors(224, POSE_DETECTOR_STRIDES)
    assert a.shape == (2254, 2)
    # First layer: 28x28 cells, 2 anchors per cell, row-major from the top-left cell.
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28], rtol=1e-6)
    np.testing.assert_allclose(a[1], a[0])
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28], rtol=1e-6)
    np.testing.assert_allclose(a[2 * 28], [0.5 / 28, 1.5 / 28], rtol=1e-6)
    # Second layer starts after 28*28*2 = 1568 anchors, 14x14 cells.
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14], rtol=1e-6)
    # Last three stride-32 layers merge: 7x7 cells with 6 anchors each; last one is the bottom-right cell.
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7], rtol=1e-6)
    np.testing.assert_allclose(a[1568 + 392], [0.5 / 7, 0.5 / 7], rtol=1e-6)


def test_face_detector_anchor_count():
    assert ssd_anchors(128, (8, 16, 16, 16)).shape == (896, 2)


def test_normalize_radians_range():
    assert normalize_radians(math.pi) == pytest.approx(-math.pi)
    assert normalize_radians(3 * math.pi / 2) == pytest.approx(-math.pi / 2)
    assert normalize_radians(-math.pi / 4) == pytest.approx(-math.pi / 4)


def test_pose_roi_from_upright_keypoints():
    # 200x100 image; hip centre (100, 60) px, full-body point straight above at (100, 20) px.
    r = detection_to_pose_roi(np.array([0.5, 0.6]), np.array([0.5, 0.2]), 200, 100)
    assert r.theta == pytest.approx(0.0)
    assert (r.cx, r.cy) == pytest.approx((0.5, 0.6))
    # side = 2 * 40 px * 1.25 = 100 px, square in pixels
    assert r.w * 200 == pytest.approx(100.0)
    assert r.h * 100 == pytest.approx(100.0)


def test_pose_roi_rotation_when_body_points_right():
    # Full-body point to the right of the hip: the person lies along +x -> rotate 90 deg clockwise.
    r = detection_to_pose_roi(np.array([0.5, 0.5]), np.array([0.7, 0.5]), 100, 100)
    assert r.theta == pytest.approx(math.pi / 2)
    assert r.w == pytest.approx(2 * 0.2 * 1.25)


def test_transform_rect_shift_follows_rotation():
    r = Rect(0.5, 0.5, 0.2, 0.2, math.pi / 2)
    t = transform_rect(r, 100, 100, shift_y=-0.1, square_long=True)
    # shift_y in the rotated frame: "up" of a rect rotated 90 deg clockwise points to +x.
    assert (t.cx, t.cy) == pytest.approx((0.5 + 0.02, 0.5))


def test_square_long_uses_pixels():
    t = transform_rect(Rect(0.5, 0.5, 0.5, 0.5, 0.0), 200, 100, square_long=True)
    assert (t.w * 200, t.h * 100) == pytest.approx((100.0, 100.0))


def test_point_through_rotated_crop_and_back():
    w, h, size = 320, 240, 64
    roi = Rect(0.45, 0.55, 0.4, 0.4 * w / h, math.radians(30))
    m = crop_matrix(roi, w, h, size, size)
    uv = np.array([[10.0, 50.0], [32.0, 32.0], [0.0, 0.0]])
    img_px = (m[:, :2] @ uv.T).T + m[:, 2]
    crop = Crop(roi, (0.0, 0.0, 0.0, 0.0), (size, size))
    back = project_to_image(np.column_stack([uv / size, np.zeros(3)]).astype(np.float32), crop)
    np.testing.assert_allclose(back[:, 0] * w, img_px[:, 0], atol=1e-3)
    np.testing.assert_allclose(back[:, 1] * h, img_px[:, 1], atol=1e-3)
    # The tensor centre is the ROI centre.
    np.testing.assert_allclose(img_px[1], [roi.cx * w, roi.cy * h], atol=1e-9)


def test_warp_and_project_recover_a_bright_spot():
    w, h = 300, 200
    img = np.zeros((h, w, 3), np.uint8)
    spot = (190, 70)  # x, y pixels
    img[spot[1] - 1:spot[1] + 2, spot[0] - 1:spot[0] + 2] = 255
    roi = Rect(0.6, 0.4, 0.5, 0.5 * w / h, math.radians(-20))
    out = np.zeros((128, 128, 3), np.float32)
    crop = warp_into(img, roi, out, (0.0, 1.0), keep_aspect=True)
    v, u = np.unravel_index(np.argmax(out[:, :, 0]), out.shape[:2])
    back = project_to_image(np.array([[(u + 0.5) / 128, (v + 0.5) / 128, 0.0]], np.float32), crop, original=roi)
    assert back[0, 0] * w == pytest.approx(spot[0], abs=2.0)
    assert back[0, 1] * h == pytest.approx(spot[1], abs=2.0)


def test_letterbox_removal_scales_z_like_x():
    p = np.array([[0.25, 0.5, 0.1]], np.float32)
    out = remove_letterbox(p, (0.25, 0.0, 0.25, 0.0))
    np.testing.assert_allclose(out, [[0.0, 0.5, 0.2]], atol=1e-6)


def test_zero_border_is_range_minimum():
    img = np.full((10, 10, 3), 255, np.uint8)
    out = np.zeros((8, 8, 3), np.float32)
    warp_into(img, Rect(0.5, 0.5, 3.0, 3.0, 0.0), out, (-1.0, 1.0), keep_aspect=True, border="zero")
    assert out[0, 0, 0] == pytest.approx(-1.0)
    assert out[4, 4, 0] == pytest.approx(1.0)


def test_rotate_world_quarter_turn():
    out = rotate_world(np.array([[1.0, 0.0, 0.3]], np.float32), math.pi / 2)
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.3]], atol=1e-6)


def test_decode_and_weighted_nms_numbers():
    anchors = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]], np.float32)
    raw = np.zeros((3, 4 + 2), np.float32)
    raw[:, 2:4] = 22.4  # w = h = 0.1 on a 224 input
    raw[1, 0] = 2.24  # second box shifted by 0.01
    scores = np.array([3.0, 1.0, -5.0], np.float32)  # sigmoid 0.953, 0.731, 0.0067
    d = decode_detections(raw, scores, anchors, 224.0, num_keypoints=1, min_score=0.5)
    assert len(d) == 2
    n = weighted_nms(d, 0.3)
    assert len(n) == 1
    s0, s1 = 1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-1))
    expected_cx = (0.5 * s0 + 0.51 * s1) / (s0 + s1)
    assert (n.boxes[0, 0] + n.boxes[0, 2]) / 2 == pytest.approx(expected_cx, abs=1e-6)
    assert n.scores[0] == pytest.approx(s0, abs=1e-6)


def test_weighted_nms_keeps_separate_people():
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.6, 0.6, 0.9, 0.9]], np.float32)
    d = Detections(boxes, np.zeros((2, 1, 2), np.float32), np.array([0.6, 0.9], np.float32))
    n = weighted_nms(d)
    assert len(n) == 2 and n.scores[0] == pytest.approx(0.9)


def test_heatmap_refinement_moves_to_peak():
    hm = np.full((64, 64, 2), -10.0, np.float32)
    hm[20, 30, 0] = 10.0  # a sharp peak at col 30, row 20 for landmark 0
    lm = np.array([[31.5 / 64, 21.2 / 64, 0, 0, 0], [0.5, 0.5, 0, 0, 0]], np.float32)
    out = refine_from_heatmap(lm, hm)
    assert out[0, 0] == pytest.approx(30 / 64, abs=1e-3)
    assert out[0, 1] == pytest.approx(20 / 64, abs=1e-3)
    np.testing.assert_array_equal(out[1], lm[1])  # no confident cell -> unchanged


def test_one_euro_passes_constant_and_lags_a_step():
    f = OneEuro(min_cutoff=0.05, beta=80.0, derivate_cutoff=1.0)
    x = np.array([[100.0, 50.0]])
    for i in range(5):
        out = f.apply(x, i / 30.0, value_scale=1 / 100.0)
    np.testing.assert_allclose(out, x)
    stepped = f.apply(x + 10.0, 5 / 30.0, value_scale=1 / 100.0)
    assert 100.0 < stepped[0, 0] < 110.0
    # A timestamp that does not advance returns the input unfiltered.
    np.testing.assert_allclose(f.apply(x + 20.0, 5 / 30.0), x + 20.0)
