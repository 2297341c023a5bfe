"""The real daemon process against a real mosquitto broker, observed by a paho subscriber."""
from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import time
from pathlib import Path

import jsonschema
import pytest

from edge_holistic.message import load_schema
from edge_holistic.publish import CMD_MAX_BYTES, CommandError, parse_command
from mqtt_fixtures import (DATA, Broker, DaemonProcess, Subscriber, daemon_config, free_port, wait_until,
                           watched_daemon)


PREFIX = "edge_holistic"


@pytest.fixture(scope="module")
def running(broker, tmp_path_factory):
    """One daemon on the sample clip shared by the read-mostly tests."""
    with watched_daemon(broker, tmp_path_factory.mktemp("daemon"), "shared") as (_, sub, d):
        first = sub.wait_for("landmarks", timeout=60)
        assert first is not None, "no landmarks message within 60 s:\n" + d.log()
        yield d, sub, broker


def test_messages_arrive_and_validate_against_schema(running):
    d, sub, _ = running
    assert wait_until(lambda: len(sub.of("landmarks")) >= 5, 30), d.log()
    schema = load_schema()
    msgs = [m.json() for m in sub.of("landmarks")[:5]]
    for msg in msgs:
        jsonschema.validate(msg, schema)
        assert msg["source"] == "shared"
        assert msg["frame"]["width"] == 400 and msg["frame"]["height"] == 300
        assert msg["models"]["pose"].startswith("pose_landmark_lite")
    seqs = [m["frame"]["seq"] for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The clip's first 38 frames show a person: pose landmarks were found on some frame.
    assert any(m["pose"] is not None for m in msgs)
    assert all(not m.retain for m in sub.of("landmarks"))


def test_available_is_online_and_retained(running):
    d, _, broker = running
    late = Subscriber(broker.port, f"{PREFIX}/shared/available")  # joins after the fact: needs retain
    try:
        got = late.wait_for("available", timeout=10)
        assert got is not None and got.text == "online" and got.retain
    finally:
        late.close()


def test_status_is_retained_and_has_no_secrets(running):
    d, _, broker = running
    late = Subscriber(broker.port, f"{PREFIX}/shared/status")
    try:
        got = late.wait_for("status", timeout=10)
        assert got is not None and got.retain
        st = got.json()
        for key in ("version", "task", "models", "precision", "threads", "config_hash", "started", "shed_load"):
            assert key in st, key
        assert st["task"] == "pose" and st["threads"] == 1 and st["precision"] == "float16"
        assert "password" not in got.text
    finally:
        late.close()


def test_stats_are_published(running):
    d, sub, _ = running
    got = sub.wait_for("stats", lambda m: m.json()["frames"]["processed_total"] > 0, timeout=15)
    assert got is not None, d.log()
    st = got.json()
    assert set(st["fps"]) >= {"captured", "processed", "dropped"}
    assert "total" in st["latency_ms"] and set(st["latency_ms"]["total"]) == {"p50", "p95"}
    assert st["rss_mb"] > 10 and st["cpu_percent"] >= 0
    assert st["mqtt"]["connected"] is True
    for key in ("stalls", "reopens", "temperature_c", "throttled"):
        assert key in st
    # the log line (journalctl) shows the processed rate too, not a stuck 0.0 (max_fps 8 here)
    rates = lambda: [float(x) for x in re.findall(r"edge_holistic\.daemon: +([0-9.]+) fps \|", d.log())]
    assert wait_until(lambda: any(r >= 1.0 for r in rates()), 15), d.log()[-3000:]


def test_cmd_switches_pose_model(running):
    d, sub, _ = running
    t0 = time.monotonic()
    sub.publish(f"{PREFIX}/shared/cmd", json.dumps({"id": "sw1", "cmd": "set", "pose_model": "full"}))
    res = sub.wait_for("cmd/result", lambda m: m.json().get("id") == "sw1", timeout=15, since=t0)
    assert res is not None and res.json()["ok"] is True, d.log()
    got = sub.wait_for("landmarks", lambda m: m.json()["models"]["pose"].startswith("pose_landmark_full"),
                       timeout=20, since=t0)
    assert got is not None, d.log()
    # Every message after the first full one stays on full.
    later = [m.json()["models"]["pose"] for m in sub.of("landmarks", since=got.t)]
    assert all(name.startswith("pose_landmark_full") for name in later)
    status = sub.wait_for("status", lambda m: m.json()["pose_model"] == "full", timeout=10, since=t0)
    assert status is not None
    # Switch back (and pause/resume round trip) so other tests see the lite model.
    sub.publish(f"{PREFIX}/shared/cmd", json.dumps({"id": "sw2", "cmd": "set", "pose_model": "lite"}))
    assert sub.wait_for("cmd/result", lambda m: m.json().get("id") == "sw2" and m.json()["ok"], timeout=15)


@pytest.mark.parametrize("payload, needle", [
    (b"{not json", "not valid JSON"),
    (json.dumps({"id": "u1", "cmd": "explode"}).encode(), "unknown cmd"),
    (json.dumps({"id": "u2", "cmd": "set", "pose_model": "gigantic"}).encode(), "gigantic"),
    (json.dumps({"id": "u3", "cmd": "set", "max_fps": -3}).encode(), "max_fps"),
    (json.dumps({"id": "u4", "cmd": "set", "model_path": "/etc/passwd"}).encode(), "model_path"),
    (b"{" + b" " * 5000 + b"}", "too large"),
])
def test_malformed_cmd_gets_error_and_stream_continues(running, payload, needle):
    d, sub, _ = running
    t0 = time.monotonic()
    sub.publish(f"{PREFIX}/shared/cmd", payload)
    res = sub.wait_for("cmd/result", lambda m: m.json()["ok"] is False and needle in m.json()["error"],
                       timeout=15, since=t0)
    assert res is not None, d.log()
    t1 = time.monotonic()
    nxt = sub.wait_for("landmarks", timeout=15, since=t1)
    assert nxt is not None and nxt.json()["models"]["pose"].startswith("pose_landmark_lite")
    assert d.proc.poll() is None


def test_kill_9_publishes_lwt_offline(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "lwt") as (_, sub, d):
        assert sub.wait_for("available", lambda m: m.text == "online", timeout=60), d.log()
        t0 = time.monotonic()
        d.signal(signal.SIGKILL)
        d.wait(10)
        # The broker notices the dropped TCP connection at once and sends the retained will.
        got = sub.wait_for("available", lambda m: m.text == "offline", timeout=20, since=t0)
        assert got is not None
    late = Subscriber(broker.port, f"{PREFIX}/lwt/available")
    try:
        got = late.wait_for("available", timeout=10)
        assert got is not None and got.text == "offline" and got.retain
    finally:
        late.close()


def test_sigterm_publishes_stopped_and_exits_0(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "term") as (_, sub, d):
        assert sub.wait_for("landmarks", timeout=60), d.log()
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.wait(10)
        assert code == 0, d.log()
        assert sub.wait_for("available", lambda m: m.text == "stopped", timeout=5, since=t0), d.log()
        assert not sub.of("available", since=t0) or all(m.text != "offline" for m in sub.of("available", since=t0))
        assert "SIGTERM: stopping" in d.log()


def test_broker_down_at_start_then_restarted(tmp_path):
    """No broker at boot: processing goes on and retries are logged; then a broker restart is survived."""
    port = free_port()
    b = Broker(tmp_path / "b", port)
    cfg = daemon_config(tmp_path, port, "restart")
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: "unreachable" in d.log(), 40), d.log()
        # Frames are processed while the broker is absent (the stats log line counts them).
        assert wait_until(lambda: "person yes" in d.log() or "person no" in d.log(), 20)
        b.start()
        sub = Subscriber(port, f"{PREFIX}/restart/#")
        assert sub.wait_for("available", lambda m: m.text == "online", timeout=30), d.log()
        assert sub.wait_for("landmarks", timeout=20)
        sub.close()
        b.stop()
        time.sleep(1.0)
        b.start()
        sub2 = Subscriber(port, f"{PREFIX}/restart/#")
        t0 = time.monotonic()
        # persistence is off, so this 'online' can only come from the daemon's republish on reconnect
        assert sub2.wait_for("available", lambda m: m.text == "online", timeout=30), d.log()
        assert sub2.wait_for("landmarks", timeout=20, since=t0), d.log()
        # cmd is resubscribed after the restart
        sub2.publish(f"{PREFIX}/restart/cmd", json.dumps({"id": "after", "cmd": "status"}))
        assert sub2.wait_for("cmd/result", lambda m: m.json().get("id") == "after", timeout=15), d.log()
        st = sub2.wait_for("stats", lambda m: m.json()["mqtt"]["reconnects"] >= 1, timeout=15)
        assert st is not None
        sub2.close()
        assert "reconnect #" in d.log()
    finally:
        d.close()
        b.close()


