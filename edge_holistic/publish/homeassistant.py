"""Home Assistant MQTT discovery: the device announces itself, HA controls go through ``cmd``'s path.

What Home Assistant gets (docs/homeassistant.md lists every entity and topic):

- one retained config per entity on ``{prefix}/{component}/{node_id}/{object_id}/config``,
  the per-entity discovery form every Home Assistant release with MQTT discovery reads;
- state from topics the daemon already publishes: the retained ``status`` document
  (effective model, task, precision, max_fps, paused) and the ``stats`` document
  (fps, latency, temperature, RSS), read with ``value_template`` -- so a select shows
  what really runs, never what was merely asked for;
- one small retained ``person`` topic (``ON``/``OFF``, sent on change): Home Assistant
  must not parse a 17 KB landmarks message 15 times a second to learn one bit;
- optionally (``homeassistant.snapshot``) an annotated JPEG, at most one a second.

Availability is our ``available`` topic: ``online`` available; ``offline`` (LWT) and
``stopped`` (clean stop) both unavailable -- a value template folds the two, because a
plain ``payload_not_available`` would leave the entity "available" on ``stopped``.

Commands Home Assistant sends (``{base}/ha/{key}/set``) become ordinary ``cmd``
documents handed to ``DaemonView.command`` on a worker thread (paho's thread never
waits for a model load); the bounded queue drops and counts a flood.

The config builders are pure functions so tests compare exact JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import queue
import random
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

log = logging.getLogger("edge_holistic.homeassistant")

BOARD_MODEL_PATH = Path("/proc/device-tree/model")
BIRTH_DELAY_S = (0.5, 3.0)  # random wait before re-announcing on HA's birth message (spreads a fleet)
SNAPSHOT_MIN_INTERVAL_S = 1.0
SNAPSHOT_MAX_WIDTH = 640  # a dashboard tile; keeps the JPEG around 30-60 KB
COMMAND_QUEUE = 8
MANUFACTURER = "edge-holistic"

# object_id -> component, in announcement order. These ids are part of the unique_ids:
# never rename one (Home Assistant would see a new entity and orphan the old one).
ENTITIES: Tuple[Tuple[str, str], ...] = (
    ("person", "binary_sensor"),
    ("fps", "sensor"),
    ("latency_p95", "sensor"),
    ("cpu_temperature", "sensor"),
    ("rss", "sensor"),
    ("dropped_fps", "sensor"),
    ("pose_model", "select"),
    ("task", "select"),
    ("precision", "select"),
    ("max_fps", "number"),
    ("pause", "switch"),
    ("snapshot", "image"),
)
COMMAND_KEYS = ("pose_model", "task", "precision", "max_fps", "pause")


# -- pure builders ------------------------------------------------------------------------
def node_id(device_id: str) -> str:
    """HA's node_id/object_id allow only ``[a-zA-Z0-9_-]``; device ids may also contain '.'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def unique_id(device_id: str, object_id: str) -> str:
    return f"edge_holistic_{node_id(device_id)}_{object_id}"


def read_board_model(path: Path = BOARD_MODEL_PATH) -> Optional[str]:
    """'Raspberry Pi 5 Model B Rev 1.0' / 'NVIDIA Jetson Orin Nano ...' from the device tree, else None."""
    try:
        text = path.read_bytes().decode("utf-8", "replace").strip("\x00 \n")
    except OSError:
        return None
    return text or None


def configuration_url(cfg: Any, hostname: str) -> Optional[str]:
    """The web page's address when the ``http`` section exists, is enabled and not loopback-only.

    Read defensively: the section is optional and may lack keys in older configs.
    """
    http = getattr(cfg, "http", None)
    if http is None or not getattr(http, "enabled", False):
        return None
    port = getattr(http, "port", None)
    if not isinstance(port, int) or isinstance(port, bool):
        return None
    host = str(getattr(http, "host", "") or "")
    if host == "localhost" or host.startswith("127.") or host in ("::1", "[::1]"):
        return None  # bound to loopback: no other machine (Home Assistant's browser) can open it
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = hostname
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def topics(cfg: Any) -> Dict[str, str]:
    """Every topic the entities read or write."""
    base = cfg.topic_base
    out = {name: f"{base}/{name}" for name in ("available", "status", "stats", "person", "snapshot")}
    for key in COMMAND_KEYS:
        out[f"set/{key}"] = f"{base}/ha/{key}/set"
    out["set/+"] = f"{base}/ha/+/set"
    out["birth"] = f"{cfg.homeassistant.discovery_prefix}/status"
    return out


