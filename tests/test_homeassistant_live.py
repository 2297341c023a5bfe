"""Home Assistant discovery with a real mosquitto and the real daemon process.

Retained configs with each component's required keys, the same unique_ids after a
restart, HA's select/switch/number commands really applied (the next landmarks'
``models`` change, the status-backed state follows), the birth message re-announces,
and ``edge-holistic ha-remove`` clears every config.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mqtt_fixtures import (HA_COMMON_KEYS, HA_REQUIRED_KEYS, REPO, DaemonProcess, Subscriber, daemon_config,
                           wait_until)


def retained_configs(port: int, device: str, settle: float = 1.0) -> dict:
    """Every retained config of ``device`` a fresh subscriber receives: topic -> payload bytes."""
    sub = Subscriber(port, f"homeassistant/+/{device}/+/config")
    time.sleep(settle)  # retained messages arrive right after SUBACK
    out = {m.topic: m.payload for m in sub.messages if m.retain}
    sub.close()
    return out


def check_configs(configs: dict, device: str, snapshot: bool) -> dict:
    """Validate each config; return unique_id per topic."""
    ids = {}
    for topic, payload in configs.items():
        _, component, node, object_id, _ = topic.split("/")
        conf = json.loads(payload)
        assert HA_COMMON_KEYS | HA_REQUIRED_KEYS[component] <= set(conf), (topic, sorted(conf))
        assert conf["availability"][0]["topic"] == f"edge_holistic/{device}/available"
        assert conf["device"]["identifiers"] == [f"edge_holistic_{device}"]
        ids[topic] = conf["unique_id"]
    components = sorted(t.split("/")[1] for t in configs)
    assert components == sorted(["binary_sensor"] + ["sensor"] * 5 + ["select"] * 3 + ["number", "switch"]
                                + (["image"] if snapshot else []))
    return ids


def start(tmp_path, port, device, **sections):
    cfg = daemon_config(tmp_path, port, device, **sections)
    d = DaemonProcess(cfg)
    return cfg, d


def test_configs_retained_valid_stable_and_states(broker, tmp_path):
    device = "ha-one"
    watch = Subscriber(broker.port, f"edge_holistic/{device}/#")
    cfg, d = start(tmp_path, broker.port, device, homeassistant={"snapshot": True})
    try:
        assert watch.wait_for("available", lambda m: m.text == "online", 60), d.log()[-3000:]
        assert wait_until(lambda: len(retained_configs(broker.port, device, 0.5)) == 12, 20), d.log()[-3000:]
        configs = retained_configs(broker.port, device)
        first_ids = check_configs(configs, device, snapshot=True)
        conf = {t.split("/")[3]: json.loads(p) for t, p in configs.items()}
        assert conf["pose_model"]["options"] and "full" in conf["pose_model"]["options"]
        assert conf["person"]["state_topic"] == f"edge_holistic/{device}/person"
        # The state topics the entities read really carry those values.
        status = watch.wait_for("status", timeout=10).json()
        assert status["pose_model"] == "lite" and status["state"] == "running"
        # The clip has a person, then none, then the person again: the sensor follows, OFF and ON.
        assert watch.wait_for("person", lambda m: m.text == "ON", 20), d.log()[-3000:]
        assert watch.wait_for("person", lambda m: m.text == "OFF", 20)
        late = Subscriber(broker.port, f"edge_holistic/{device}/person")  # retained for late readers
        assert wait_until(lambda: [m for m in late.messages if m.retain and m.text in ("ON", "OFF")], 5)
        late.close()
        stats = watch.wait_for("stats", timeout=10).json()
        assert "processed" in stats["fps"] and "dropped" in stats["fps"] and "rss_mb" in stats
        snap = watch.wait_for("snapshot", timeout=20)
        assert snap is not None, d.log()[-3000:]
        img = __import__("cv2").imdecode(np.frombuffer(snap.payload, np.uint8), 1)
        assert img is not None and img.shape[2] == 3
        d.signal(signal.SIGTERM)
        assert d.wait(20) == 0
    finally:
        d.close()
    assert watch.wait_for("available", lambda m: m.text == "stopped", 5)
    t_restart = time.monotonic()
    d2 = DaemonProcess(cfg)
    try:
        assert watch.wait_for("available", lambda m: m.text == "online", 60, since=t_restart), d2.log()[-3000:]
        time.sleep(1.0)
        assert check_configs(retained_configs(broker.port, device), device, snapshot=True) == first_ids
    finally:
        d2.close()
        watch.close()


@pytest.fixture(scope="module")
def controlled(broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ha-ctl")
    device = "ha-ctl"
    watch = Subscriber(broker.port, f"edge_holistic/{device}/#")
    cfg, d = start(tmp, broker.port, device, pipeline={"pose_model": "full", "max_fps": 6})
    assert watch.wait_for("available", lambda m: m.text == "online", 60), d.log()[-3000:]
    yield device, cfg, d, watch
    d.close()
    watch.close()


def _status_since(watch, pred, since, timeout=30.0):
    return watch.wait_for("status", lambda m: pred(m.json()), timeout, since=since)


def test_select_switches_the_model_and_its_state_follows(controlled):
    device, cfg, d, watch = controlled
    base = f"edge_holistic/{device}"
    first = watch.wait_for("landmarks", timeout=30)
    assert first is not None and "pose_landmark_full" in json.dumps(first.json()["models"])
    t0 = time.monotonic()
    watch.publish(f"{base}/ha/pose_model/set", "lite")
    st = _status_since(watch, lambda s: s["pose_model"] == "lite", t0)
    assert st is not None, d.log()[-3000:]
    lm = watch.wait_for("landmarks", lambda m: "pose_landmark_lite" in json.dumps(m.json()["models"]), 30, since=t0)
    assert lm is not None, d.log()[-3000:]
    # Not optimistic: a name the daemon refuses leaves the state where it was.
    t1 = time.monotonic()
    watch.publish(f"{base}/ha/pose_model/set", "gigantic")
    res = watch.wait_for("cmd/result", lambda m: not m.json()["ok"], 20, since=t1)
    assert res is not None and "gigantic" in res.json()["error"]
    assert all(json.loads(m.payload)["pose_model"] == "lite" for m in watch.of("status", since=t1))
    # max_fps through the number entity
    t2 = time.monotonic()
    watch.publish(f"{base}/ha/max_fps/set", "4")
    assert _status_since(watch, lambda s: s["max_fps"] == 4, t2) is not None


def test_switch_pauses_and_resumes(controlled):
    device, cfg, d, watch = controlled
    base = f"edge_holistic/{device}"
    t0 = time.monotonic()
    watch.publish(f"{base}/ha/pause/set", "ON")
    paused = _status_since(watch, lambda s: s["state"] == "paused", t0)
    assert paused is not None, d.log()[-3000:]
    time.sleep(1.0)  # a frame in flight when the pause landed may still be published
    t_quiet = time.monotonic()
    time.sleep(1.5)
    assert watch.of("landmarks", since=t_quiet) == []
    watch.publish(f"{base}/ha/pause/set", "sideways")  # rejected, logged, nothing changes
    t1 = time.monotonic()
    watch.publish(f"{base}/ha/pause/set", "OFF")
    assert _status_since(watch, lambda s: s["state"] == "running", t1) is not None
    assert watch.wait_for("landmarks", timeout=20, since=t1) is not None
    assert d.proc.poll() is None


def test_birth_message_triggers_a_reannounce(controlled, broker):
    device, cfg, d, watch = controlled
    sub = Subscriber(broker.port, f"homeassistant/+/{device}/+/config")
    try:
        assert wait_until(lambda: len(sub.messages) >= 11, 10)  # the image config is empty: not retained
        time.sleep(0.5)
        t0 = time.monotonic()
        sub.publish("homeassistant/status", "offline")
        time.sleep(0.5)
        assert [m for m in sub.messages if m.t >= t0] == []
        sub.publish("homeassistant/status", "online")
        again = wait_until(lambda: len([m for m in sub.messages if m.t >= t0]) >= 12, 10)
        assert again, d.log()[-3000:]
        fresh = {m.topic for m in sub.messages if m.t >= t0}
        assert len(fresh) == 12 and all(json.loads(m.payload) for m in sub.messages if m.t >= t0 and m.payload)
    finally:
        sub.close()


def test_reload_with_snapshot_on_announces_the_image(controlled, broker):
    import yaml

    device, cfg, d, watch = controlled
    image = f"homeassistant/image/{device}/snapshot/config"
    assert image not in retained_configs(broker.port, device, 0.5)
    doc = yaml.safe_load(cfg.read_text())
    doc["homeassistant"] = {"snapshot": True}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    t0 = time.monotonic()
    d.signal(signal.SIGHUP)  # the homeassistant section changed: a new session announces again
    assert wait_until(lambda: image in retained_configs(broker.port, device, 0.3), 30), d.log()[-3000:]
    assert json.loads(retained_configs(broker.port, device)[image])["image_topic"] == f"edge_holistic/{device}/snapshot"
    assert watch.wait_for("snapshot", timeout=20, since=t0) is not None


def test_ha_remove_clears_every_config(controlled, broker):
    device, cfg, d, watch = controlled
    assert len(retained_configs(broker.port, device)) >= 11
    d.signal(signal.SIGTERM)  # stopped first: a running daemon would announce again on reconnect
    assert d.wait(20) == 0
    r = subprocess.run([sys.executable, "-m", "edge_holistic.cli", "ha-remove", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "removed 12" in r.stdout
    assert retained_configs(broker.port, device) == {}
    leftover = Subscriber(broker.port, f"edge_holistic/{device}/person")
    time.sleep(0.5)
    assert [m for m in leftover.messages if m.retain] == []
    leftover.close()
    bad = subprocess.run([sys.executable, "-m", "edge_holistic.cli", "ha-remove", "--config", str(cfg),
                          "--mqtt-port", "1", "--timeout", "2"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert bad.returncode == 1 and "cannot reach the broker" in bad.stderr
