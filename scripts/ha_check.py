#!/usr/bin/env python3
"""Does a real Home Assistant see the device? (manual check, not in CI: it needs HA core installed)

Starts a mosquitto broker, a real Home Assistant core from its own venv (HA needs a newer
Python than ours; e.g. ``python3.13 -m venv /opt/ha && /opt/ha/bin/pip install homeassistant``),
onboards it and adds the MQTT integration through its HTTP API, runs ``edge-holistic run``
on the committed clip against the same broker, then asks Home Assistant for the device's
entities and their states, and drives the pose-model select and the pause switch through
Home Assistant's services to see the daemon follow.

  python scripts/ha_check.py --ha-venv /work/ha_core/venv [--keep DIR]

Prints one table (entity, state, unit) and the device's registry facts; exit 0 when every
expected entity was found and the controls worked.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEVICE = "hacheck"
EXPECTED = {"binary_sensor": 1, "sensor": 5, "select": 3, "number": 1, "switch": 1, "image": 1}
CLIENT_ID = "http://127.0.0.1/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"ha_check: timed out waiting for {what}")


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = ""

    def call(self, method: str, path: str, body=None, form: bool = False):
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
        return json.loads(text) if text else None

    def template(self, tpl: str) -> str:
        req = urllib.request.Request(self.base + "/api/template", data=json.dumps({"template": tpl}).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ha-venv", required=True, help="venv with the homeassistant package")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir, removed)")
    args = ap.parse_args()
    hass = Path(args.ha_venv) / "bin" / "hass"
    if not hass.exists():
        raise SystemExit(f"ha_check: {hass} not found")
    work = Path(args.keep or tempfile.mkdtemp(prefix="ha_check-"))
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        # 1. the broker
        mport = free_port()
        (work / "mosquitto.conf").write_text(f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        procs.append(subprocess.Popen([mosq, "-c", str(work / "mosquitto.conf")],
                                      stdout=open(work / "mosquitto.log", "wb"), stderr=subprocess.STDOUT))
        # 2. Home Assistant core with a minimal configuration (no default_config: fewer dependencies)
        hport = free_port()
        conf = work / "ha"
        conf.mkdir(exist_ok=True)
        (conf / "configuration.yaml").write_text(
            "homeassistant:\n  name: ha_check\n  time_zone: UTC\n  unit_system: metric\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {hport}\n"
            "onboarding:\nconfig:\napi:\nlogger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n")
        t0 = time.monotonic()
        procs.append(subprocess.Popen([str(hass), "-c", str(conf)], stdout=open(work / "hass.log", "wb"),
                                      stderr=subprocess.STDOUT))
        api = Api(hport)
        wait(lambda: api.call("GET", "/api/onboarding") is not None, 600, "Home Assistant's HTTP API")
        print(f"Home Assistant up after {time.monotonic() - t0:.0f} s", flush=True)
        # 3. onboarding: owner user -> auth code -> token
        user = api.call("POST", "/api/onboarding/users", {"client_id": CLIENT_ID, "name": "check", "username": "check",
                                                           "password": "check-pass-123", "language": "en"})
        tok = api.call("POST", "/auth/token", {"grant_type": "authorization_code", "code": user["auth_code"],
                                               "client_id": CLIENT_ID}, form=True)
        api.token = tok["access_token"]
        for step, body in (("core_config", {}), ("analytics", {})):
            try:
                api.call("POST", f"/api/onboarding/{step}", body)
            except urllib.error.HTTPError as e:
                print(f"  onboarding {step}: HTTP {e.code} (ignored)")
        # 4. the MQTT integration, through the config-flow API
        flow = api.call("POST", "/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        if flow.get("type") == "menu":
            flow = api.call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", {"next_step_id": "broker"})
        done = api.call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                        {"broker": "127.0.0.1", "port": mport})
        print(f"MQTT integration: {done.get('type')} ({done.get('title')})", flush=True)
        if done.get("type") != "create_entry":
            print(json.dumps(done, indent=1))
            return 1
        # 5. our daemon
        cfg = work / "daemon.yaml"
        cfg.write_text(
            f"device_id: {DEVICE}\nsource: {{type: file, path: {REPO / 'tests/data/clip.avi'}}}\n"
            "pipeline: {task: pose, pose_model: full, precision: float, threads: 1, max_fps: 5}\n"
            f"mqtt: {{host: 127.0.0.1, port: {mport}}}\nhealth: {{stats_interval: 2}}\n"
            "homeassistant: {snapshot: true}\n")
        procs.append(subprocess.Popen([sys.executable, "-m", "edge_holistic.cli", "run", "--config", str(cfg)],
                                      cwd=REPO, stdout=open(work / "daemon.log", "wb"), stderr=subprocess.STDOUT))

        def our_entities():
            ids = json.loads(api.template("{{ integration_entities('mqtt') | select('search', '%s') | list | tojson }}"
                                          % DEVICE))
            return ids if len(ids) >= sum(EXPECTED.values()) else None

        entities = sorted(wait(our_entities, 120, "the device's entities in Home Assistant"))
        time.sleep(6)  # a stats period or two, so the sensors have values
        dev_id = api.template("{{ device_id('%s') }}" % entities[0]).strip()
        facts = {k: api.template("{{ device_attr('%s', '%s') }}" % (dev_id, k)).strip()
                 for k in ("name", "manufacturer", "model", "sw_version", "configuration_url")}
        print(f"\ndevice: {facts}")
        print("\n| entity | name | state | unit | device_class |\n|---|---|---|---|---|")
        counts = {}
        for eid in entities:
            st = api.call("GET", f"/api/states/{eid}")
            a = st["attributes"]
            counts[eid.split(".")[0]] = counts.get(eid.split(".")[0], 0) + 1
            state = st["state"] if len(st["state"]) < 40 else st["state"][:37] + "..."
            extra = f" options={a['options']}" if "options" in a else ""
            print(f"| `{eid}` | {a.get('friendly_name', '')} | {state}{extra} | {a.get('unit_of_measurement', '')} | "
                  f"{a.get('device_class', '')} |")
        ok = all(counts.get(k, 0) >= n for k, n in EXPECTED.items())
        # 6. controls through Home Assistant's own services; the state must follow the daemon's status
        sel = next(e for e in entities if e.startswith("select.") and "pose" in e)
        sw = next(e for e in entities if e.startswith("switch."))
        api.call("POST", "/api/services/select/select_option", {"entity_id": sel, "option": "lite"})
        t = time.monotonic()
        wait(lambda: api.call("GET", f"/api/states/{sel}")["state"] == "lite", 30, "the select to follow")
        print(f"\nselect.select_option lite -> {sel} = lite after {time.monotonic() - t:.1f} s")
        api.call("POST", "/api/services/switch/turn_on", {"entity_id": sw})
        wait(lambda: api.call("GET", f"/api/states/{sw}")["state"] == "on", 30, "pause on")
        api.call("POST", "/api/services/switch/turn_off", {"entity_id": sw})
        wait(lambda: api.call("GET", f"/api/states/{sw}")["state"] == "off", 30, "pause off")
        print(f"switch.turn_on / turn_off -> {sw} on, then off (daemon paused and resumed)")
        # 7. a clean stop makes every entity unavailable
        procs[-1].send_signal(signal.SIGTERM)
        procs[-1].wait(20)
        wait(lambda: all(api.call("GET", f"/api/states/{e}")["state"] == "unavailable" for e in entities), 30,
             "entities to become unavailable")
        print("daemon stopped -> every entity 'unavailable'")
        print(f"\nverdict: {'OK' if ok else 'MISSING ENTITIES'} ({counts})")
        return 0 if ok else 1
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}")


if __name__ == "__main__":
    sys.exit(main())
