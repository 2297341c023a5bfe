"""The publisher and the grabber's lossless read-ahead, in-process with real messages and a real source."""
from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest

from conftest import take_all
from edge_holistic.camera import FrameGrabber, make_source
from edge_holistic.camera.grabber import LOSSLESS_AHEAD, Frame
from edge_holistic.config import SourceConfig
from edge_holistic.daemon.loop import Publisher
from edge_holistic.daemon.metrics import Metrics
from edge_holistic.publish import JsonLinesSink
from edge_holistic.pipeline.types import FrameResult, PoseResult
from mqtt_fixtures import DATA


def result(seq: int, value: float = 0.5) -> FrameResult:
    lms = np.full((33, 5), value, dtype=np.float32)
    return FrameResult(width=4, height=3, pose=PoseResult(0.9, lms, np.zeros((33, 3), np.float32)),
                       models={"pose": "pose_landmark_lite@float16"}, latency_ms={"total": 5.0, "pose": 4.0})


def frame(seq: int) -> Frame:
    return Frame(rgb=np.zeros((3, 4, 3), np.uint8), seq=seq, t_capture=time.monotonic(), wall_ts=time.time())


class RaisingSink:
    def publish(self, msg, payload=None):
        raise OSError("broker gone")


@pytest.fixture
def publisher():
    out = io.StringIO()
    metrics = Metrics()
    models = []
    pub = Publisher(metrics, lambda: [JsonLinesSink(out), RaisingSink()], lambda: "cam0",
                    on_models=models.append).start()
    yield pub, metrics, out, models
    pub.stop(2.0)


def test_a_nan_landmark_stays_inside_its_frame(publisher):
    pub, metrics, out, _ = publisher
    pub.on_result(result(1), frame(1))
    pub.on_result(result(2, float("nan")), frame(2))  # dumps(allow_nan=False) refuses it
    pub.on_result(result(3), frame(3))
    assert pub.drain(5)
    seqs = [json.loads(line)["frame"]["seq"] for line in out.getvalue().splitlines()]
    assert seqs == [1, 3] and pub.thread.is_alive()
    c = metrics.counts()
    assert c["process_errors"] == 1 and c["processed"] == 2
    assert c["publish_errors"] == 2  # the raising sink, once per frame; the other sink still got them


def test_messages_carry_capture_to_publish_and_engine_latency(publisher):
    pub, metrics, out, _ = publisher
    f = frame(7)
    f.t_capture -= 0.25  # the frame waited 250 ms before its result came
    pub.on_result(result(7), f)
    assert pub.drain(5)
    lat = json.loads(out.getvalue())["latency_ms"]
    assert lat["engine"] == 5.0 and lat["pose"] == 4.0 and lat["total"] >= 250.0
    assert metrics.latest["frame"]["seq"] == 7 and metrics.latency_p50("total") >= 250.0


def test_engine_errors_and_frame_taps(publisher):
    pub, metrics, out, _ = publisher
    seen = []
    unsubscribe = pub.add_tap(lambda rgb, res, msg: seen.append((rgb.shape, msg["frame"]["seq"])))
    bad = pub.add_tap(lambda rgb, res, msg: 1 / 0)
    pub.on_error(RuntimeError("model failed"), frame(1))
    pub.on_result(result(2), frame(2))
    assert pub.drain(5)
    unsubscribe()
    bad()
    pub.on_result(result(3), frame(3))
    assert pub.drain(5)
    assert seen == [((3, 4, 3), 2)]
    c = metrics.counts()
    assert c["process_errors"] == 1 and c["tap_errors"] == 1 and c["processed"] == 2


def test_a_model_switch_is_reported_once(publisher):
    pub, _, _, models = publisher
    pub.on_result(result(1), frame(1))
    switched = result(2)
    switched.models = {"pose": "pose_landmark_full@float16"}
    pub.on_result(switched, frame(2))
    pub.on_result(switched, frame(3))
    assert pub.drain(5)
    assert models == [{"pose": "pose_landmark_full@float16"}]


