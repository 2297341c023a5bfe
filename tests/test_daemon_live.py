"""The daemon's live path, end to end in a real process: every frame, in order, honest latency,
and a model switch mid-stream whose messages name the models that computed them."""
from __future__ import annotations

import json
import time

import jsonschema

from edge_holistic.message import load_schema
from mqtt_fixtures import DATA, DaemonProcess, daemon_config, wait_until, watched_daemon

PREFIX = "edge_holistic"
CLIP_FRAMES = 100


def test_once_stdout_publishes_every_frame_in_order_with_capture_to_publish_latency(tmp_path):
    cfg = daemon_config(tmp_path, 1, "live", source={"type": "file", "path": str(DATA / "clip.avi"),
                                                     "realtime": False},
                        pipeline={"max_fps": 0}, mqtt={"enabled": False})
    d = DaemonProcess(cfg, "--once", "--stdout", separate_stdout=True)
    try:
        assert d.wait(120) == 0, d.log()
        msgs = [json.loads(line) for line in d.stdout_path.read_text().splitlines()]
        assert [m["frame"]["seq"] for m in msgs] == list(range(1, CLIP_FRAMES + 1)), d.log()
        ts = [m["frame"]["ts"] for m in msgs]
        assert ts == sorted(ts)
        schema = load_schema()
        for m in msgs[::9]:
            jsonschema.validate(m, schema)
        for m in msgs:  # capture -> publish includes the engine's own time and any wait before it
            lat = m["latency_ms"]
            assert lat["total"] >= lat["engine"] > 0, lat
        assert "end of stream" in d.log() and "Traceback" not in d.log()
        assert "died" not in d.log() and "unhealthy" not in d.log()  # a file that ends is not a fault
    finally:
        d.close()


def test_model_switch_mid_stream_every_message_names_its_models(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "switch", args=["--once"],
                        source={"type": "file", "path": str(DATA / "clip.avi"), "realtime": False},
                        pipeline={"max_fps": 12}) as (_, sub, d):  # paced, lossless: ~8 s for the clip
        assert wait_until(lambda: len(sub.of("landmarks")) >= 15, 60), d.log()
        t0 = time.monotonic()
        sub.publish(f"{PREFIX}/switch/cmd", json.dumps({"id": "mid", "cmd": "set", "pose_model": "full"}))
        res = sub.wait_for("cmd/result", lambda m: m.json().get("id") == "mid", timeout=15, since=t0)
        assert res is not None and res.json()["ok"] is True, d.log()
        assert d.wait(120) == 0, d.log()
        assert sub.wait_for("available", lambda m: m.text == "stopped", timeout=10)
        msgs = [m.json() for m in sub.of("landmarks")]
        assert [m["frame"]["seq"] for m in msgs] == list(range(1, CLIP_FRAMES + 1))  # nothing lost
        names = [m["models"]["pose"] for m in msgs]
        first_full = next(i for i, n in enumerate(names) if n.startswith("pose_landmark_full"))
        assert first_full >= 15, names  # the switch happened mid-stream, not before it
        assert all(n.startswith("pose_landmark_lite") for n in names[:first_full])
        assert all(n.startswith("pose_landmark_full") for n in names[first_full:])  # one switch, no way back
        status = sub.wait_for("status", lambda m: m.json()["models"].get("pose", "").startswith(
            "pose_landmark_full"), timeout=5, since=t0)
        assert status is not None  # status says so once the new model computed a frame