def _write_images(folder: Path, n: int = 2) -> None:
    folder.mkdir(exist_ok=True)
    for p in sorted((DATA / "images").glob("*.jpg"))[:n]:
        shutil.copy(p, folder / p.name)


def test_stalled_source_is_reopened_and_counted(broker, tmp_path):
    images = tmp_path / "drop"
    _write_images(images)
    with watched_daemon(broker, tmp_path, "stall", source={"type": "images", "path": str(images), "fps": 10},
                        health={"stall_timeout": 1, "unhealthy_after": 30, "stats_interval": 1}) as (_, sub, d):
        assert sub.wait_for("landmarks", timeout=60), d.log()
        for f in images.iterdir():
            f.unlink()
        st = sub.wait_for("stats", lambda m: m.json()["stalls"] >= 1 and m.json()["reopens"] >= 1, timeout=20)
        assert st is not None, d.log()
        assert "stall #1" in d.log() and "reopened images:" in d.log()
        _write_images(images)  # frames come back after a reopen
        t0 = time.monotonic()
        assert sub.wait_for("landmarks", timeout=20, since=t0), d.log()


def test_systemd_notify_ready_status_watchdog(tmp_path):
    """A NOTIFY_SOCKET we bind receives READY/STATUS/WATCHDOG. A source that goes down is
    reported ("source down" in STATUS=) but does not stop the pings: the grabber retries by
    itself, and a restart cannot bring a camera back (issue 10, item 7)."""
    images = tmp_path / "imgs"
    _write_images(images)
    sock_path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(sock_path)
    srv.settimeout(0.2)
    received = []  # (monotonic time, datagram)

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                received.append((time.monotonic(), srv.recv(4096).decode()))
            except socket.timeout:
                pass

    cfg = daemon_config(tmp_path, free_port(), "notify",  # no broker: notify must not depend on MQTT
                        source={"type": "images", "path": str(images), "fps": 10},
                        health={"stall_timeout": 1, "unhealthy_after": 2.5})
    d = DaemonProcess(cfg, env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("WATCHDOG=1" in m for _, m in received):
            drain(0.5)
        texts = [m for _, m in received]
        assert any("READY=1" in m for m in texts), (texts, d.log())
        assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in texts), texts
        drain(2.0)
        pings = [t for t, m in received if m == "WATCHDOG=1"]
        assert len(pings) >= 3, (received, d.log())
        for f in images.iterdir():
            f.unlink()
        t_stop = time.monotonic()
        drain(7.0)  # 2.5 s without a frame: unhealthy, but not wedged
        late = [t for t, m in received if m == "WATCHDOG=1" and t > t_stop + 4.0]
        assert len(late) >= 2, (received, d.log())
        down = [m for t, m in received if "STATUS=" in m and "source down" in m and t > t_stop]
        assert down, (received, d.log())
        assert "unhealthy: source down" in d.log() and "watchdog pings stopped" not in d.log()
        _write_images(images)
        t_back = time.monotonic()
        drain(8.0)
        assert any(m == "WATCHDOG=1" and t > t_back for t, m in received), d.log()
        assert "healthy again" in d.log()
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
        drain(0.5)
        assert any("STOPPING=1" in m for _, m in received)
    finally:
        d.close()
        srv.close()


