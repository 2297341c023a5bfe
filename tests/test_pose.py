"""The pose task end to end: real models, committed images and clip, MediaPipe's golden outputs."""
from __future__ import annotations

import numpy as np
import pytest

import golden
from conftest import load_rgb

PERSON_IMAGES = [p.name for p in golden.image_paths() if not p.name.startswith("no_person")]
NO_PERSON = "no_person_kitchen.jpg"


@pytest.fixture(scope="module")
def static_full(make_pipeline):
    return make_pipeline(task="pose", pose_model="full", running_mode="image")


@pytest.mark.parametrize("name", PERSON_IMAGES)
def test_person_found_with_33_landmarks_inside_the_frame(static_full, name):
    r = static_full.detect(load_rgb(name))
    assert r.pose is not None, f"no person found on {name}"
    lm = r.pose.landmarks
    assert lm.shape == (33, 5) and r.pose.world.shape == (33, 3)
    visible = lm[:, 3] > 0.5
    assert visible.sum() >= 8
    # MediaPipe extrapolates joints just outside the frame (feet below the border), so allow a margin.
    assert np.all((lm[visible, :2] > -0.5) & (lm[visible, :2] < 1.5))
    assert np.all((lm[:, 3:] >= 0) & (lm[:, 3:] <= 1))
    # World landmarks are metres around the hips: a body is under ~2.5 m in any direction.
    assert np.abs(r.pose.world).max() < 2.5
    assert set(r.latency_ms) >= {"total", "pose_detect", "pose_landmarks"}


def test_no_person_on_empty_scene(static_full):
    r = static_full.detect(load_rgb(NO_PERSON))
    assert r.pose is None
    assert r.face is None and r.left_hand is None and r.right_hand is None


@pytest.mark.parametrize("variant", ["full", "lite"])
def test_agreement_with_mediapipe_static(make_pipeline, variant):
    """Median distance of MediaPipe-visible landmarks <= 1.5% of the person's box diagonal."""
    ref = golden.load_golden(f"pose_{variant}_static")
    pipe = make_pipeline(task="pose", pose_model=variant, running_mode="image")
    compared = 0
    for name, item in ref.items.items():
        r = pipe.detect(load_rgb(name))
        assert (r.pose is not None) == (item.pose is not None), f"{name}: found/not-found differs from MediaPipe"
        if item.pose is None:
            continue
        mask = golden.pose_visible_mask(item.pose)
        ratio = golden.median_distance_ratio(r.pose.landmarks, item.pose, mask, item.width, item.height)
        assert ratio <= 0.015, f"{name}: median distance {ratio:.4f} of the box diagonal"
        compared += 1
    assert compared >= 5


def test_tracking_clip_follows_leaves_and_returns(make_pipeline, clip_frames):
    info = golden.load_clip_info()
    ref = golden.load_golden("pose_full_tracking")
    pipe = make_pipeline(task="pose", pose_model="full")
    found, ratios = [], []
    for i, frame in enumerate(clip_frames):
        r = pipe.detect_for_video(frame, i / 30.0)
        found.append(r.pose is not None)
        item = ref.frame(i)
        if r.pose is not None and item.pose is not None and i in info.person_visible:
            mask = golden.pose_visible_mask(item.pose)
            ratios.append(golden.median_distance_ratio(r.pose.landmarks, item.pose, mask, item.width, item.height))
    assert len(clip_frames) == info.frames
    assert all(found[i] for i in info.person_visible), "pose lost while the person was in view"
    assert not any(found[i] for i in info.person_absent), "pose reported with nobody in view"
    # Tracking: the detector ran only to (re)acquire, far fewer times than there are frames.
    assert pipe.tracking.pose.detector_runs <= len(info.person_absent) + 5
    first_return = min(i for i in info.person_visible if i > max(info.person_absent))
    assert found[first_return], "person not re-detected after returning"
    assert golden.found_agreement(found, [ref.frame(i).pose is not None for i in range(info.frames)]) >= 0.95
    assert float(np.median(ratios)) <= 0.015


def test_smoothing_reduces_jitter_on_a_still_frame(make_pipeline):
    """Same image repeated: smoothed output must be steadier than static re-detection."""
    img = load_rgb("COCO_val2014_000000000536.jpg")
    tracked = make_pipeline(task="pose", pose_model="lite")
    outs = [tracked.detect_for_video(img, i / 30.0).pose.landmarks[:, :2] for i in range(8)]
    # Frame 0 is cropped from the detector's ROI, later frames from the landmark ROI: that
    # one-time ROI change moves extrapolated off-screen points (feet) by ~1% and is not jitter.
    assert np.abs(np.diff(np.stack(outs[1:]), axis=0)).max() < 0.01


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 1), (2, 3, 4)])
def test_tiny_and_odd_frames_do_not_crash(static_full, shape):
    r = static_full.detect(np.zeros(shape, np.uint8))
    assert r.pose is None and r.width == shape[1] and r.height == shape[0]


def test_grayscale_and_rgba_frames(static_full):
    rgb = load_rgb("COCO_val2014_000000000459.jpg")
    gray = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    r_gray = static_full.detect(gray)
    assert r_gray.pose is not None
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    r_rgba = static_full.detect(rgba)
    r_rgb = static_full.detect(rgb)
    np.testing.assert_allclose(r_rgba.pose.landmarks, r_rgb.pose.landmarks, atol=1e-6)


def test_non_uint8_frame_is_a_clear_error(static_full):
    with pytest.raises(ValueError, match="uint8"):
        static_full.detect(np.zeros((10, 10, 3), np.float32))


def test_model_switch_between_frames_keeps_tracking(make_pipeline, clip_frames):
    pipe = make_pipeline(task="pose", pose_model="full")
    r0 = pipe.detect_for_video(clip_frames[0], 0.0)
    assert r0.models["pose"] == "pose_landmark_full_nomask@float16"
    runs = pipe.tracking.pose.detector_runs
    pipe.update(pose_model="lite")
    r1 = pipe.detect_for_video(clip_frames[1], 1 / 30)
    assert r1.models["pose"] == "pose_landmark_lite_nomask@float16" and r1.pose is not None
    assert pipe.tracking.pose.detector_runs == runs  # switched without re-detecting


def test_bad_update_changes_nothing(make_pipeline):
    from edge_holistic.runtime import ModelError

    pipe = make_pipeline(task="pose", pose_model="lite")
    with pytest.raises(ModelError, match="valid: full, lite"):
        pipe.update(pose_model="gigantic")
    with pytest.raises(ValueError, match="unknown task"):
        pipe.update(task="dance")
    with pytest.raises(ValueError, match="unknown pipeline option"):
        pipe.update(colour="red")
    assert pipe.options.pose_model == "lite" and pipe.options.task == "pose"