def test_a_lossless_file_is_decoded_ahead_but_never_dropped():
    cfg = SourceConfig(type="file", path=str(DATA / "clip.avi"), realtime=False, loop=False)
    g = FrameGrabber(make_source(cfg), stall_timeout=5).start()
    try:
        assert g.lossless
        deadline = time.monotonic() + 20
        while g.waiting < LOSSLESS_AHEAD and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert g.waiting == LOSSLESS_AHEAD  # decoded ahead, then waits: bounded
        assert take_all(g) == list(range(1, 101)) and g.counters.dropped == 0 and g.ended.is_set()
    finally:
        g.stop()


def test_daemon_view_on_a_running_daemon(tmp_path):
    """DaemonView against the real daemon, in-process: the facade the web page and HA build on."""
    import argparse

    import yaml

    from edge_holistic.config import load_config
    from edge_holistic.daemon import Daemon

    path = tmp_path / "view.yaml"
    path.write_text(yaml.safe_dump({
        "device_id": "view", "source": {"type": "file", "path": str(DATA / "clip.avi"), "realtime": True},
        "pipeline": {"task": "pose", "pose_model": "lite", "precision": "float", "threads": 1, "max_fps": 10},
        "mqtt": {"enabled": False}, "health": {"stats_interval": 60}}))
    cfg = load_config(str(path))
    d = Daemon(cfg, argparse.Namespace(stdout=False), {})
    view = d.view()
    taps = []
    runner = threading.Thread(target=lambda: taps.append(("exit", d.run())))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while view.latest() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert view.latest()["source"] == "view"
        unsubscribe = view.add_frame_tap(lambda rgb, res, msg: taps.append(msg["frame"]["seq"]))
        res = view.command({"id": "v1", "cmd": "set", "pose_model": "full"}, origin="web", timeout=30)
        assert res["ok"] and res["origin"] == "web" and res["applied"] == {"pose_model": "full"}, res
        deadline = time.monotonic() + 30
        while not (view.latest()["models"]["pose"].startswith("pose_landmark_full")) and time.monotonic() < deadline:
            time.sleep(0.05)
        st = view.status()
        assert st["pose_model"] == "full" and st["models"]["pose"].startswith("pose_landmark_full")
        assert st["healthy"] is True and view.health() == (True, "")
        assert view.stats()["frames"]["processed_total"] >= 1
        bad = view.command({"cmd": "set", "pose_model": "../../etc/passwd"}, origin="homeassistant")
        assert bad["ok"] is False and bad["origin"] == "homeassistant"
        variants = view.installed_variants()
        assert {"lite", "full"} <= set(variants["pose_model"]) and variants["task"] == ["pose", "holistic"]
        assert view.registry is not None and view.pool is not None
        unsubscribe()
        assert any(isinstance(t, int) for t in taps)
    finally:
        d.request_stop()
        runner.join(30)
    assert taps[-1] == ("exit", 0)


def test_status_line_fps_is_the_rate_since_each_readers_previous_line():
    """The terminal (1 s), the log (stats_interval) and systemd's STATUS= (5 s) lines each show the
    processed rate over their own period. Before, only the terminal sampled it, so the log and
    `systemctl status` said 0.0 fps while frames were processed."""
    now = [100.0]
    m = Metrics(clock=lambda: now[0])
    for _ in range(10):
        m.frame_done(True, {"total": 5.0}, None)
    now[0] += 2.0
    assert m.processed_fps("log") == pytest.approx(5.0)  # 10 frames in the 2 s since start
    for _ in range(4):
        m.frame_done(True, {"total": 5.0}, None)
    now[0] += 1.0
    assert m.processed_fps("log") == pytest.approx(4.0)  # its own baseline: 4 frames in 1 s
    assert m.processed_fps("systemd") == pytest.approx(14 / 3.0, abs=0.01)  # another reader, since start
    now[0] += 1.0
    assert m.processed_fps("log") == 0.0  # nothing processed in that second