def test_bad_config_exits_2_with_key_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device_id: cam0\nmqtt:\n  port: not-a-port\n")
    d = DaemonProcess(bad)
    try:
        assert d.wait(60) == 2
        assert f"{bad}:3: mqtt.port:" in d.log(), d.log()
    finally:
        d.close()
    # An override is validated too, and the error names the flag.
    good = daemon_config(tmp_path, 1883, "flags")
    d = DaemonProcess(good, "--device-id", "has space")
    try:
        assert d.wait(60) == 2
        assert "--device-id: device_id:" in d.log(), d.log()
    finally:
        d.close()


def test_sighup_reload_applies_valid_and_rejects_invalid(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "hup") as (cfg, sub, d):
        assert sub.wait_for("landmarks", timeout=60), d.log()
        text = cfg.read_text()
        cfg.write_text(text.replace("max_fps: 8", "max_fps: 4"))
        t0 = time.monotonic()
        d.signal(signal.SIGHUP)
        assert sub.wait_for("status", lambda m: m.json()["max_fps"] == 4.0 and m.json()["config_error"] is None,
                            timeout=15, since=t0), d.log()
        cfg.write_text(text.replace("pose_model: lite", "pose_model: enormous"))
        t1 = time.monotonic()
        d.signal(signal.SIGHUP)
        st = sub.wait_for("status", lambda m: m.json()["config_error"] is not None, timeout=15, since=t1)
        assert st is not None and "pipeline.pose_model" in st.json()["config_error"], d.log()
        assert st.json()["max_fps"] == 4.0
        assert sub.wait_for("landmarks", timeout=15, since=time.monotonic()), d.log()
        assert d.proc.poll() is None