def config_topic(cfg: Any, component: str, object_id: str) -> str:
    return f"{cfg.homeassistant.discovery_prefix}/{component}/{node_id(cfg.device_id)}/{object_id}/config"


def all_config_topics(cfg: Any) -> List[str]:
    """Every config topic this device may have announced (what ``ha-remove`` clears)."""
    return [config_topic(cfg, component, oid) for oid, component in ENTITIES]


def device_info(cfg: Any, version: str, board: Optional[str], config_url: Optional[str]) -> Dict[str, Any]:
    dev: Dict[str, Any] = {
        "identifiers": [f"edge_holistic_{node_id(cfg.device_id)}"],
        "name": cfg.device_id,
        "manufacturer": MANUFACTURER,
        "model": board or "edge-holistic",
        "sw_version": version,
    }
    if config_url:
        dev["configuration_url"] = config_url
    return dev


def _options(values: Any, current: Any) -> List[str]:
    """Select options: the installed variants, plus the running one (HA rejects a state not listed)."""
    opts = [str(v) for v in (values or [])]
    if current is not None and str(current) not in opts:
        opts.append(str(current))
    return opts


def discovery_configs(cfg: Any, *, version: str, variants: Dict[str, List[str]], status: Dict[str, Any],
                      board: Optional[str], config_url: Optional[str]) -> List[Tuple[str, Optional[Dict[str, Any]]]]:
    """``[(config topic, config dict or None)]`` for every entity; None = remove (disabled entity).

    ``variants`` is ``DaemonView.installed_variants()``; ``status`` the current status document
    (its values join the options so the running state is always selectable).
    """
    t = topics(cfg)
    did = cfg.device_id
    device = device_info(cfg, version, board, config_url)
    availability = {
        "availability": [{
            "topic": t["available"],
            # 'offline' (LWT) and 'stopped' (clean stop) both mean unavailable.
            "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }],
    }

    def entity(object_id: str, name: str, **fields: Any) -> Dict[str, Any]:
        return {"name": name, "unique_id": unique_id(did, object_id), **fields, **availability, "device": device,
                "origin": {"name": "edge-holistic", "sw_version": version}}

    def diagnostic(object_id: str, name: str, template: str, unit: str, **extra: Any) -> Dict[str, Any]:
        return entity(object_id, name, state_topic=t["stats"], value_template=template,
                      unit_of_measurement=unit, state_class="measurement", entity_category="diagnostic", **extra)

    def select(key: str, name: str, options: List[str], icon: str) -> Dict[str, Any]:
        return entity(key, name, state_topic=t["status"], value_template="{{ value_json.%s }}" % key,
                      command_topic=t[f"set/{key}"], options=options, entity_category="config", icon=icon)

    configs: Dict[str, Optional[Dict[str, Any]]] = {
        "person": entity("person", "Person", state_topic=t["person"], payload_on="ON", payload_off="OFF",
                         device_class="occupancy"),
        "fps": diagnostic("fps", "Processed fps", "{{ value_json.fps.processed }}", "fps",
                          icon="mdi:speedometer"),
        "latency_p95": diagnostic(
            "latency_p95", "Latency p95",
            "{{ value_json.latency_ms.total.p95 if value_json.latency_ms.total is defined else none }}", "ms",
            device_class="duration"),
        "cpu_temperature": diagnostic("cpu_temperature", "CPU temperature", "{{ value_json.temperature_c }}",
                                      "°C", device_class="temperature"),
        "rss": diagnostic("rss", "Memory (RSS)", "{{ value_json.rss_mb | round(1) }}", "MiB",
                          device_class="data_size"),
        "dropped_fps": diagnostic("dropped_fps", "Dropped fps",  # camera frames never processed, both stages
                                  "{{ (value_json.fps.dropped + (value_json.fps.engine_dropped | default(0))) "
                                  "| round(2) }}", "fps",
                                  icon="mdi:speedometer-slow"),
        "pose_model": select("pose_model", "Pose model", _options(variants.get("pose_model"),
                                                                   status.get("pose_model")), "mdi:human"),
        "task": select("task", "Task", _options(variants.get("task") or ["pose", "holistic"], status.get("task")),
                       "mdi:format-list-checks"),
        "precision": select("precision", "Precision", _options(variants.get("precision"),
                                                                status.get("precision")), "mdi:chip"),
        "max_fps": entity("max_fps", "Max fps", state_topic=t["status"], value_template="{{ value_json.max_fps }}",
                          command_topic=t["set/max_fps"], min=0, max=240, step=1, mode="box",
                          unit_of_measurement="fps", entity_category="config", icon="mdi:speedometer"),
        "pause": entity("pause", "Pause", state_topic=t["status"],
                        value_template="{{ 'ON' if value_json.state == 'paused' else 'OFF' }}",
                        command_topic=t["set/pause"], payload_on="ON", payload_off="OFF",
                        state_on="ON", state_off="OFF", icon="mdi:pause"),
        "snapshot": entity("snapshot", "Snapshot", image_topic=t["snapshot"], content_type="image/jpeg")
        if cfg.homeassistant.snapshot else None,
    }
    return [(config_topic(cfg, component, oid), configs[oid]) for oid, component in ENTITIES]


def command_for(key: str, payload: bytes) -> Dict[str, Any]:
    """Home Assistant's raw command payload -> a ``cmd`` document; ValueError names what is wrong."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{key}: payload is not UTF-8 text") from None
    if key == "pause":
        if text not in ("ON", "OFF"):
            raise ValueError(f"pause: expected ON or OFF, got {text[:32]!r}")
        return {"cmd": "pause" if text == "ON" else "resume", "id": "ha-pause"}
    if key == "max_fps":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"max_fps: not a number: {text[:32]!r}") from None
        return {"cmd": "set", "max_fps": value, "id": "ha-max_fps"}
    if key in ("pose_model", "task", "precision"):
        if not text or len(text) > 32:
            raise ValueError(f"{key}: expected a short name, got {text[:32]!r}")
        return {"cmd": "set", key: text, "id": f"ha-{key}"}
    raise ValueError(f"unknown Home Assistant control {key[:32]!r}")


def person_present(message: Dict[str, Any]) -> bool:
    """A landmarks@1 message found a person when its pose is not null."""
    return message.get("pose") is not None


# -- the running part ------------------------------------------------------------------------
class HomeAssistant:
    """Announces the device on every connect and on HA's birth message; relays HA's commands.

    ``session``: the MQTT session (``send``, ``subscribe``, ``add_connect_listener``).
    ``view``: the DaemonView (``status``, ``installed_variants``, ``command``, ``add_frame_tap``).
    """

    def __init__(self, cfg: Any, session: Any, view: Any, *, board: Optional[str] = None,
                 hostname: Optional[str] = None, rng: Optional[random.Random] = None) -> None:
        from .. import __version__

        self.cfg = cfg
        self.session = session
        self.view = view
        self.version = __version__
        self.board = board if board is not None else read_board_model()
        self.hostname = hostname or socket.gethostname()
        self.topics = topics(cfg)
        self.rng = rng or random.Random()
        self.announcements = 0
        self.commands_dropped = 0
        self.command_errors = 0
        self.snapshots = 0
        self._person: Optional[bool] = None
        self._last_snapshot = 0.0
        self._commands: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue(maxsize=COMMAND_QUEUE)
        self._snap_lock = threading.Lock()
        self._snap_pending: Optional[tuple] = None
        self._snap_event = threading.Event()
        self._stop = threading.Event()
        self._timer: Optional[threading.Timer] = None
        self._undo: List[Callable[[], None]] = []
        self._announce_due = threading.Event()
        self._snapshots_on = bool(cfg.homeassistant.snapshot)
        self._threads = [threading.Thread(target=self._command_loop, name="ha-commands", daemon=True),
                         threading.Thread(target=self._announce_loop, name="ha-announce", daemon=True)]
        if self._snapshots_on:
            self._threads.append(threading.Thread(target=self._snapshot_loop, name="ha-snapshot", daemon=True))

    def start(self) -> "HomeAssistant":
        for th in self._threads:
            th.start()
        self.session.subscribe(self.topics["set/+"], self._on_command)
        self.session.subscribe(self.topics["birth"], self._on_birth)
        self._undo.append(self.view.add_frame_tap(self._on_frame))
        self._undo.append(self.session.add_connect_listener(self.announce))
        add_stop = getattr(self.session, "add_stop_listener", None)
        if add_stop is not None:  # lives as long as its session (a reload builds a new one)
            add_stop(self.stop)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        for undo in self._undo:
            try:
                undo()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        try:
            self._commands.put_nowait(None)
        except queue.Full:
            pass
        self._snap_event.set()
        self._announce_due.set()
        for th in self._threads:
            if th.is_alive():
                th.join(2.0)

    # -- announcing -----------------------------------------------------------------------
    def configs(self) -> List[Tuple[str, Optional[Dict[str, Any]]]]:
        try:
            variants = self.view.installed_variants()
        except Exception as e:  # noqa: BLE001 - announce with what is known
            log.warning("installed variants unavailable (%s); announcing the running ones only", e)
            variants = {}
        try:
            status = self.view.status()
        except Exception:  # noqa: BLE001
            status = {}
        return discovery_configs(self.cfg, version=self.version, variants=variants, status=status,
                                 board=self.board, config_url=configuration_url(self.cfg, self.hostname))

    def announce(self) -> None:
        """Ask for an announcement (on-connect listener, birth timer): returns at once.

        The configs go out from the ``ha-announce`` thread, never from paho's network thread.
        """
        self._announce_due.set()

    def _announce_loop(self) -> None:
        while True:
            self._announce_due.wait()
            if self._stop.is_set():
                return
            self._announce_due.clear()
            try:
                self._send_configs()
            except Exception as e:  # noqa: BLE001 - the next connect tries again
                log.error("Home Assistant announcement failed: %s", e)

    def _paced_send(self, topic: str, payload: bytes) -> None:
        """QoS 1 through the session's bounded queue, but never filling it: a burst of 12 retained
        configs into a small ``mqtt.queue_size`` would otherwise push out the first ones."""
        cap = max(1, self.cfg.mqtt.queue_size // 2)
        deadline = time.monotonic() + 5.0
        while getattr(self.session, "queue_len", 0) >= cap and time.monotonic() < deadline \
                and not self._stop.is_set():
            time.sleep(0.02)
        self.session.send(topic, payload, qos=1, retain=True)

    def _send_configs(self) -> None:
        """Retained configs (empty for disabled entities), then the person state."""
        for topic, config in self.configs():
            payload = b"" if config is None else json.dumps(config, separators=(",", ":")).encode()
            self._paced_send(topic, payload)
        if self._person is not None:
            self._paced_send(self.topics["person"], b"ON" if self._person else b"OFF")
        self.announcements += 1
        log.info("Home Assistant: announced %s under %s/ (#%d)", self.cfg.device_id,
                 self.cfg.homeassistant.discovery_prefix, self.announcements)

    def _on_birth(self, topic: str, payload: bytes) -> None:
        if payload.strip() != b"online" or self._stop.is_set():
            return
        delay = self.rng.uniform(*BIRTH_DELAY_S)
        log.info("Home Assistant came online; announcing again in %.1f s", delay)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(delay, self.announce)
        self._timer.daemon = True
        self._timer.start()

    # -- commands -------------------------------------------------------------------------
    def _on_command(self, topic: str, payload: bytes) -> None:
        key = topic[len(self.cfg.topic_base) + len("/ha/"):-len("/set")]
        try:
            cmd = command_for(key, payload)
        except ValueError as e:
            self.command_errors += 1
            log.warning("Home Assistant command rejected: %s", e)
            return
        try:
            self._commands.put_nowait(cmd)
        except queue.Full:
            self.commands_dropped += 1
            log.warning("Home Assistant command dropped (queue full): %s", cmd)

    def _command_loop(self) -> None:
        while not self._stop.is_set():
            try:
                cmd = self._commands.get(timeout=0.5)
            except queue.Empty:
                continue
            if cmd is None:
                return
            try:
                result = self.view.command(cmd, origin="homeassistant")
            except Exception as e:  # noqa: BLE001 - never let a command end the thread
                self.command_errors += 1
                log.error("Home Assistant command %s failed: %s", cmd, e)
                continue
            if not (result or {}).get("ok", False):
                self.command_errors += 1
                log.warning("Home Assistant command %s rejected: %s", cmd, (result or {}).get("error"))

    # -- frame tap (publisher thread: cheap) ---------------------------------------------------
    def _on_frame(self, rgb: Any, result: Any, message: Dict[str, Any]) -> None:
        person = person_present(message)
        if person != self._person:
            self._person = person
            self.session.send(self.topics["person"], b"ON" if person else b"OFF", qos=1, retain=True)
        if self._snapshots_on:
            now = time.monotonic()
            if now - self._last_snapshot >= SNAPSHOT_MIN_INTERVAL_S:
                self._last_snapshot = now
                with self._snap_lock:  # newest wins; the copy is ~1 ms at 640x480
                    self._snap_pending = (rgb.copy(), result)
                self._snap_event.set()

    def _snapshot_loop(self) -> None:
        import cv2

        from ..draw import draw_result

        while not self._stop.is_set():
            self._snap_event.wait()
            self._snap_event.clear()
            with self._snap_lock:
                item, self._snap_pending = self._snap_pending, None
            if item is None:
                continue
            rgb, result = item
            try:
                img = draw_result(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), result)
                h, w = img.shape[:2]
                if w > SNAPSHOT_MAX_WIDTH:
                    img = cv2.resize(img, (SNAPSHOT_MAX_WIDTH, round(h * SNAPSHOT_MAX_WIDTH / w)),
                                     interpolation=cv2.INTER_AREA)
                ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
                if ok:
                    self.session.send(self.topics["snapshot"], jpg.tobytes(), qos=0)
                    self.snapshots += 1
            except Exception as e:  # noqa: BLE001 - a snapshot must never stop anything
                log.warning("snapshot failed: %s", e)


def attach(cfg: Any, session: Any, view: Any) -> Optional[HomeAssistant]:
    """Start discovery for ``session`` when ``homeassistant.enabled`` (the daemon's one call)."""
    if session is None or not cfg.homeassistant.enabled:
        return None
    return HomeAssistant(cfg, session, view).start()


# -- ``edge-holistic ha-remove`` -----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..config.flags import add_connection_arguments

    parser.add_argument("--config", metavar="FILE", help="config file (default: as for 'run')")
    add_connection_arguments(parser)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker (default 10)")


def remove(cfg: Any, timeout: float = 10.0) -> int:
    """Publish empty retained payloads on every config topic (and our person state): HA drops the device."""
    import ssl

    import paho.mqtt.client as mqtt

    m = cfg.mqtt
    protocol = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
    # Its own client id: reusing the daemon's would disconnect the running daemon.
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"{cfg.client_id}-ha-remove"[:64], protocol=protocol)
    if m.username:
        client.username_pw_set(m.username, cfg.mqtt_password)
    if m.tls.enabled:
        client.tls_set(ca_certs=m.tls.ca_certs or None, certfile=m.tls.certfile or None,
                       keyfile=m.tls.keyfile or None, cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(m.tls.insecure)
    connected = threading.Event()
    refused: List[str] = []

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(m.host, m.port, keepalive=m.keepalive)
    except OSError as e:
        print(f"edge-holistic ha-remove: cannot reach the broker {m.host}:{m.port}: {e}", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        if not connected.wait(timeout) or refused:
            why = refused[0] if refused else "no answer"
            print(f"edge-holistic ha-remove: broker {m.host}:{m.port} refused/failed: {why}", file=sys.stderr)
            return 1
        targets = all_config_topics(cfg) + [topics(cfg)["person"]]
        infos = [client.publish(topic, b"", qos=1, retain=True) for topic in targets]
        deadline = time.monotonic() + timeout
        while not all(i.is_published() for i in infos) and time.monotonic() < deadline:
            time.sleep(0.02)
        done = sum(i.is_published() for i in infos)
        if done < len(infos):
            print(f"edge-holistic ha-remove: only {done}/{len(infos)} removals acknowledged", file=sys.stderr)
            return 1
        print(f"removed {len(targets) - 1} Home Assistant entities of {cfg.device_id} "
              f"(prefix {cfg.homeassistant.discovery_prefix}/) from {m.host}:{m.port}")
        return 0
    finally:
        client.disconnect()
        client.loop_stop()


def main(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_config
    from ..config.flags import connection_overrides, default_config_path

    path = args.config or default_config_path()
    try:
        cfg = load_config(path, overrides=connection_overrides(args), models=False)  # no model is loaded here
    except ConfigError as e:
        print(f"edge-holistic ha-remove: invalid config {path}:", file=sys.stderr)
        for issue in e.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    return remove(cfg, args.timeout)
