"""The MQTT session: availability, retained status, landmarks, stats and commands.

Design points (see docs/daemon.md):
- ``connect_async`` + ``loop_start``: a broker that is down at boot is retried
  in the background with exponential backoff, never fatal.
- LWT ``offline`` (retained, QoS 1) on ``available``; ``online`` is published on
  every (re)connect after the retained status, and ``cmd`` is re-subscribed
  there too, so a broker restart loses nothing.
- QoS 0 messages while disconnected are dropped (counted); QoS >= 1 messages go
  through a bounded drop-oldest queue drained by a sender thread, so a long
  outage can never grow memory without bound.
- A clean stop publishes ``stopped`` (a clean disconnect suppresses the LWT) and
  waits a bounded time for it to leave.
"""
from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Optional, Tuple

from ..config import Config
from .sink import Sink, encode

log = logging.getLogger("edge_holistic.mqtt")


@dataclass
class MqttCounters:
    connects: int = 0
    reconnects: int = 0  # connects after the first
    disconnects: int = 0
    published: int = 0  # landmarks handed to the client while connected
    offline_dropped: int = 0  # QoS 0 messages dropped because the link was down
    queue_dropped: int = 0  # QoS>=1 messages dropped (oldest first) because the queue was full
    rate_skipped: int = 0  # landmarks skipped by max_rate / only_with_person
    commands: int = 0