def test_memory_soft_limit_sheds_load_and_says_so(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "shed", pipeline={"pose_model": "full"},
                        health={"memory_soft_mb": 40, "memory_check_interval": 0.5, "shed_max_fps": 3}) as (_, sub, d):
        st = sub.wait_for("status", lambda m: m.json()["shed_load"]["active"], timeout=60)
        assert st is not None, d.log()
        doc = st.json()
        assert "soft limit 40" in doc["shed_load"]["reason"]
        assert doc["max_fps"] == 3.0 and doc["pose_model"] == "lite"
        t0 = time.monotonic()
        got = sub.wait_for("landmarks", lambda m: m.json()["models"]["pose"].startswith("pose_landmark_lite"),
                           timeout=20, since=t0)
        assert got is not None, d.log()
        assert "shedding load" in d.log()


def test_memory_hard_limit_exits_nonzero(tmp_path):
    cfg = daemon_config(tmp_path, free_port(), "hard", health={"memory_hard_mb": 40, "memory_check_interval": 0.5})
    d = DaemonProcess(cfg)
    try:
        code = d.wait(60)
        assert code == 3, d.log()
        assert "hard limit 40" in d.log()
    finally:
        d.close()


def test_cmd_switches_task_to_holistic_and_pause_resume(running):
    d, sub, _ = running
    t0 = time.monotonic()
    sub.publish(f"{PREFIX}/shared/cmd", json.dumps({"id": "h1", "cmd": "set", "task": "holistic",
                                                    "hand_model": "lite"}))
    res = sub.wait_for("cmd/result", lambda m: m.json().get("id") == "h1", timeout=30, since=t0)
    assert res is not None and res.json()["ok"], (res and res.json(), d.log())
    got = sub.wait_for("landmarks", lambda m: "face" in m.json()["models"], timeout=30, since=t0)
    assert got is not None, d.log()
    jsonschema.validate(got.json(), load_schema())
    assert got.json()["models"]["hand"].startswith("hand_landmark_lite")
    sub.publish(f"{PREFIX}/shared/cmd", json.dumps({"id": "h2", "cmd": "set", "task": "pose"}))
    assert sub.wait_for("cmd/result", lambda m: m.json().get("id") == "h2" and m.json()["ok"], timeout=30)
    assert sub.wait_for("landmarks", lambda m: "face" not in m.json()["models"], timeout=30,
                        since=time.monotonic())
    # pause: no landmarks while paused (after a short grace for a frame already in flight), then resume
    sub.publish(f"{PREFIX}/shared/cmd", json.dumps({"id": "p1", "cmd": "pause"}))
    ack = sub.wait_for("cmd/result", lambda m: m.json().get("id") == "p1", timeout=15)
    assert ack is not None and ack.json()["state"] == "paused"
    assert sub.wait_for("status", lambda m: m.json()["state"] == "paused", timeout=10, since=ack.t - 1)
    time.sleep(2.0)
    assert sub.of("landmarks", since=ack.t + 0.5) == []
    sub.publish(f"{PREFIX}/shared/cmd", json.dumps({"id": "p2", "cmd": "resume"}))
    ack2 = sub.wait_for("cmd/result", lambda m: m.json().get("id") == "p2", timeout=15)
    assert ack2 is not None and ack2.json()["state"] == "running"
    assert sub.wait_for("landmarks", timeout=15, since=ack2.t), d.log()


