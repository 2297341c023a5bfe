"""Fault injection: hostile payloads on ``cmd``, against the real daemon and a real mosquitto.

Run time: ~25 s (one daemon; 1,200+ payloads at ~600/s; a retained-command restart).
"""
from __future__ import annotations

import json
import random
import time

import pytest

from edge_holistic.publish import CommandError, parse_command
from edge_holistic.publish.commands import MAX_DEPTH, _max_depth
from fault_helpers import latest_stats, wait_stats
from mqtt_fixtures import DaemonProcess, Subscriber, daemon_config

PREFIX = "edge_holistic"

PATHS = ["../../etc/passwd", "/etc/shadow", "..", ".", "lite/../full", "..\\..\\x", "~root/.ssh/id_rsa",
         "models/pose_landmark_full.tflite", "lite\x00", "file:///etc/passwd", "lite ", " lite", "LITE/",
         "a" * 33, "lite;rm -rf /", "$(reboot)", "%2e%2e%2f", "pose_landmark_full.tflite", "\u2025/x"]
KEYS = ["task", "pose_model", "hand_model", "precision", "max_fps"]
WRONG = [None, True, False, 0, -1, 1.5, [], {}, ["lite"], {"a": 1}, "", 10 ** 30, -0.0, "x" * 100]


def hostile_payloads(seed: int = 10) -> list:
    """≥ 1000 payloads no valid command is among: every class the issue lists, then random mutations."""
    rnd = random.Random(seed)
    out = [
        b"[" * 100_000, b"{" * 100_000, b'{"a":' * 20_000, b"[" * 1200,  # deep nesting (the 1.2 KB killer)
        b"[" * 4000 + b"]" * 4000, b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b'{"cmd":"set","pose_model":' + b"[" * 3000 + b"]" * 3000 + b"}",
        b"x" * 1_000_000, b'{"cmd":"status","id":"' + b"a" * 1_000_000 + b'"}', bytes(1_000_000),
        b"", b" ", b"\n", b"null", b"true", b"0", b'"pause"', b"[]", b"{}", b"[{}]",
        b"\xff\xfe\xfd", b'{"cmd":"pause","id":"\xc3\x28"}', b'{"cmd":"\xed\xa0\x80"}', b"\x00" * 64,
        b'{"cmd":"set","max_fps":NaN}', b'{"cmd":"set","max_fps":Infinity}', b'{"cmd":"set","max_fps":-Infinity}',
        b'{"cmd":"set","max_fps":1e400}', b'{"cmd":"set","max_fps":-1e400}', b'{"cmd":"set","max_fps":1e308}',
        b'{"cmd":"set","max_fps":' + b"9" * 4000 + b"}", b'{"cmd":"set","max_fps":0.001}',
        b'{"cmd":"pause","cmd":"resume"}', b'{"cmd":"set","task":"pose","task":"holistic"}',
        b'{"cmd":"set"}', b'{"cmd":"reboot"}', b'{"cmd":"set","model_path":"/tmp/x.tflite"}',
        b'{"cmd":"pause","extra":1}', b'{"id":5,"cmd":"pause"}', b'{"id":"\\u0000","cmd":"pause"}',
        b'{"id":"' + b"i" * 65 + b'","cmd":"pause"}', b'{"cmd":"pause"', b'{"cmd":"pause"}}', b"{'cmd':'pause'}",
        b'{"cmd":"pause"} {"cmd":"resume"}', b'{"cmd":"set","pose_model":"\\ud800"}',
    ]
    for key in KEYS:
        for bad in WRONG:
            out.append(json.dumps({"cmd": "set", key: bad}).encode())
    for key in ("pose_model", "hand_model", "task", "precision"):
        for p in PATHS:
            out.append(json.dumps({"cmd": "set", key: p}).encode())
    for bad in WRONG + ["SET", "Pause", "status ", "\u0000"]:
        out.append(json.dumps({"cmd": bad}).encode())
    valid = [{"cmd": "set", "pose_model": "lite"}, {"cmd": "set", "max_fps": 5}, {"cmd": "status"}]
    while len(out) < 1200:
        doc = dict(rnd.choice(valid))
        kind = rnd.randrange(7)
        if kind == 0:
            doc[rnd.choice(["x", "path", "__class__", "model", "Cmd", "max-fps"])] = rnd.choice(WRONG)
        elif kind == 1:
            doc[rnd.choice(KEYS)] = rnd.choice(WRONG[:-3])
            doc["cmd"] = "set"
        elif kind == 2:
            doc["cmd"] = "set"
            doc[rnd.choice(KEYS[1:3])] = rnd.choice(PATHS)
        elif kind == 3:
            doc["id"] = rnd.choice(WRONG[1:])
        text = json.dumps(doc).encode()
        if kind == 4:  # byte-level corruption of a valid command
            b = bytearray(text)
            for _ in range(rnd.randint(1, 4)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            text = bytes(b)
        elif kind == 5:
            text = text[: rnd.randrange(1, len(text))]  # truncated
        elif kind == 6:
            text = rnd.randbytes(rnd.randint(1, 3000))
        if not _valid(text):  # a mutation can leave a valid command: not hostile
            out.append(text)
    return [p for p in out if not _valid(p)]


def _valid(payload: bytes) -> bool:
    """True for a command the daemon would apply; only CommandError may come out of the parser."""
    try:
        parse_command(payload)
        return True
    except CommandError:
        return False


def test_parse_command_raises_only_command_error_on_every_hostile_payload():
    payloads = hostile_payloads()  # generating them already parsed each: nothing but CommandError escaped
    assert len(payloads) >= 1000
    for p in payloads:
        with pytest.raises(CommandError):
            parse_command(p)
    assert max(map(len, payloads)) >= 1_000_000


def test_depth_is_measured_without_recursion():
    assert _max_depth("[" * 100_000, MAX_DEPTH) == MAX_DEPTH + 1
    assert _max_depth('["[[[[[[[[[[[[[", {"a": "}}}}"}]', MAX_DEPTH) == 2
    assert _max_depth('["\\"[[[[[[[[[[[[["]', MAX_DEPTH) == 1


def test_command_fuzz_daemon_lives_and_answers(broker, tmp_path):
    """1,200 hostile payloads at ≥ 500/s (some retained): each answered or dropped-and-counted."""
    dev = "fuzz"
    cfg = daemon_config(tmp_path, broker.port, dev, mqtt={"queue_size": 5000})
    sub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    d = DaemonProcess(cfg)
    try:
        assert sub.wait_for("landmarks", timeout=60), d.log()
        assert wait_stats(sub, lambda s: s.get("mqtt", {}).get("connected"), 20), d.log()
        payloads = hostile_payloads()
        retained = set(range(0, len(payloads), 97))
        t0 = time.monotonic()
        for i, p in enumerate(payloads):
            # QoS 1 so the broker queues rather than discards: the daemon's own guard must do the dropping.
            sub.client.publish(f"{PREFIX}/{dev}/cmd", p, qos=1, retain=i in retained)
            while (i + 1) / max(1e-3, time.monotonic() - t0) > 600:  # ~600 a second
                time.sleep(0.0005)
        rate = len(payloads) / (time.monotonic() - t0)
        t_end = time.monotonic()
        assert rate >= 500, rate
        n = len(payloads)

        def settled(s):
            m = s.get("mqtt", {})
            return m.get("commands", 0) >= n and m.get("queue_len", 1) == 0

        st = wait_stats(sub, settled, timeout=60, since=t_end)
        assert st is not None, (latest_stats(sub), d.log()[-3000:])
        time.sleep(2.5)  # the last results and another stats document
        st = latest_stats(sub)
        m = st["mqtt"]
        assert d.proc.poll() is None, d.log()
        results = [r.json() for r in sub.of("cmd/result", t0)]
        errors = [r for r in results if r.get("ok") is False and "dropped" not in r]
        summaries = [r for r in results if "dropped" in r]
        assert not [r for r in results if r.get("ok") is True], "a hostile payload was applied"
        # Every payload: an error result, or dropped by the rate guard and counted.
        assert m["queue_dropped"] == 0
        assert len(errors) == m["commands_rejected"], (len(errors), m)
        empty = sum(1 for p in payloads if not p)  # an empty message is what clears a retained one: no answer
        assert m["commands"] == n, m
        assert m["commands_rejected"] + m["commands_rate_dropped"] + m["commands_empty"] == n, m
        assert m["commands_empty"] == empty
        assert sum(r["dropped"] for r in summaries) <= m["commands_rate_dropped"]
        assert m["commands_rate_dropped"] < n  # most were answered, not just dropped
        assert any("nested too deep" in r["error"] for r in errors)
        assert any("too large" in r["error"] for r in errors)
        assert any("UTF-8" in r["error"] for r in errors)
        assert any("finite" in r["error"] for r in errors)
        assert any("model name" in r["error"] for r in errors)
        assert any("unknown key" in r["error"] for r in errors)
        assert "Traceback" not in d.log() and "RecursionError" not in d.log()
        # Landmarks kept flowing through the flood, and a valid command afterwards works.
        assert sub.wait_for("landmarks", timeout=10, since=t_end), "landmarks stopped after the flood"
        t_valid = time.monotonic()
        sub.publish(f"{PREFIX}/{dev}/cmd", json.dumps({"id": "after", "cmd": "set", "max_fps": 5}))
        ok = sub.wait_for("cmd/result", lambda r: r.json().get("id") == "after", timeout=20, since=t_valid)
        assert ok is not None and ok.json()["ok"] is True, (ok and ok.text, d.log()[-2000:])
        assert sub.wait_for("landmarks", timeout=10, since=time.monotonic())
        rss = st.get("rss_mb")
        print(f"\nfuzz: {n} payloads at {rate:.0f}/s; {m['commands_rejected']} error results, "
              f"{m['commands_rate_dropped']} rate-dropped ({len(summaries)} summaries); rss {rss} MB")
    finally:
        sub.client.publish(f"{PREFIX}/{dev}/cmd", b"", qos=1, retain=True)
        sub.close()
        d.close()


def test_retained_command_is_ignored_and_cleared(broker, tmp_path):
    """A retained ``pause`` waiting on the broker is never applied, and is removed."""
    dev = "retained"
    topic = f"{PREFIX}/{dev}/cmd"
    pub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    pub.publish(topic, json.dumps({"id": "stale", "cmd": "pause"}).encode())  # not retained: nobody listens
    pub.client.publish(topic, json.dumps({"id": "stale", "cmd": "pause"}), qos=1, retain=True).wait_for_publish(5)
    cfg = daemon_config(tmp_path, broker.port, dev)
    for attempt in range(2):  # the first start clears it; a restart must find nothing
        d = DaemonProcess(cfg)
        try:
            t0 = time.monotonic()
            assert pub.wait_for("landmarks", timeout=60, since=t0), d.log()
            time.sleep(1.5)
            assert pub.wait_for("landmarks", timeout=5, since=time.monotonic()), "paused by a retained command"
            st = pub.wait_for("status", lambda m: m.json().get("state") == "running", timeout=10, since=t0)
            assert st is not None
            assert not [r for r in pub.of("cmd/result", t0) if r.json().get("id") == "stale"]
            if attempt == 0:
                assert "ignoring a retained cmd" in d.log()
        finally:
            d.close()
    # A fresh subscriber sees no retained command any more.
    probe = Subscriber(broker.port, topic)
    time.sleep(1.0)
    assert not [m for m in probe.of("cmd") if m.retain and m.payload], "retained command not cleared"
    probe.close()
    pub.close()
