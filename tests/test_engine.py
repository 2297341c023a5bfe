"""The engine's running modes on the real clip with the real models.

Overlapping frames, live delivery and model switches must not change a single number:
every tracker is touched by one thread at a time and sees its frames in order, so each
scheduled or live run has to reproduce the one-frame-at-a-time video run exactly.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_holistic.pipeline import Engine, EngineModeError, EngineOptions

PARTS = ("pose", "face", "left_hand", "right_hand")


def assert_same(expected, got, check_models=True):
    assert len(got) == len(expected)
    found = 0
    for i, (a, b) in enumerate(zip(expected, got)):
        if check_models:
            assert a.models == b.models, f"frame {i}: models differ"
        for name in PARTS:
            pa, pb = getattr(a, name), getattr(b, name)
            assert (pa is None) == (pb is None), f"frame {i}: {name} found by one run only"
            if pa is not None:
                np.testing.assert_array_equal(pa.landmarks, pb.landmarks, err_msg=f"frame {i} {name}")
                found += 1
    return found


def video_run(make_pipeline, frames, switches=None, **kw):
    """detect_for_video one frame at a time, applying ``switches[i]`` before frame i."""
    e = make_pipeline(own_pool=True, schedule="sequential", **kw)
    out = []
    for i, f in enumerate(frames):
        if switches and i in switches:
            e.update(**switches[i])
        out.append(e.detect_for_video(f, i / 30.0))
    return e, out


@pytest.fixture(scope="module")
def holistic_baseline(make_pipeline, clip_frames):
    """The whole clip, holistic, one frame at a time with no worker threads: the reference."""
    seq, expected = video_run(make_pipeline, clip_frames, task="holistic", threads=1)
    return seq.tracking.pose.detector_runs, expected


# -- video: run() --------------------------------------------------------------------------

# "inline" is the baseline's own path ("sequential" schedules every frame inline); "auto" probes
# all three on this clip.
@pytest.mark.parametrize("schedule", ["overlap", "split", "auto"])
def test_run_equals_one_frame_at_a_time(make_pipeline, clip_frames, holistic_baseline, schedule):
    detector_runs, expected = holistic_baseline
    ovl = make_pipeline(own_pool=True, task="holistic", threads=1, schedule=schedule)
    got = list(ovl.run((f, i / 30.0) for i, f in enumerate(clip_frames)))
    if schedule == "auto":  # the clip is long enough for one full probe of every schedule
        assert len(ovl.schedule_choices) == 1
    found = assert_same(expected, got)
    assert found > len(clip_frames)  # pose on most frames plus some face/hand results: a real comparison
    for r in got:
        assert "total" in r.latency_ms and ("pose_landmarks" in r.latency_ms or "pose_detect" in r.latency_ms)
    assert ovl.tracking.pose.detector_runs == detector_runs
    assert ovl.counters.as_dict() == {"submitted": len(clip_frames), "completed": len(clip_frames),
                                      "dropped": 0, "failed": 0}


def test_run_for_pose_task_equals_detect_for_video(make_pipeline, clip_frames):
    frames = clip_frames[:20]
    _, expected = video_run(make_pipeline, frames, task="pose", threads=1)
    b = make_pipeline(own_pool=True, task="pose", threads=1)
    assert_same(expected, list(b.run((f, i / 30.0) for i, f in enumerate(frames))))


def test_schedule_chooser_keeps_the_faster_mode():
    from edge_holistic.pipeline.engine import ScheduleChooser

    c = ScheduleChooser(probe=3, hold=5)
    seen = []
    for _ in range(3 * (3 + 1)):
        mode = c.next_mode()
        seen.append(mode)
        c.record(mode, 0.010 if mode == "inline" else 0.030)
    assert seen == ["overlap"] * 4 + ["split"] * 4 + ["inline"] * 4
    assert [c.next_mode() for _ in range(5)] == ["inline"] * 5 and c.choices == ["inline"]
    assert c.next_mode() == "overlap"  # probing again after the hold


# -- guards --------------------------------------------------------------------------------

def test_wrong_call_for_the_mode_names_both_modes(make_pipeline, clip_frames):
    f = clip_frames[0]
    image = make_pipeline(running_mode="image", pose_model="lite")
    video = make_pipeline(running_mode="video", pose_model="lite")
    live = make_pipeline(running_mode="live", pose_model="lite", result_callback=lambda r, m: None)
    calls = {
        "detect": lambda e: e.detect(f),
        "detect_for_video": lambda e: e.detect_for_video(f, 0.0),
        "run": lambda e: list(e.run([(f, 0.0)])),
        "submit": lambda e: e.submit(f, 0.0),
        "detect_async": lambda e: e.detect_async(f, 0.0),
    }
    allowed = {"image": {"detect"}, "video": {"detect_for_video", "run"}, "live": {"submit", "detect_async"}}
    for engine in (image, video, live):
        mode = engine.running_mode.value
        for name, call in calls.items():
            if name in allowed[mode]:
                continue
            with pytest.raises(EngineModeError) as err:
                call(engine)
            needed = next(m for m, names in allowed.items() if name in names)
            assert f"running_mode={needed}" in str(err.value) and f"in {mode} mode" in str(err.value), str(err.value)
    assert image.counters.submitted == video.counters.submitted == live.counters.submitted == 0


def test_options_are_checked_naming_the_key(make_pipeline):
    with pytest.raises(ValueError, match="result_callback is required in live mode"):
        make_pipeline(running_mode="live")
    with pytest.raises(ValueError, match="result_callback is only for live mode"):
        make_pipeline(running_mode="video", result_callback=print)
    with pytest.raises(ValueError, match="running_mode must be one of image, video, live"):
        make_pipeline(running_mode="stream")
    with pytest.raises(ValueError, match="threads must be an integer in \\[1, 16\\] or 'auto', got 0"):
        make_pipeline(threads=0)
    with pytest.raises(ValueError, match="min_tracking_confidence must be a number in \\[0, 1\\]"):
        make_pipeline(min_tracking_confidence=1.5)
    e = make_pipeline(pose_model="lite")
    with pytest.raises(ValueError, match="running_mode cannot change"):
        e.update(running_mode="image")
    with pytest.raises(ValueError, match="smooth must be true or false"):
        e.update(smooth="maybe")
    assert e.effective_options.smooth is True


def test_timestamps_must_increase(make_pipeline, clip_frames):
    f = clip_frames[0]
    video = make_pipeline(pose_model="lite")
    video.detect_for_video(f, 1.0)
    for bad in (1.0, 0.5):
        with pytest.raises(ValueError, match="timestamps must increase"):
            video.detect_for_video(f, bad)
    with pytest.raises(ValueError, match="timestamps must increase"):
        list(video.run([(f, 2.0), (f, 2.0)]))
    live = make_pipeline(running_mode="live", pose_model="lite", result_callback=lambda r, m: None)
    live.submit(f, 5.0)
    with pytest.raises(ValueError, match="timestamps must increase"):
        live.submit(f, 4.0)
    assert live.flush(timeout=60)
    assert live.counters.submitted == 1 and live.counters.completed == 1


# -- live ----------------------------------------------------------------------------------

class Collector:
    def __init__(self, engine_ref=None, delay: float = 0.0) -> None:
        self.results, self.metas, self.in_flight, self.threads = [], [], [], set()
        self.engine = engine_ref
        self.delay = delay

    def __call__(self, result, meta) -> None:
        self.results.append(result)
        self.metas.append(meta)
        self.threads.add(threading.current_thread().name)
        if self.engine is not None:
            self.in_flight.append(self.engine[0].in_flight)
        if self.delay:
            time.sleep(self.delay)  # a slow consumer, so that frames pile up (not a timed assertion)


def test_live_lossless_equals_video_in_frame_order(make_pipeline, clip_frames, holistic_baseline):
    _, expected = holistic_baseline
    ref = []
    sink = Collector(ref)
    live = make_pipeline(own_pool=True, running_mode="live", task="holistic", threads=1, max_in_flight=2,
                         result_callback=sink)
    ref.append(live)
    for i, f in enumerate(clip_frames):
        assert live.submit(f, i / 30.0, meta=i, block=True) is True
    assert live.flush(timeout=300)
    assert sink.metas == list(range(len(clip_frames)))  # every frame, in frame order
    assert_same(expected, sink.results)
    # In flight: at most max_in_flight computing plus one waiting, seen from the callback.
    assert max(sink.in_flight) <= 2 + 1
    assert sink.threads == {"engine-deliver"}
    assert live.counters.as_dict() == {"submitted": len(clip_frames), "completed": len(clip_frames),
                                       "dropped": 0, "failed": 0}


def test_live_newest_frame_wins_and_drops_are_counted(make_pipeline, clip_frames):
    ref = []
    sink = Collector(ref, delay=0.02)
    live = make_pipeline(running_mode="live", task="pose", pose_model="lite", max_in_flight=1,
                         result_callback=sink)
    ref.append(live)
    accepted_clean = 0
    for i, f in enumerate(clip_frames):
        accepted_clean += live.submit(f, i / 30.0, meta=i)  # as fast as the caller can: no waiting
    assert live.flush(timeout=300)
    c = live.counters
    assert c.submitted == len(clip_frames)
    assert c.dropped > 0, "a consumer slower than the caller must cost frames"
    assert c.dropped == len(clip_frames) - accepted_clean  # submit() said which ones displaced a frame
    assert c.completed + c.dropped == c.submitted and c.failed == 0
    assert len(sink.metas) == c.completed
    assert sink.metas == sorted(set(sink.metas))  # frame order, no repeats
    assert sink.metas[-1] == len(clip_frames) - 1  # the newest frame is never the one dropped
    assert max(sink.in_flight) <= 1 + 1


def test_live_model_switch_keeps_tracking_and_names_the_models(make_pipeline, clip_frames):
    """pose full -> lite at frame 10 (no new detection), then holistic with the lite hand
    model at 20: every result equals a video run switching at the same frames, and names
    the models that computed it."""
    frames = clip_frames[:30]
    switches = {10: {"pose_model": "lite"}, 20: {"task": "holistic", "hand_model": "lite"}}
    video, expected = video_run(make_pipeline, frames, switches, task="pose", pose_model="full", threads=1)
    sink = Collector()
    live = make_pipeline(own_pool=True, running_mode="live", task="pose", pose_model="full", threads=1,
                         result_callback=sink)
    for i, f in enumerate(frames):
        if i in switches:
            assert live.flush(timeout=120)
            runs = live.tracking.pose.detector_runs
            live.update(**switches[i])
        live.submit(f, i / 30.0, meta=i, block=True)
        if i in switches:
            assert live.flush(timeout=120)
            assert live.tracking.pose.detector_runs == runs, f"frame {i}: the switch re-ran the pose detector"
    assert live.flush(timeout=120)
    assert sink.metas == list(range(len(frames)))
    names = [r.models for r in sink.results]
    assert all(m["pose"].startswith("pose_landmark_full") and "face" not in m for m in names[:10])
    assert all(m["pose"].startswith("pose_landmark_lite") and "face" not in m for m in names[10:20])
    assert all(m["hand"].startswith("hand_landmark_lite") and m["face"].startswith("face_landmark")
               for m in names[20:])
    assert all(r.pose is not None for r in sink.results), "a frame lost its pose around a switch"
    assert_same(expected, sink.results)  # same models named, same numbers
    assert any(r.face is not None for r in sink.results[20:])
    assert live.tracking.pose.detector_runs == video.tracking.pose.detector_runs


def test_live_callback_errors_do_not_stop_the_stream_and_close_delivers_everything(make_pipeline, clip_frames):
    seen = []

    def callback(result, meta):
        seen.append(meta)
        if meta == 2:
            raise RuntimeError("a subscriber bug")
        if meta == 3:
            live.flush()  # waiting for itself: refused, not a deadlock

    live = make_pipeline(running_mode="live", task="pose", pose_model="lite", result_callback=callback)
    for i, f in enumerate(clip_frames[:8]):
        live.submit(f, i / 30.0, meta=i, block=True)
    live.close()  # delivers every accepted frame before stopping
    assert seen == list(range(8))
    assert live.counters.completed == 8 and live.counters.failed == 0
    with pytest.raises(RuntimeError, match="closed"):
        live.submit(clip_frames[8], 1.0)


def test_live_failed_frame_reaches_the_error_callback_in_frame_order(make_pipeline, clip_frames, monkeypatch):
    """Fault injection: the pose landmark model fails on its 4th call (frame 3)."""
    from edge_holistic.runtime.interpreter import TfliteModel

    orig = TfliteModel.invoke
    calls = {"n": 0}

    def invoke(model, output_indices):
        if "pose_landmark" in model.name:
            calls["n"] += 1
            if calls["n"] == 4:
                raise RuntimeError("injected interpreter failure")
        return orig(model, output_indices)

    events = []
    live = make_pipeline(own_pool=True, running_mode="live", task="pose", pose_model="lite",
                         result_callback=lambda r, m: events.append(("result", m)),
                         error_callback=lambda e, m: events.append(("error", m, str(e))))
    monkeypatch.setattr(TfliteModel, "invoke", invoke)
    for i, f in enumerate(clip_frames[:6]):
        live.submit(f, i / 30.0, meta=i, block=True)
    assert live.flush(timeout=120)
    assert events == [("result", 0), ("result", 1), ("result", 2), ("error", 3, "injected interpreter failure"),
                      ("result", 4), ("result", 5)]
    assert live.counters.as_dict() == {"submitted": 6, "completed": 5, "dropped": 0, "failed": 1}


def test_engines_in_different_namespaces_share_a_pool_safely(registry, clip_frames):
    """Two engines at once on one pool: each runs its own interpreters (an interpreter must
    never run on two threads at once), and each gets exactly the single-engine result."""
    from edge_holistic.runtime.pool import ModelPool

    frames = clip_frames[:12]
    pool = ModelPool(registry)
    alone = Engine(EngineOptions(pose_model="lite", threads=1), pool=pool)
    expected = [alone.detect_for_video(f, i / 30.0) for i, f in enumerate(frames)]
    alone.close()
    out = {}

    def work(ns):
        with Engine(EngineOptions(pose_model="lite", threads=1), pool=pool, namespace=ns) as e:
            out[ns] = [e.detect_for_video(f, i / 30.0) for i, f in enumerate(frames)]

    threads = [threading.Thread(target=work, args=(ns,)) for ns in ("web", "shadow")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ns in ("web", "shadow"):
        assert_same(expected, out[ns])
    slots = {key[4] for key, _name, _used in pool.loaded()}
    assert {"main", "web/main", "shadow/main"} <= slots
    assert not any(used for _key, _name, used in pool.loaded())  # all three closed: nothing retained


def test_live_switches_from_another_thread_while_frames_flow(make_pipeline, clip_frames):
    """Changes arrive at any moment from a control thread (MQTT, web) while the camera keeps
    submitting: nothing raises, order and accounting hold, and every result names the
    models of one coherent configuration."""
    sink = Collector()
    live = make_pipeline(own_pool=True, running_mode="live", task="holistic", hand_model="full", threads=1,
                         result_callback=sink)
    changes = [{"hand_model": "lite"}, {"task": "pose"}, {"pose_model": "lite", "task": "holistic"},
               {"hand_model": "full", "pose_model": "full"}]
    stop = threading.Event()
    applied = []

    def control():
        i = 0
        while not stop.is_set():
            applied.append(live.update(**changes[i % len(changes)]))
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=control)
    t.start()
    try:
        for i, f in enumerate(clip_frames[:40]):
            live.submit(f, i / 30.0, meta=i, block=i % 2 == 0)
    finally:
        stop.set()
        t.join()
    assert live.flush(timeout=300)
    c = live.counters
    assert c.completed + c.dropped == c.submitted == 40 and c.failed == 0
    assert sink.metas == sorted(sink.metas) and len(set(sink.metas)) == len(sink.metas)
    assert len(applied) >= 2
    for r, meta in zip(sink.results, sink.metas):
        m = r.models
        holistic = "face" in m
        assert set(m) == ({"pose_detector", "pose", "face_detector", "face", "hand_recrop", "hand"} if holistic
                          else {"pose_detector", "pose"}), (meta, m)
        if not holistic:
            assert r.face is None and r.left_hand is None and r.right_hand is None, meta