def test_once_processes_every_frame_of_the_file_then_exits_0(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "once", args=["--once"], pipeline={"max_fps": 0},
                        source={"type": "file", "path": str(DATA / "clip.avi"), "realtime": False}) as (_, sub, d):
        assert d.wait(120) == 0, d.log()
        assert sub.wait_for("available", lambda m: m.text == "stopped", timeout=10)
        seqs = [m.json()["frame"]["seq"] for m in sub.of("landmarks")]
        assert seqs == list(range(1, 101)), seqs  # the clip has 100 frames; lossless: none dropped
        assert "end of stream" in d.log()


def test_only_with_person_and_max_rate(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "filt", mqtt={"only_with_person": True, "max_rate": 2},
                        pipeline={"max_fps": 10}) as (_, sub, d):
        st = sub.wait_for("stats", lambda m: m.json()["mqtt"]["rate_skipped"] > 0
                          and m.json()["frames"]["processed_total"] > 20, timeout=60)
        assert st is not None, d.log()
        msgs = [m.json() for m in sub.of("landmarks")]
        assert msgs and all(m["pose"] is not None for m in msgs)
        assert len(msgs) < st.json()["frames"]["processed_total"]


# ---- the command protocol and the MQTT session's bounded queue, in-process ------------------


def test_parse_command_accepts_the_whitelist():
    c = parse_command(b'{"id": "7", "cmd": "set", "pose_model": "lite", "max_fps": 5}')
    assert c.cmd == "set" and c.id == "7" and c.settings == {"pose_model": "lite", "max_fps": 5.0}
    assert parse_command(b'{"cmd": "pause"}').settings == {}
    assert parse_command(b'{"cmd": "resume"}').cmd == "resume"


@pytest.mark.parametrize("payload, needle", [
    (b"\xff\xfe", "UTF-8"),
    (b"[1, 2]", "JSON object"),
    (b'{"id": 5, "cmd": "pause"}', "'id'"),
    (b'{"cmd": "set"}', "at least one"),
    (b'{"cmd": "pause", "pose_model": "lite"}', "unknown key"),
    (b'{"cmd": "set", "max_fps": true}', "max_fps"),
    (b'{"cmd": "set", "max_fps": 1e9}', "max_fps"),
    (b'{"cmd": "set", "task": 3}', "'task'"),
    (b'{"id": "x"}', "missing 'cmd'"),
])
def test_parse_command_rejects_with_the_reason(payload, needle):
    with pytest.raises(CommandError) as exc:
        parse_command(payload)
    assert needle in str(exc.value)
    assert exc.value.result()["ok"] is False


