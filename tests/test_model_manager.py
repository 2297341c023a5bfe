"""Several model versions side by side: concurrent variants, release/reload, switching mid-clip."""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from conftest import load_rgb
from edge_holistic.pipeline import Engine, EngineOptions
from edge_holistic.runtime.pool import ModelPool

IMAGES = ["COCO_val2014_000000000536.jpg", "COCO_val2014_000000000459.jpg", "COCO_val2014_000000000241.jpg"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def _run(pipe: Engine, frames):
    return [pipe.detect(f).pose.landmarks.copy() for f in frames]


def test_concurrent_variants_match_one_at_a_time(registry):
    frames = [load_rgb(n) for n in IMAGES]
    variants = ["lite", "full", "lite", "full"]
    sequential = {}
    for v in ("lite", "full"):
        p = Engine(EngineOptions(pose_model=v, running_mode="image", threads=1), registry=registry)
        sequential[v] = _run(p, frames)
        p.close()
    results = [None] * len(variants)
    barrier = threading.Barrier(len(variants))

    def worker(i, v):
        p = Engine(EngineOptions(pose_model=v, running_mode="image", threads=1), registry=registry)
        barrier.wait()
        results[i] = _run(p, frames * 2)
        p.close()

    threads = [threading.Thread(target=worker, args=(i, v)) for i, v in enumerate(variants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for v, res in zip(variants, results):
        for got, want in zip(res, sequential[v] * 2):
            np.testing.assert_array_equal(got, want)


def test_release_frees_memory_and_reload_gives_identical_results(registry):
    img = load_rgb("COCO_val2014_000000000536.jpg")
    pool = ModelPool(registry, idle_release_s=0.0)
    pipe = Engine(EngineOptions(task="holistic", running_mode="image", hand_model="full"), registry=registry,
                    pool=pool)
    before = pipe.detect(img)
    gc.collect()
    rss_loaded = _rss_mb()
    # Switch to the pose task: the face and hand interpreters are no longer in use.
    pipe.update(task="pose")
    pipe.detect(img)
    released = pool.release_idle()
    assert {"face_landmark@float16", "hand_landmark_full@float16", "hand_recrop@float16"} <= set(released)
    assert "pose_landmark_full_nomask@float16" not in released  # in use: never released
    gc.collect()
    rss_released = _rss_mb()
    assert rss_released < rss_loaded - 5.0, f"RSS {rss_loaded:.1f} -> {rss_released:.1f} MB after release"
    pipe.update(task="holistic")
    after = pipe.detect(img)
    np.testing.assert_array_equal(before.pose.landmarks, after.pose.landmarks)
    for part in ("face", "left_hand", "right_hand"):
        a, b = getattr(before, part), getattr(after, part)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
    pipe.close()


def test_switch_mid_clip_keeps_every_frame(make_pipeline, clip_frames):
    pipe = make_pipeline(task="pose", pose_model="full")
    seen = []
    for i, frame in enumerate(clip_frames[:30]):
        if i == 10:
            pipe.update(pose_model="lite")
        if i == 20:
            pipe.update(precision="float", pose_model="full")
        r = pipe.detect_for_video(frame, i / 30.0)
        assert r.pose is not None, f"frame {i} lost its pose around a switch"
        seen.append(r.models["pose"])
    assert seen[:10] == ["pose_landmark_full_nomask@float16"] * 10
    assert seen[10:20] == ["pose_landmark_lite_nomask@float16"] * 10
    assert seen[20:] == ["pose_landmark_full_nomask@float16"] * 10


def test_unknown_names_fail_clearly(make_pipeline):
    with pytest.raises(Exception, match="unknown hand_landmark variant 'mega'; valid: full, lite"):
        make_pipeline(task="holistic", hand_model="mega")
    with pytest.raises(Exception, match="unknown precision 'double'"):
        make_pipeline(task="pose", precision="double")


def test_hand_model_switch_keeps_face_and_hand_tracking(make_pipeline, clip_frames):
    pipe = make_pipeline(task="holistic", hand_model="full")
    for i, frame in enumerate(clip_frames[:8]):
        pipe.detect_for_video(frame, i / 30.0)
    assert pipe.tracking.face.prev_roi is not None
    tracked = pipe.tracking.face.tracked_frames
    pipe.update(hand_model="lite")
    r = pipe.detect_for_video(clip_frames[8], 8 / 30.0)
    assert r.models["hand"].startswith("hand_landmark_lite")
    assert r.face is not None
    # The rebuilt face tracker started from the previous frame's landmarks, not from scratch.
    assert pipe.tracking.face.tracked_frames == tracked + 1
