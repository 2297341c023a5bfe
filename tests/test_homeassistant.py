"""Home Assistant discovery: the pure config builders on exact JSON, and the announcer's logic.

The real-broker, real-daemon tests are in test_homeassistant_live.py.
"""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from edge_holistic import __version__
from edge_holistic.config import load_config
from edge_holistic.publish import homeassistant as ha
from mqtt_fixtures import HA_COMMON_KEYS, HA_REQUIRED_KEYS

VARIANTS = {"pose_model": ["full", "lite"], "task": ["pose", "holistic"], "precision": ["float", "int8"]}
STATUS = {"pose_model": "full", "task": "pose", "precision": "float", "max_fps": 15.0, "state": "running"}


def cfg(text: str = "device_id: cam.0\n"):
    return load_config(text=text, models=False)


def build(c=None, **kw):
    args = dict(version="9.9", variants=VARIANTS, status=STATUS, board="Raspberry Pi 5 Model B Rev 1.0",
                config_url=None)
    args.update(kw)
    return dict(ha.discovery_configs(c or cfg(), **args))


AVAILABILITY = [{"topic": "edge_holistic/cam.0/available",
                 "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
                 "payload_available": "online", "payload_not_available": "offline"}]
DEVICE = {"identifiers": ["edge_holistic_cam_0"], "name": "cam.0", "manufacturer": "edge-holistic",
          "model": "Raspberry Pi 5 Model B Rev 1.0", "sw_version": "9.9"}
ORIGIN = {"name": "edge-holistic", "sw_version": "9.9"}


def test_person_binary_sensor_exact_json():
    got = build()["homeassistant/binary_sensor/cam_0/person/config"]
    assert json.loads(json.dumps(got)) == {
        "name": "Person", "unique_id": "edge_holistic_cam_0_person",
        "state_topic": "edge_holistic/cam.0/person", "payload_on": "ON", "payload_off": "OFF",
        "device_class": "occupancy", "availability": AVAILABILITY, "device": DEVICE, "origin": ORIGIN,
    }


def test_diagnostic_sensor_and_controls_exact_json():
    c = build()
    assert c["homeassistant/sensor/cam_0/latency_p95/config"] == {
        "name": "Latency p95", "unique_id": "edge_holistic_cam_0_latency_p95",
        "state_topic": "edge_holistic/cam.0/stats",
        "value_template": "{{ value_json.latency_ms.total.p95 if value_json.latency_ms.total is defined else none }}",
        "unit_of_measurement": "ms", "state_class": "measurement", "entity_category": "diagnostic",
        "device_class": "duration", "availability": AVAILABILITY, "device": DEVICE, "origin": ORIGIN,
    }
    assert c["homeassistant/select/cam_0/pose_model/config"] == {
        "name": "Pose model", "unique_id": "edge_holistic_cam_0_pose_model",
        "state_topic": "edge_holistic/cam.0/status", "value_template": "{{ value_json.pose_model }}",
        "command_topic": "edge_holistic/cam.0/ha/pose_model/set", "options": ["full", "lite"],
        "entity_category": "config", "icon": "mdi:human",
        "availability": AVAILABILITY, "device": DEVICE, "origin": ORIGIN,
    }
    assert c["homeassistant/switch/cam_0/pause/config"] == {
        "name": "Pause", "unique_id": "edge_holistic_cam_0_pause", "state_topic": "edge_holistic/cam.0/status",
        "value_template": "{{ 'ON' if value_json.state == 'paused' else 'OFF' }}",
        "command_topic": "edge_holistic/cam.0/ha/pause/set", "payload_on": "ON", "payload_off": "OFF",
        "state_on": "ON", "state_off": "OFF", "icon": "mdi:pause",
        "availability": AVAILABILITY, "device": DEVICE, "origin": ORIGIN,
    }
    number = c["homeassistant/number/cam_0/max_fps/config"]
    assert (number["min"], number["max"], number["command_topic"], number["value_template"]) == \
        (0, 240, "edge_holistic/cam.0/ha/max_fps/set", "{{ value_json.max_fps }}")


def test_every_entity_has_its_required_keys_and_a_stable_unique_id():
    c = build(cfg("device_id: cam.0\nhomeassistant: {snapshot: true}\n"))
    assert len(c) == len(ha.ENTITIES) == 12
    ids = set()
    for topic, conf in c.items():
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "cam_0", "config")
        assert HA_COMMON_KEYS | HA_REQUIRED_KEYS[component] <= set(conf), topic
        assert conf["unique_id"] == f"edge_holistic_cam_0_{object_id}"
        assert conf["device"]["identifiers"] == ["edge_holistic_cam_0"]
        assert conf["availability"] == AVAILABILITY
        if component == "sensor":
            assert conf["entity_category"] == "diagnostic" and conf["state_class"] == "measurement"
            assert conf["unit_of_measurement"]
        ids.add(conf["unique_id"])
    assert len(ids) == 12
    # The same inputs give byte-identical configs: unique_ids cannot drift between restarts.
    assert json.dumps(build(cfg("device_id: cam.0\nhomeassistant: {snapshot: true}\n"))) == json.dumps(c)


