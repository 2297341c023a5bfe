"""Agreement numbers (pure functions and the accumulator) on hand-made results with known answers."""
from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from edge_holistic.pipeline.agreement import (
    PARTS, SUMMARY_KEYS, AgreementAccumulator, box_diagonal, compare_results, distances_pct, format_table,
    load_schema, side_description, summarize_part,
)
from edge_holistic.pipeline.types import FaceResult, FrameResult, HandResult, PoseResult


def _pose(xy: np.ndarray) -> PoseResult:
    lms = np.zeros((33, 5), np.float32)
    lms[:, :2] = xy
    return PoseResult(0.9, lms, np.zeros((33, 3), np.float32))


def _hand(xy: np.ndarray) -> HandResult:
    lms = np.zeros((21, 3), np.float32)
    lms[:, :2] = xy
    return HandResult(0.9, lms, np.zeros((21, 3), np.float32))


def _square(n: int, x0: float, y0: float, size: float) -> np.ndarray:
    """n points: the 4 corners of a box (x0, y0)-(x0+size, y0+size) then its centre repeated."""
    pts = np.full((n, 2), (x0 + size / 2, y0 + size / 2), np.float64)
    pts[:4] = [(x0, y0), (x0 + size, y0), (x0, y0 + size), (x0 + size, y0 + size)]
    return pts


def _result(w=100, h=100, pose=None, face=None, left=None, right=None, total=10.0) -> FrameResult:
    return FrameResult(width=w, height=h, pose=pose, face=face, left_hand=left, right_hand=right,
                       models={"pose": "pose_landmark_full@float32"}, latency_ms={"total": total})


def test_box_diagonal_and_distance_in_pixels():
    a = np.array([[0.0, 0.0], [30.0, 40.0]])
    assert box_diagonal(a) == pytest.approx(50.0)
    b = a + [3.0, 4.0]  # every point moved 5 px; same box, diagonal 50 -> 10 %
    np.testing.assert_allclose(distances_pct(a, b), [10.0, 10.0])
    np.testing.assert_allclose(distances_pct(b, a), [10.0, 10.0])  # symmetric


def test_distance_uses_mean_of_both_diagonals():
    a = np.array([[0.0, 0.0], [60.0, 80.0]])  # diagonal 100
    b = np.array([[0.0, 0.0], [30.0, 40.0]])  # diagonal 50 -> mean 75
    np.testing.assert_allclose(distances_pct(a, b), [0.0, 50.0 / 75.0 * 100.0])


def test_identical_points_are_zero_and_degenerate_box_does_not_blow_up():
    a = np.array([[5.0, 5.0]] * 21)
    assert np.all(distances_pct(a, a) == 0.0)
    d = distances_pct(a, a + [0.5, 0.0])  # box of 0 px: diagonal floored to 1 px
    np.testing.assert_allclose(d, 50.0)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(33, 2\) and \(21, 2\)"):
        distances_pct(np.zeros((33, 2)), np.zeros((21, 2)))


def test_normalised_coordinates_scale_by_frame_size():
    # x moves by 0.01 of a 200-px-wide frame = 2 px; the box is 0.5 x 0.5 of 200x100 -> 100x50 px.
    xy = _square(33, 0.25, 0.25, 0.5)
    a = _result(200, 100, pose=_pose(xy))
    b = _result(200, 100, pose=_pose(xy + [0.01, 0.0]))
    cmp = compare_results(a, b)
    expected = 2.0 / np.hypot(100.0, 50.0) * 100.0
    np.testing.assert_allclose(cmp["pose"].distances, expected, rtol=1e-6)
    assert cmp["face"].found_a is False and cmp["face"].distances is None


def test_pose_counts_only_points_either_side_sees():
    xy = _square(33, 0.2, 0.2, 0.4)  # 100x100 frame: box 40x40 px
    a, b = _pose(xy), _pose(xy.copy())
    b.landmarks[10:, 0] += 0.5  # points 10.. moved 50 px in B ...
    a.landmarks[:5, 3] = 0.9  # ... but only 0-4 (A) and 5 (B) are visible
    b.landmarks[5, 3] = 0.9
    cmp = compare_results(_result(pose=a), _result(pose=b))
    np.testing.assert_array_equal(cmp["pose"].distances, np.zeros(6))
    b.landmarks[5, 0] += 0.04  # a visible point (the centre) moves 4 px; both boxes stay 40x40 px
    d = compare_results(_result(pose=a), _result(pose=b))["pose"].distances
    np.testing.assert_allclose(d, [0, 0, 0, 0, 0, 4.0 / np.hypot(40, 40) * 100], rtol=1e-5, atol=1e-6)
    b.landmarks[0, :2] -= 0.1  # a visible corner moves 10 px out: B's box 50x50, the boxes' mean diagonal grows
    d = compare_results(_result(pose=a), _result(pose=b))["pose"].distances
    np.testing.assert_allclose(d[0], np.hypot(10, 10) / ((np.hypot(40, 40) + np.hypot(50, 50)) / 2) * 100,
                               rtol=1e-5)


def test_different_frame_sizes_refused():
    with pytest.raises(ValueError, match="different frame sizes"):
        compare_results(_result(100, 100), _result(100, 50))


