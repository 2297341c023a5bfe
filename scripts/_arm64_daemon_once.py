#!/usr/bin/env python3
"""Inside a target rootfs (scripts/arm64_check.sh) or image: the daemon on a clip, end to end.

  python _arm64_daemon_once.py CLIP OUTDIR [--broker-port N]

Starts the rootfs's own mosquitto on a free local port (or uses a running one with
--broker-port), subscribes with paho, runs ``edge-holistic run --once`` on CLIP with
``precision: auto`` (int8 on ARM), and validates every ``landmarks`` message against the
landmarks@1 JSON Schema. Exit 0 only when every frame of the clip arrived as a valid
message and the daemon said ``stopped``. The last line is a one-line summary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from soak import Mosquitto, free_port  # stdlib only; arm64_check.sh copies soak.py beside this file


def main() -> int:
    import cv2
    import jsonschema
    import paho.mqtt.client as mqtt
    import yaml

    from edge_holistic.message import load_schema

    clip, out = Path(sys.argv[1]), Path(sys.argv[2])
    port = int(sys.argv[sys.argv.index("--broker-port") + 1]) if "--broker-port" in sys.argv else 0
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(clip))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    work = Path(tempfile.mkdtemp(prefix="eh-once-"))
    broker = None
    if not port:  # soak.py's stdlib broker runner, copied beside this script (as root: keep root)
        port = free_port()
        broker = Mosquitto(work / "broker", port, access="allow_anonymous true\n"
                           + ("user root\n" if os.geteuid() == 0 else "")).start(timeout=30)
    got, lock, connected = [], threading.Lock(), threading.Event()

    def on_message(client, userdata, msg):
        with lock:
            got.append((msg.topic, msg.payload))

    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="eh-check-sub")
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: (c.subscribe("edge_holistic/check/#", qos=1), connected.set())
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        assert connected.wait(30), f"no broker on port {port}"
        cfg = {"device_id": "check", "log_level": "info",
               "source": {"type": "file", "path": str(clip), "realtime": False},
               "pipeline": {"task": "pose", "pose_model": "full", "precision": "auto", "threads": 2, "max_fps": 0},
               "mqtt": {"host": "127.0.0.1", "port": port}}
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        exe = Path(sys.executable).parent / "edge-holistic"
        t0 = time.monotonic()
        r = subprocess.run([str(exe), "run", "--config", str(work / "config.yaml"), "--once"],
                           capture_output=True, text=True, timeout=1800)
        took = time.monotonic() - t0
        (out / "daemon.log").write_text(r.stdout + r.stderr)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                if any(t.endswith("/available") and p == b"stopped" for t, p in got):
                    break
            time.sleep(0.2)
    finally:
        sub.loop_stop()
        sub.disconnect()
        if broker:
            broker.close()
    schema = load_schema()
    marks = [json.loads(p) for t, p in got if t.endswith("/landmarks")]
    bad = 0
    for m in marks:
        try:
            jsonschema.validate(m, schema)
        except jsonschema.ValidationError:
            bad += 1
    models = sorted({v for m in marks for v in (m.get("models") or {}).values()})
    stopped = any(t.endswith("/available") and p == b"stopped" for t, p in got)
    (out / "landmarks.jsonl").write_text("".join(json.dumps(m) + "\n" for m in marks))
    ok = r.returncode == 0 and len(marks) == frames and bad == 0 and stopped
    if r.returncode != 0:
        print((r.stdout + r.stderr)[-3000:])
    print(f"{len(marks)}/{frames} frames published, {bad} schema-invalid, exit {r.returncode}, "
          f"{'stopped' if stopped else 'no stopped status'}, {took:.0f} s emulated, models {', '.join(models)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
