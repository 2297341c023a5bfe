"""Real-process helpers for daemon tests: a mosquitto broker, a paho subscriber, the daemon.

Nothing here is simulated: the broker is the mosquitto binary on a free port,
the daemon is ``python -m edge_holistic.cli run`` in its own process, and the
subscriber is a real paho client.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

SCRIPTS = str(REPO / "scripts")
if SCRIPTS not in sys.path:  # also imported outside pytest (scripts/bench_shadow.py)
    sys.path.insert(0, SCRIPTS)
from soak import Mosquitto, free_port  # noqa: E402  (stdlib-only at import: one broker runner for both)

# Keys Home Assistant's MQTT discovery requires in every config, and per component beyond those:
# what the pure builders (test_homeassistant.py) and the live daemon's retained configs
# (test_homeassistant_live.py) are both checked against.
HA_COMMON_KEYS = {"name", "unique_id", "availability", "device"}
HA_REQUIRED_KEYS = {
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "select": {"command_topic", "options"},
    "number": {"command_topic"},
    "switch": {"command_topic"},
    "image": {"image_topic"},
}


def mosquitto_binary() -> str:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not exe:
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it: apt-get install mosquitto)")
    return exe


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.05):
    """Poll ``pred`` until truthy; return its value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Broker(Mosquitto):
    """scripts/soak.py's mosquitto runner, on a free port unless one is given, skipping the test where
    mosquitto is not installed; ``users`` turns on real password checking."""

    def __init__(self, workdir: Path, port: Optional[int] = None, users: Optional[Dict[str, str]] = None) -> None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        access = password_access(workdir, users) if users else "allow_anonymous true\n"
        super().__init__(workdir, port or free_port(), exe=mosquitto_binary(), access=access)


def password_access(workdir: Path, users: Dict[str, str]) -> str:
    """mosquitto's own password file for ``users`` and the config lines that require it."""
    pw = workdir / "passwd"
    pw.write_text("")
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user, password in users.items():
        subprocess.run([tool, "-b", str(pw), user, password], check=True, capture_output=True)
    pw.chmod(0o600)
    conf = f"allow_anonymous false\npassword_file {pw}\n"
    if os.geteuid() == 0:  # started as root mosquitto drops to its own user, which cannot read tmp_path
        conf += "user root\n"
    return conf


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    t: float

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> dict:
        return json.loads(self.payload)


class Subscriber:
    """A paho client recording everything under ``topic`` (reconnects by itself)."""

    def __init__(self, port: int, topic: str, client_id: Optional[str] = None,
                 auth: Optional[tuple] = None) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.messages: List[Received] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-sub-{os.getpid()}-{time.monotonic_ns()}")
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("test subscriber could not connect")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

    def of(self, suffix: str, since: float = 0.0) -> List[Received]:
        with self.lock:
            return [m for m in self.messages if m.topic.endswith("/" + suffix) and m.t >= since]

    def wait_for(self, suffix: str, pred: Callable[[Received], bool] = lambda m: True, timeout: float = 20.0,
                 since: float = 0.0) -> Optional[Received]:
        def find():
            for m in self.of(suffix, since):
                if pred(m):
                    return m
            return None

        return wait_until(find, timeout)

    def publish(self, topic: str, payload, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def daemon_config(tmp: Path, port: int, device_id: str, source: Optional[dict] = None, **sections) -> Path:
    """A small, fast config: pose lite, 1 thread, capped fps, quick health timings."""
    cfg = {
        "device_id": device_id,
        "log_level": "info",
        "source": source or {"type": "file", "path": str(DATA / "clip.avi"), "realtime": True},
        "pipeline": {"task": "pose", "pose_model": "lite", "precision": "float", "threads": 1, "max_fps": 8},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_delay": 0.5, "reconnect_max_delay": 1,
                 "keepalive": 5},
        "health": {"stats_interval": 1, "stall_timeout": 5, "unhealthy_after": 10},
        "http": {"enabled": False},  # the web page has its own tests (test_web.py), on free ports
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    path = tmp / f"{device_id}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class DaemonProcess:
    """``edge-holistic run`` as a child process; stderr goes to a file (a pipe could fill up)."""

    def __init__(self, config: Path, *extra: str, env: Optional[Dict[str, str]] = None,
                 separate_stdout: bool = False) -> None:
        self.log_path = config.with_suffix(".log")
        self.stdout_path = config.with_suffix(".stdout")
        self._log = open(self.log_path, "wb")
        self._out = open(self.stdout_path, "wb") if separate_stdout else self._log
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("WATCHDOG_USEC", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_holistic.cli", "run", "--config", str(config),
                                      *extra], cwd=REPO, env=full_env, stdout=self._out, stderr=self._log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(10) is None:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        self._out.close()


@contextmanager
def watched_daemon(broker: Broker, tmp: Path, device_id: str, args: Sequence[str] = (),
                   separate_stdout: bool = False, **sections) -> Iterator[Tuple[Path, Subscriber, DaemonProcess]]:
    """The usual real-process test's start and end: a ``daemon_config`` for ``device_id`` on ``broker``, a
    subscriber on all of that device's topics, the daemon (with ``args``); both closed however the test ends."""
    cfg = daemon_config(tmp, broker.port, device_id, **sections)
    sub = Subscriber(broker.port, f"edge_holistic/{device_id}/#")
    d = DaemonProcess(cfg, *args, separate_stdout=separate_stdout)
    try:
        yield cfg, sub, d
    finally:
        sub.close()
        d.close()