def test_summarize_part_counts_flips_and_toggles():
    fa = np.array([1, 1, 1, 0, 0, 1], bool)
    fb = np.array([1, 0, 1, 0, 1, 1], bool)
    dists = [np.array([1.0, 2.0, 3.0]), None, np.array([4.0, 5.0, 6.0]), None, None, np.array([7.0, 8.0, 9.0])]
    s = summarize_part(fa, fb, dists)
    assert s["compared"] == 3
    assert s["median_pct"] == 5.0
    assert s["p90_pct"] == pytest.approx(np.percentile(np.arange(1.0, 10.0), 90), abs=1e-3)
    assert s["found"] == {"a": 4, "b": 4, "both": 3, "neither": 1}
    assert s["agreement"] == pytest.approx(4 / 6, abs=1e-4)
    assert s["flips"] == {"lost": 1, "extra": 1}
    assert s["toggles"] == {"a": 2, "b": 4}


def test_summarize_part_with_no_frames_has_nulls():
    s = summarize_part(np.zeros(0, bool), np.zeros(0, bool), [])
    assert s["median_pct"] is None and s["p90_pct"] is None and s["agreement"] is None
    assert s["found"] == {"a": 0, "b": 0, "both": 0, "neither": 0}


def _acc(window=None) -> AgreementAccumulator:
    return AgreementAccumulator("holistic", side_description("full@float"), side_description("lite@int8"),
                                window=window)


def test_accumulator_identical_results_agree_fully():
    acc = _acc()
    xy = _square(33, 0.2, 0.2, 0.5)
    for i in range(5):
        r = _result(pose=_pose(xy), left=_hand(_square(21, 0.1, 0.1, 0.1)) if i % 2 else None, total=10.0 + i)
        acc.add(r, r)
    s = acc.summary()
    assert tuple(s) == SUMMARY_KEYS
    for part in PARTS:
        assert s["parts"][part]["agreement"] == 1.0
        assert s["parts"][part]["flips"] == {"lost": 0, "extra": 0}
    assert s["parts"]["pose"]["median_pct"] == 0.0 and s["parts"]["pose"]["p90_pct"] == 0.0
    assert s["parts"]["left_hand"]["compared"] == 2 and s["parts"]["left_hand"]["toggles"] == {"a": 4, "b": 4}
    assert s["parts"]["face"]["median_pct"] is None and s["parts"]["face"]["found"]["neither"] == 5
    assert s["latency_ms"]["a"] == {"p50": 12.0, "p95": 13.8}
    assert s["frames"] == 5 and s["frames_total"] == 5 and s["counters"]["compared"] == 5
    jsonschema.Draft202012Validator(load_schema()).validate(s)


def test_accumulator_pools_landmarks_and_keeps_a_window():
    acc = _acc(window=2)
    base = _square(21, 0.0, 0.0, 0.3)  # 100x100 frame: box 30x30 px, diagonal 42.43 px
    for shift in (0.0, 0.03, 0.06):  # 0, 3, 6 px on x
        acc.add(_result(right=_hand(base)), _result(right=_hand(base + [shift, 0.0])))
    s = acc.summary()
    diag = np.hypot(30.0, 30.0)
    assert s["frames"] == 2 and s["frames_total"] == 3 and s["window"] == 2
    part = s["parts"]["right_hand"]
    assert part["compared"] == 2
    # pooled 21 + 21 distances: 3 px and 6 px each -> median is the mean of the two middle values
    assert part["median_pct"] == pytest.approx(4.5 / diag * 100, abs=1e-3)
    assert part["p90_pct"] == pytest.approx(6.0 / diag * 100, abs=1e-3)
    acc.reset(b=side_description("heavy@float"))
    s = acc.summary()
    assert s["frames"] == 0 and s["frames_total"] == 0 and s["b"]["label"] == "heavy@float"
    jsonschema.Draft202012Validator(load_schema()).validate(s)


def test_face_found_by_one_side_only():
    acc = _acc()
    face = FaceResult(0.9, np.zeros((468, 3), np.float32))
    acc.add(_result(face=face), _result())
    acc.add(_result(), _result(face=face))
    p = acc.summary()["parts"]["face"]
    assert p["flips"] == {"lost": 1, "extra": 1} and p["agreement"] == 0.0 and p["compared"] == 0


def test_table_lists_every_part():
    acc = _acc()
    r = _result(pose=_pose(_square(33, 0.2, 0.2, 0.5)))
    acc.add(r, r)
    acc.fps = {"a": 30.0, "b": 50.0}
    table = format_table(acc.summary())
    for part in PARTS:
        assert part in table
    assert "full@float" in table and "lite@int8" in table and "fps: A 30.0   B 50.0" in table


def test_metric_samples_have_no_nans_and_label_parts():
    from edge_holistic.pipeline.agreement import metric_samples

    assert metric_samples(None) == []
    acc = _acc()
    r = _result(pose=_pose(_square(33, 0.2, 0.2, 0.5)))
    acc.add(r, r)
    samples = metric_samples(acc.summary())
    names = {s[0] for s in samples}
    assert "edge_holistic_shadow_distance_percent" in names and "edge_holistic_shadow_frames_dropped" in names
    pose = [s for s in samples if s[0].endswith("distance_percent")]
    assert {s[2]["part"] for s in pose} == {"pose"}  # face/hands never compared: no distance sample
    assert all(np.isfinite(s[3]) for s in samples)


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        AgreementAccumulator("pose", {}, {}, window=0)
