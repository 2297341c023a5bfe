"""Unit tests for tests/golden.py on hand-computed numbers, plus checks on the committed golden data."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import golden


def _square(width: int, height: int, side_px: float = 100.0) -> np.ndarray:
    """Four corners of a side_px square at the origin, normalised by (width, height)."""
    px = np.array([[0, 0], [side_px, 0], [0, side_px], [side_px, side_px]], dtype=float)
    return px / [width, height]


def test_ratio_uniform_offset_is_distance_over_diagonal() -> None:
    ref = _square(200, 100)
    ours = ref + np.array([3.0, 4.0]) / [200, 100]  # every point 5 px away
    r = golden.median_distance_ratio(ours, ref, None, 200, 100)
    assert r == pytest.approx(5.0 / (100.0 * np.sqrt(2)))


def test_ratio_uses_width_for_x_and_height_for_y() -> None:
    ref = _square(400, 100)
    dx = ref.copy()
    dx[:, 0] += 0.01  # 4 px at W=400
    dy = ref.copy()
    dy[:, 1] += 0.01  # 1 px at H=100
    diag = 100.0 * np.sqrt(2)
    assert golden.median_distance_ratio(dx, ref, None, 400, 100) == pytest.approx(4.0 / diag)
    assert golden.median_distance_ratio(dy, ref, None, 400, 100) == pytest.approx(1.0 / diag)


def test_ratio_is_median_not_mean() -> None:
    w = h = 1000
    ref = np.array([[0, 0], [100, 0], [0, 100], [100, 100], [50, 50]], dtype=float) / w
    offsets_px = np.array([1.0, 2.0, 3.0, 10.0, 500.0])
    ours = ref.copy()
    ours[:, 0] += offsets_px / w
    assert golden.median_distance_ratio(ours, ref, None, w, h) == pytest.approx(3.0 / (100 * np.sqrt(2)))


def test_mask_drops_points_from_error_and_box() -> None:
    w = h = 1000
    ref = np.array([[0, 0], [30, 40], [900, 900]], dtype=float) / w  # last point: extrapolated, far away
    ours = ref.copy()
    ours[:2, 1] += 2.0 / h  # 2 px error on the visible points
    ours[2] += 0.3  # wild error on the masked-out point
    mask = np.array([True, True, False])
    # box of the two visible reference points: 30 x 40 -> diagonal 50
    assert golden.median_distance_ratio(ours, ref, mask, w, h) == pytest.approx(2.0 / 50.0)


def test_ratio_ignores_extra_columns() -> None:
    ref4 = np.c_[_square(100, 100), np.zeros(4), np.ones(4)]  # x, y, z, visibility
    ours3 = np.c_[_square(100, 100), np.full(4, 9.0)]  # z differs wildly: must not count
    assert golden.median_distance_ratio(ours3, ref4, None, 100, 100) == 0.0


@pytest.mark.parametrize(
    "ours, ref, mask, match",
    [
        (np.zeros((3, 2)), np.zeros((4, 2)), None, "same N"),
        (np.zeros((4,)), np.zeros((4, 2)), None, "same N"),
        (np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(3, bool), "visible_mask has shape"),
        (np.zeros((4, 2)), np.zeros((4, 2)), np.zeros(4, bool), "selects no landmarks"),
        (np.zeros((4, 2)), np.full((4, 2), 0.5), None, "zero size"),
    ],
)
def test_ratio_rejects_bad_input(ours, ref, mask, match) -> None:
    with pytest.raises(ValueError, match=match):
        golden.median_distance_ratio(ours, ref, mask, 100, 100)


def test_pose_visible_mask_threshold_is_strict() -> None:
    pose = np.zeros((33, 4))
    pose[:3, 3] = [0.2, 0.5, 0.9]
    mask = golden.pose_visible_mask(pose)
    assert mask[:3].tolist() == [False, False, True]
    assert mask.sum() == 1


def test_found_helpers() -> None:
    class Frame:  # stands in for FrameResult: only attribute presence matters
        pose = object()
        face = None
        left_hand = object()
        right_hand = None

    ours = golden.found_parts(Frame())
    assert ours == {"pose", "left_hand"}
    assert golden.found_mismatches(ours, {"pose", "face", "left_hand"}) == {"face": "reference only"}
    assert golden.found_mismatches({"pose", "right_hand"}, {"pose"}) == {"right_hand": "ours only"}
    assert golden.found_mismatches(ours, ours) == {}
    assert golden.found_agreement([True, True, False, False], [True, False, False, True]) == 0.5
    with pytest.raises(ValueError, match="equal-length"):
        golden.found_agreement([True], [True, False])
    with pytest.raises(ValueError, match="equal-length"):
        golden.found_agreement([], [])


def _item(**over):
    item = {"width": 10, "height": 20, "pose": None, "pose_world": None, "face": None,
            "left_hand": [[0.1, 0.2, 0.3]] * 21, "right_hand": None}
    item.update(over)
    return item


def _write(path: Path, items, gz: bool = False) -> None:
    text = json.dumps({"mediapipe": "0.10.21", "solution": "holistic", "settings": {}, "items": items})
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def test_load_plain_and_gzip(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"x.jpg": _item()})
    _write(tmp_path / "b.json.gz", {"0": _item(), "1": _item(left_hand=None)}, gz=True)
    a = golden.load_golden("a", tmp_path)
    assert a.items["x.jpg"].left_hand.shape == (21, 3)
    assert golden.found_parts(a.items["x.jpg"]) == {"left_hand"}
    b = golden.load_golden("b.json", tmp_path)
    assert b.frame(1).left_hand is None and b.frame(0).width == 10


def test_load_errors_name_file_item_and_key(tmp_path: Path) -> None:
    with pytest.raises(golden.GoldenFormatError, match="no golden file nope.json"):
        golden.load_golden("nope", tmp_path)
    _write(tmp_path / "bad.json", {"img.jpg": _item(face=[[0.0, 0.0, 0.0]] * 467)})
    with pytest.raises(golden.GoldenFormatError, match=r"bad.json item 'img.jpg': 'face' has shape \(467, 3\)"):
        golden.load_golden("bad", tmp_path)
    item = _item()
    del item["pose_world"]
    _write(tmp_path / "short.json", {"3": item})
    with pytest.raises(golden.GoldenFormatError, match=r"item '3': missing key\(s\) \['pose_world'\]"):
        golden.load_golden("short", tmp_path)


# --- the committed data -------------------------------------------------------------

STATIC = ("pose_lite_static", "pose_full_static", "holistic_full_static")
TRACKING = ("pose_full_tracking", "holistic_full_tracking")


@pytest.mark.parametrize("name", STATIC)
def test_static_golden_covers_exactly_the_committed_images(name: str) -> None:
    g = golden.load_golden(name)
    paths = golden.image_paths()
    assert sorted(g.items) == [p.name for p in paths]
    # Stale references would silently grade us against a different picture.
    for p in paths:
        assert g.input["sha256"][p.name] == hashlib.sha256(p.read_bytes()).hexdigest(), p.name
    assert g.settings["static_image_mode"] is True


@pytest.mark.parametrize("name", TRACKING)
def test_tracking_golden_matches_clip(name: str) -> None:
    g = golden.load_golden(name)
    info = golden.load_clip_info()
    assert g.input["sha256"] == hashlib.sha256(golden.CLIP_PATH.read_bytes()).hexdigest()
    assert sorted(map(int, g.items)) == list(range(info.frames))
    assert g.settings["static_image_mode"] is False
    ref_pose = [g.frame(i).pose is not None for i in range(info.frames)]
    # MediaPipe agrees with the clip's geometric ground truth where it is unambiguous.
    assert not any(ref_pose[i] for i in info.person_absent)
    assert all(ref_pose[i] for i in info.person_visible)


def test_clip_info_is_consistent() -> None:
    info = golden.load_clip_info()
    assert info.person_absent and info.person_visible
    assert not (info.person_absent & info.person_visible)
    assert max(info.person_absent | info.person_visible) < info.frames


def test_holistic_golden_has_both_hands_on_the_two_reference_images() -> None:
    g = golden.load_golden("holistic_full_static")
    for name in ("COCO_val2014_000000000241.jpg", "COCO_val2014_000000000536.jpg"):
        assert golden.found_parts(g.items[name]) == set(golden.PARTS), name
    assert golden.found_parts(g.items["no_person_kitchen.jpg"]) == frozenset()
