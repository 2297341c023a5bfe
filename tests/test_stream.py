"""FrameStream: overlapping frames must not change a single number.

Each tracker is touched by one thread at a time and sees its frames in order, so the
overlapped run has to reproduce the one-frame-at-a-time run exactly, on the real clip
(person enters, leaves and returns) with the real models.
"""
from __future__ import annotations

import numpy as np
import pytest


def _parts(r):
    return {name: getattr(r, name) for name in ("pose", "face", "left_hand", "right_hand")}


@pytest.mark.parametrize("schedule", ["overlap", "split", "inline", "auto"])
def test_overlapped_stream_equals_sequential_processing(make_pipeline, clip_frames, schedule):
    from edge_holistic.pipeline.stream import FrameStream

    seq = make_pipeline(own_pool=True, task="holistic", threads=1, parallel=False)
    expected = [seq.process(f, i / 30.0) for i, f in enumerate(clip_frames)]
    ovl = make_pipeline(own_pool=True, task="holistic", threads=1)
    with FrameStream(ovl, schedule=schedule) as stream:
        got = list(stream.run((f, i / 30.0) for i, f in enumerate(clip_frames)))
        if schedule == "auto":  # the clip is long enough for one full probe of every schedule
            assert len(stream.chooser.choices) == 1
    assert len(got) == len(expected)
    found = 0
    for i, (a, b) in enumerate(zip(expected, got)):
        for name, part in _parts(a).items():
            other = getattr(b, name)
            assert (part is None) == (other is None), f"frame {i}: {name} found by one run only"
            if part is not None:
                np.testing.assert_array_equal(part.landmarks, other.landmarks, err_msg=f"frame {i} {name}")
                found += 1
        assert "total" in b.latency_ms and ("pose_landmarks" in b.latency_ms or "pose_detect" in b.latency_ms)
    assert found > len(clip_frames)  # pose on most frames plus some face/hand results: a real comparison
    assert ovl.pose.detector_runs == seq.pose.detector_runs


def test_stream_for_pose_task_is_plain_process(make_pipeline, clip_frames):
    from edge_holistic.pipeline.stream import FrameStream

    a = make_pipeline(own_pool=True, task="pose", threads=1)
    b = make_pipeline(own_pool=True, task="pose", threads=1)
    frames = clip_frames[:20]
    with FrameStream(b) as stream:
        got = list(stream.run((f, i / 30.0) for i, f in enumerate(frames)))
    for i, f in enumerate(frames):
        r = a.process(f, i / 30.0)
        assert (r.pose is None) == (got[i].pose is None)
        if r.pose is not None:
            np.testing.assert_array_equal(r.pose.landmarks, got[i].pose.landmarks)


def test_schedule_chooser_keeps_the_faster_mode():
    from edge_holistic.pipeline.stream import ScheduleChooser

    c = ScheduleChooser(probe=3, hold=5)
    seen = []
    for _ in range(3 * (3 + 1)):
        mode = c.next_mode()
        seen.append(mode)
        c.record(mode, 0.010 if mode == "inline" else 0.030)
    assert seen == ["overlap"] * 4 + ["split"] * 4 + ["inline"] * 4
    assert [c.next_mode() for _ in range(5)] == ["inline"] * 5 and c.choices == ["inline"]
    assert c.next_mode() == "overlap"  # probing again after the hold