def test_parse_command_size_limit():
    body = b'{"cmd": "pause", "id": "' + b"a" * (CMD_MAX_BYTES) + b'"}'
    with pytest.raises(CommandError, match="too large"):
        parse_command(body)


def test_qos1_queue_is_bounded_and_drops_oldest(broker):
    from edge_holistic.config import load_config
    from edge_holistic.publish.mqtt import MqttSession

    cfg = load_config(text=f"device_id: q1\nmqtt: {{host: 127.0.0.1, port: {broker.port}, queue_size: 3, "
                           "reconnect_min_delay: 0.5, reconnect_max_delay: 1}", models=False)
    session = MqttSession(cfg, status_provider=lambda: {"test": True}, on_command=lambda payload: None)
    for i in range(10):  # not started yet: nothing can leave, the queue keeps the newest 3
        session.send(f"{PREFIX}/q1/test", str(i).encode(), qos=1)
    assert session.counters.queue_dropped == 7 and session.queue_len == 3
    sub = Subscriber(broker.port, f"{PREFIX}/q1/#")
    try:
        session.start()
        assert wait_until(lambda: len(sub.of("test")) >= 3, 15)
        assert [m.text for m in sub.of("test")] == ["7", "8", "9"]
        assert sub.wait_for("available", lambda m: m.text == "online", timeout=10)
        session.stop(3.0)
        assert sub.wait_for("available", lambda m: m.text == "stopped", timeout=10)
        # QoS 0 while not connected: dropped and counted, never queued
        assert session.send(f"{PREFIX}/q1/test", b"late", qos=0) is False
        assert session.counters.offline_dropped == 1
    finally:
        sub.close()


def test_stdout_sink_without_mqtt(tmp_path):
    cfg = daemon_config(tmp_path, free_port(), "jsonl",
                        source={"type": "file", "path": str(DATA / "clip.avi"), "realtime": False},
                        pipeline={"max_fps": 0}, mqtt={"enabled": False})
    d = DaemonProcess(cfg, "--once", "--stdout", separate_stdout=True)
    try:
        assert d.wait(120) == 0, d.log()
        lines = d.stdout_path.read_text().splitlines()
        assert len(lines) == 100, d.log()
        schema = load_schema()
        for line in lines[::10]:
            jsonschema.validate(json.loads(line), schema)
        assert "MQTT" not in d.log()
    finally:
        d.close()


def test_password_auth_from_env_never_logged(tmp_path):
    secret = "pa55-word-xyz"
    b = Broker(tmp_path / "auth", users={"cam": secret, "watcher": "w"}).start()
    try:
        cfg = daemon_config(tmp_path, b.port, "auth", mqtt={"username": "cam", "protocol": "5"})
        sub = Subscriber(b.port, f"{PREFIX}/auth/#", auth=("watcher", "w"))
        d = DaemonProcess(cfg, env={"EDGE_HOLISTIC_MQTT_PASSWORD": secret})
        try:
            assert sub.wait_for("available", lambda m: m.text == "online", timeout=60), d.log()
            st = sub.wait_for("status", timeout=10)
            assert st is not None and secret not in st.text
        finally:
            sub.close()
            d.close()
        assert secret not in d.log()
        # a wrong password is refused by the broker: logged with the reason, processing goes on
        cfg2 = daemon_config(tmp_path, b.port, "auth2", mqtt={"username": "cam"})
        d2 = DaemonProcess(cfg2, env={"EDGE_HOLISTIC_MQTT_PASSWORD": "wrong-one"})
        try:
            assert wait_until(lambda: "refused" in d2.log(), 60), d2.log()
            assert d2.proc.poll() is None
        finally:
            d2.close()
        assert "wrong-one" not in d2.log()
    finally:
        b.close()