class MqttSession(Sink):
    """One paho client per daemon. Thread-safe ``publish*`` methods."""

    def __init__(self, cfg: Config, status_provider: Callable[[], Dict[str, Any]],
                 on_command: Callable[[bytes], None]) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.cfg = cfg
        m = cfg.mqtt
        self.base = cfg.topic_base
        self.topics = {name: f"{self.base}/{name}" for name in
                       ("landmarks", "available", "status", "stats", "cmd", "cmd/result")}
        self._status_provider = status_provider
        self._on_command = on_command
        self.counters = MqttCounters()
        self.connected = False
        self.state = "connecting"
        self.last_error = ""
        self._lock = threading.Lock()
        self._queue: Deque[Tuple[str, bytes, int, bool]] = deque()
        self._queue_size = m.queue_size
        self._queue_cond = threading.Condition(self._lock)
        self._stopping = False
        self._last_landmarks_t = 0.0
        self._retry_delay = m.reconnect_min_delay
        self._next_retry_log = 0.0

        protocol = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=cfg.client_id, protocol=protocol)
        if m.username:
            self.client.username_pw_set(m.username, cfg.mqtt_password)
        if m.tls.enabled:
            self.client.tls_set(ca_certs=m.tls.ca_certs or None, certfile=m.tls.certfile or None,
                                keyfile=m.tls.keyfile or None, cert_reqs=ssl.CERT_REQUIRED)
            self.client.tls_insecure_set(m.tls.insecure)
        self.client.will_set(self.topics["available"], "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=m.reconnect_min_delay,  # type: ignore[arg-type]
                                        max_delay=m.reconnect_max_delay)  # floats work: used as seconds
        # paho's own store for in-flight QoS>=1 messages is bounded too (0 would mean unlimited).
        self.client.max_queued_messages_set(max(1, m.queue_size))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.message_callback_add(self.topics["cmd"], self._on_cmd)
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        m = self.cfg.mqtt
        log.info("MQTT: connecting to %s:%d as %s (topics under %s/)", m.host, m.port, self.cfg.client_id, self.base)
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive)
        before = set(threading.enumerate())
        self.client.loop_start()
        # paho's network thread, found without touching paho's private fields: the one new thread.
        new = [t for t in threading.enumerate() if t not in before]
        self._network_thread = new[0] if len(new) == 1 else None
        self._sender.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``stopped``, flush what can be flushed within ``timeout``, disconnect."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._queue_cond.notify_all()
        if self.connected:
            try:
                info = self.client.publish(self.topics["available"], "stopped", qos=1, retain=True)
                while not info.is_published() and self.connected and time.monotonic() < deadline:
                    time.sleep(0.02)
            except (RuntimeError, ValueError) as e:
                log.warning("MQTT: could not publish 'stopped': %s", e)
        self._sender.join(max(0.0, deadline - time.monotonic()))
        try:
            self.client.disconnect()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log.debug("MQTT disconnect: %s", e)
        self.client.loop_stop()
        self.state = "stopped"

    # -- paho callbacks (paho's thread: keep short) -------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.state = f"refused: {reason_code}"
            self.last_error = str(reason_code)
            log.warning("MQTT: broker refused the connection: %s", reason_code)
            return
        self.counters.connects += 1
        if self.counters.connects > 1:
            self.counters.reconnects += 1
        self.connected = True
        self.state = "connected"
        self._retry_delay = self.cfg.mqtt.reconnect_min_delay
        client.subscribe(self.topics["cmd"], qos=1)
        self._publish_now(self.topics["status"], self._status_payload(), qos=1, retain=True)
        client.publish(self.topics["available"], "online", qos=1, retain=True)
        log.info("MQTT: connected to %s:%d%s", self.cfg.mqtt.host, self.cfg.mqtt.port,
                 f" (reconnect #{self.counters.reconnects})" if self.counters.reconnects else "")
        with self._lock:
            self._queue_cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if self._stopping:
            return
        self.state = "disconnected"
        if was:
            self.counters.disconnects += 1
            self.last_error = str(reason_code)
            log.warning("MQTT: lost the broker (%s); retrying in the background, processing continues",
                        reason_code)

    def _on_connect_fail(self, client, userdata) -> None:
        # One line per backoff step: paho doubles the delay up to reconnect_max_delay.
        self.state = "unreachable"
        m = self.cfg.mqtt
        log.warning("MQTT: broker %s:%d unreachable; next try in %.1f s (frames are still processed)",
                    m.host, m.port, self._retry_delay)
        self._retry_delay = min(self._retry_delay * 2, m.reconnect_max_delay)

    def _on_cmd(self, client, userdata, message) -> None:
        self.counters.commands += 1
        self._on_command(bytes(message.payload))

    # -- publishing -----------------------------------------------------------------------
    def _status_payload(self) -> bytes:
        try:
            return json.dumps(self._status_provider(), separators=(",", ":")).encode()
        except Exception as e:  # noqa: BLE001 - status must never break the connect callback
            log.error("building status failed: %s", e)
            return b'{"error":"status unavailable"}'

    def _publish_now(self, topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, RuntimeError) as e:
            log.warning("MQTT publish to %s failed: %s", topic, e)
            return False
        return info.rc == self._mqtt.MQTT_ERR_SUCCESS

    def _enqueue(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self._lock:
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.counters.queue_dropped += 1
            self._queue.append((topic, payload, qos, retain))
            self._queue_cond.notify()

    def _send_loop(self) -> None:
        """Drains the QoS>=1 queue while connected; paho tracks acks from there."""
        while True:
            with self._lock:
                while not self._stopping and not (self._queue and self.connected):
                    self._queue_cond.wait(0.5)
                if self._stopping and (not self._queue or not self.connected):
                    return
                topic, payload, qos, retain = self._queue.popleft()
            if not self._publish_now(topic, payload, qos, retain):
                with self._lock:  # put it back; it is still the oldest
                    self._queue.appendleft((topic, payload, qos, retain))
                time.sleep(0.1)

    def send(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """QoS 0: now or dropped (counted); QoS >= 1: through the bounded queue."""
        if qos > 0:
            self._enqueue(topic, payload, qos, retain)
            return True
        if not self.connected:
            self.counters.offline_dropped += 1
            return False
        return self._publish_now(topic, payload, 0, retain)

    def publish(self, msg: Dict[str, Any], payload: Optional[bytes] = None) -> bool:
        """Sink interface: one landmarks@1 message (``payload``: its encoding, if already made)."""
        return self.publish_landmarks(encode(msg, payload), msg.get("pose") is not None)

    def publish_landmarks(self, payload: bytes, person: bool) -> bool:
        """The per-frame message, after the rate cap and the person filter."""
        m = self.cfg.mqtt
        if m.only_with_person and not person:
            self.counters.rate_skipped += 1
            return False
        now = time.monotonic()
        if m.max_rate > 0 and now - self._last_landmarks_t < 1.0 / m.max_rate:
            self.counters.rate_skipped += 1
            return False
        self._last_landmarks_t = now
        ok = self.send(self.topics["landmarks"], payload, qos=m.qos, retain=False)
        if ok:
            self.counters.published += 1
        return ok

    def publish_status(self) -> None:
        """Retained status (also sent on every connect)."""
        if self.connected:
            self._publish_now(self.topics["status"], self._status_payload(), qos=1, retain=True)

    def publish_stats(self, stats: Dict[str, Any]) -> None:
        self.send(self.topics["stats"], json.dumps(stats, separators=(",", ":")).encode(), qos=0)

    def publish_cmd_result(self, result: Dict[str, Any]) -> None:
        self.send(self.topics["cmd/result"], json.dumps(result, separators=(",", ":")).encode(), qos=1)

    def threads(self) -> Dict[str, Optional[threading.Thread]]:
        """This session's threads, for the daemon's thread supervisor."""
        return {"mqtt-network": getattr(self, "_network_thread", None), "mqtt-sender": self._sender}

    @property
    def queue_len(self) -> int:
        with self._lock:
            return len(self._queue)