def test_snapshot_entity_only_when_enabled_and_removed_otherwise():
    off = build()
    assert off["homeassistant/image/cam_0/snapshot/config"] is None  # announced as an empty config
    on = build(cfg("device_id: cam.0\nhomeassistant: {snapshot: true}\n"))
    assert on["homeassistant/image/cam_0/snapshot/config"]["image_topic"] == "edge_holistic/cam.0/snapshot"
    assert on["homeassistant/image/cam_0/snapshot/config"]["content_type"] == "image/jpeg"


def test_select_options_include_the_running_value_and_prefix_is_configurable():
    c = build(cfg("device_id: d1\nhomeassistant: {discovery_prefix: ha/disc}\nmqtt: {topic_prefix: site/a}\n"),
              variants={"pose_model": ["lite"]}, status={**STATUS, "pose_model": "heavy", "precision": "int8"})
    sel = c["ha/disc/select/d1/pose_model/config"]
    assert sel["options"] == ["lite", "heavy"]
    assert sel["command_topic"] == "site/a/d1/ha/pose_model/set"
    assert c["ha/disc/select/d1/precision/config"]["options"] == ["int8"]
    assert c["ha/disc/select/d1/task/config"]["options"] == ["pose", "holistic"]


def test_device_info_board_and_configuration_url(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\x00")
    assert ha.read_board_model(model) == "Raspberry Pi 4 Model B Rev 1.5"
    assert ha.read_board_model(tmp_path / "absent") is None
    c = cfg("device_id: cam0\n")
    assert ha.configuration_url(c, "pi") is None  # no http section (yet): no link
    http = SimpleNamespace(enabled=True, host="0.0.0.0", port=8080)
    with_http = SimpleNamespace(http=http)
    assert ha.configuration_url(with_http, "pi") == "http://pi:8080/"
    http.host = "192.168.1.7"
    assert ha.configuration_url(with_http, "pi") == "http://192.168.1.7:8080/"
    http.host = "fe80::1"
    assert ha.configuration_url(with_http, "pi") == "http://[fe80::1]:8080/"
    http.host = "127.0.0.1"  # the default bind: not reachable from Home Assistant's browser
    assert ha.configuration_url(with_http, "pi") is None
    http.host = "0.0.0.0"
    http.enabled = False
    assert ha.configuration_url(with_http, "pi") is None
    assert ha.configuration_url(SimpleNamespace(http=SimpleNamespace(enabled=True)), "pi") is None  # no port
    dev = ha.device_info(c, "1.0", None, "http://pi:8080/")
    assert dev == {"identifiers": ["edge_holistic_cam0"], "name": "cam0", "manufacturer": "edge-holistic",
                   "model": "edge-holistic", "sw_version": "1.0", "configuration_url": "http://pi:8080/"}


def test_command_translation_and_errors():
    assert ha.command_for("pose_model", b"lite") == {"cmd": "set", "pose_model": "lite", "id": "ha-pose_model"}
    assert ha.command_for("max_fps", b"7") == {"cmd": "set", "max_fps": 7.0, "id": "ha-max_fps"}
    assert ha.command_for("pause", b"ON")["cmd"] == "pause"
    assert ha.command_for("pause", b"OFF")["cmd"] == "resume"
    for key, payload, words in [("pause", b"maybe", "ON or OFF"), ("max_fps", b"fast", "not a number"),
                                ("task", b"", "short name"), ("nope", b"x", "unknown"),
                                ("task", b"\xff", "UTF-8")]:
        with pytest.raises(ValueError, match=words):
            ha.command_for(key, payload)


# -- the announcer with a recording session and view (pure logic; the live test uses the real ones) --
class FakeSession:
    def __init__(self):
        self.sent, self.subs, self.listeners = [], {}, []
        self.lock = threading.Lock()

    def send(self, topic, payload, qos=0, retain=False):
        with self.lock:
            self.sent.append((topic, payload, qos, retain))
        return True

    def subscribe(self, topic, callback, qos=1):
        self.subs[topic] = callback

    def add_connect_listener(self, fn):
        self.listeners.append(fn)
        return lambda: self.listeners.remove(fn)


class FakeView:
    def __init__(self):
        self.commands, self.taps = [], []
        self.release = threading.Event()
        self.release.set()

    def status(self):
        return dict(STATUS)

    def installed_variants(self):
        return dict(VARIANTS)

    def command(self, cmd, origin, timeout=5.0):
        self.release.wait(5)
        self.commands.append((cmd, origin))
        return {"ok": cmd.get("task") != "bogus", "error": "unknown task"}

    def add_frame_tap(self, fn):
        self.taps.append(fn)
        return lambda: self.taps.remove(fn)


class FixedRng:
    def uniform(self, a, b):
        return 0.05


def _announcer(text="device_id: cam0\n"):
    s, v = FakeSession(), FakeView()
    h = ha.HomeAssistant(cfg(text), s, v, board=None, hostname="host", rng=FixedRng()).start()
    return h, s, v


def test_announce_on_connect_birth_and_person_state():
    h, s, v = _announcer()
    try:
        assert len(s.listeners) == 1 and len(v.taps) == 1
        assert set(s.subs) == {"edge_holistic/cam0/ha/+/set", "homeassistant/status"}
        s.listeners[0]()  # what the session does on every connect: returns at once
        deadline = time.monotonic() + 5
        while h.announcements < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        configs = [m for m in s.sent if m[0].endswith("/config")]
        assert len(configs) == 12 and all(m[2] == 1 and m[3] for m in configs)
        assert [m[1] for m in configs if "/image/" in m[0]] == [b""]
        v.taps[0](None, None, {"pose": None})
        v.taps[0](None, None, {"pose": None})
        v.taps[0](None, None, {"pose": {"score": 0.9}})
        person = [m for m in s.sent if m[0] == "edge_holistic/cam0/person"]
        assert [(m[1], m[3]) for m in person] == [(b"OFF", True), (b"ON", True)]  # on change only, retained
        before = len(s.sent)
        s.subs["homeassistant/status"]("homeassistant/status", b"offline")
        time.sleep(0.2)
        assert len(s.sent) == before
        s.subs["homeassistant/status"]("homeassistant/status", b"online")
        assert len(s.sent) == before  # not at once: after a random delay
        deadline = time.monotonic() + 5
        while len(s.sent) < before + 13 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(s.sent) == before + 13  # 12 configs + the current person state
        assert s.sent[-1][:2] == ("edge_holistic/cam0/person", b"ON")
        assert h.announcements == 2
    finally:
        h.stop()
    assert not s.listeners and not v.taps


def test_commands_go_to_the_view_off_the_network_thread_bounded():
    h, s, v = _announcer()
    try:
        on_set = s.subs["edge_holistic/cam0/ha/+/set"]
        v.release.clear()  # the view is busy (a model load): commands must queue, not block
        t0 = time.monotonic()
        for _ in range(ha.COMMAND_QUEUE + 5):
            on_set("edge_holistic/cam0/ha/pose_model/set", b"lite")
        assert time.monotonic() - t0 < 1.0
        assert h.commands_dropped >= 4
        v.release.set()
        on_set("edge_holistic/cam0/ha/pause/set", b"sideways")  # rejected before the queue
        assert h.command_errors == 1
        deadline = time.monotonic() + 5
        while len(v.commands) < ha.COMMAND_QUEUE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert v.commands[0] == ({"cmd": "set", "pose_model": "lite", "id": "ha-pose_model"}, "homeassistant")
        on_set("edge_holistic/cam0/ha/task/set", b"bogus")
        deadline = time.monotonic() + 5
        while h.command_errors < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert h.command_errors == 2  # the daemon's refusal is counted and logged
    finally:
        h.stop()


def test_snapshot_jpeg_at_most_once_a_second():
    import cv2
    import numpy as np

    from edge_holistic.pipeline.types import FrameResult

    h, s, v = _announcer("device_id: cam0\nhomeassistant: {snapshot: true}\n")
    try:
        rgb = np.full((480, 800, 3), 128, np.uint8)
        result = FrameResult(width=800, height=480)
        for _ in range(5):
            v.taps[0](rgb, result, {"pose": None})
        deadline = time.monotonic() + 5
        while h.snapshots < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        snaps = [m for m in s.sent if m[0] == "edge_holistic/cam0/snapshot"]
        assert len(snaps) == 1
        img = cv2.imdecode(np.frombuffer(snaps[0][1], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (384, 640, 3)  # scaled to the tile width
    finally:
        h.stop()


def test_version_is_the_package_version():
    h, s, v = _announcer()
    try:
        configs = dict(h.configs())
        assert configs["homeassistant/sensor/cam0/fps/config"]["device"]["sw_version"] == __version__
    finally:
        h.stop()


class SlowQueueSession(FakeSession):
    """A session whose bounded queue drains slowly, like a busy link."""

    def __init__(self):
        super().__init__()
        self.queue, self.peak = [], 0
        self.draining = True
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def queue_len(self):
        with self.lock:
            return len(self.queue)

    def send(self, topic, payload, qos=0, retain=False):
        super().send(topic, payload, qos, retain)
        with self.lock:
            self.queue.append(topic)
            self.peak = max(self.peak, len(self.queue))

    def _drain(self):
        while self.draining:
            time.sleep(0.01)
            with self.lock:
                if self.queue:
                    self.queue.pop(0)


def test_announcement_never_fills_a_small_queue():
    s, v = SlowQueueSession(), FakeView()
    h = ha.HomeAssistant(cfg("device_id: cam0\nmqtt: {queue_size: 4}\n"), s, v, board=None, hostname="h",
                         rng=FixedRng()).start()
    try:
        s.listeners[0]()
        deadline = time.monotonic() + 10
        while h.announcements < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len([m for m in s.sent if m[0].endswith("/config")]) == 12
        assert s.peak <= 2  # half the queue at most: landmarks/status keep their room, nothing pushed out
    finally:
        s.draining = False
        h.stop()
