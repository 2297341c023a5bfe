"""The MQTT session: availability, retained status, landmarks, stats and commands.

Design points (see docs/daemon.md):
- ``connect_async`` + ``loop_start``: a broker that is down at boot is retried
  in the background with exponential backoff, never fatal.
- LWT ``offline`` (retained, QoS 1) on ``available``; ``online`` is published on
  every (re)connect after the retained status, and ``cmd`` is re-subscribed
  there too, so a broker restart loses nothing.
- QoS 0 messages while disconnected are dropped (counted). While connected they
  are bounded too: bytes handed to paho but not yet written to the socket are
  accounted (``MQTTMessageInfo.is_published`` turns true when paho has written a
  QoS 0 packet), and above ``mqtt.max_unsent_kb`` new landmarks are dropped and
  counted. Without this an uplink slower than the message rate (holistic is
  ~17.6 KB a message, ~4 Mbit/s at 30 fps) grew paho's buffer until the memory
  guard restarted the process.
- QoS >= 1 messages go through a bounded drop-oldest queue drained by a sender
  thread, so a long outage can never grow memory without bound. The sender keeps
  at most ``queue_size`` of them in paho's store, which holds ``CONTROL_RESERVE``
  more: ``status``/``online`` after a (re)connect always find room, and they are
  retried (return codes checked) until paho has taken them.
- ``cmd``: a retained command is never applied (it would be replayed at every
  restart: a retained ``pause`` pauses for ever); it is cleared with an empty
  retained message. Oversized payloads are refused here, before anything is
  queued, and a token bucket drops a command flood (counted, one summary result
  per second) before it reaches the frame loop.
- A clean stop publishes ``stopped`` (a clean disconnect suppresses the LWT) and
  waits a bounded time for it to leave.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Optional, Tuple

from ..config import Config
from .commands import CMD_MAX_BYTES, CommandError, parse_command
from .sink import Sink, encode

log = logging.getLogger("edge_holistic.mqtt")

CONTROL_RESERVE = 8  # paho store slots kept free for status/online/stopped
CMD_RATE = 200.0  # commands per second screened from the broker (token bucket) ...
CMD_BURST = 200  # ... with this burst; parsing one costs ~20 µs, far above any dashboard
MAX_UNSENT_MSGS = 2000  # QoS 0 messages waiting in paho, whatever their size


@dataclass
class MqttCounters:
    connects: int = 0
    reconnects: int = 0  # connects after the first
    disconnects: int = 0
    published: int = 0  # landmarks handed to the client while connected
    offline_dropped: int = 0  # QoS 0 messages dropped because the link was down
    queue_dropped: int = 0  # QoS>=1 messages dropped (oldest first) because the queue was full
    backpressure_dropped: int = 0  # QoS 0 messages dropped because mqtt.max_unsent_kb were still unsent
    link_lost: int = 0  # QoS 0 messages paho had taken but lost with the connection
    rate_skipped: int = 0  # landmarks skipped by max_rate / only_with_person
    commands: int = 0  # cmd messages received
    commands_rejected: int = 0  # refused here: too large, invalid (an error result was sent)
    commands_rate_dropped: int = 0  # over CMD_RATE: dropped without parsing
    commands_empty: int = 0  # empty payloads (what clearing a retained message sends): ignored
    retained_cleared: int = 0  # retained cmd messages ignored and cleared
    control_retries: int = 0  # status/online publishes paho refused (store full) and retried


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
        self._inflight: list = []  # MQTTMessageInfo of our QoS>=1 messages in paho's store
        self._control: list = []  # pending control publishes: "status", "online" (in that order)
        self._stopping = False
        self._last_landmarks_t = 0.0
        self._retry_delay = m.reconnect_min_delay
        self._next_retry_log = 0.0
        # QoS 0 accounting (see the module docstring): (info, size) in the order handed to paho.
        self._q0_lock = threading.Lock()
        self._unsent: Deque[Tuple[Any, int]] = deque()
        self._unsent_bytes = 0
        self._max_unsent_bytes = int(getattr(m, "max_unsent_kb", 1024) * 1024)
        # The kernel's send buffer is the other place unsent bytes wait. Left to autotuning it
        # grows to 4 MB (tcp_wmem), i.e. ~40 s of pose messages queued behind a slow uplink
        # before paho even sees backpressure; half the unsent budget, within 16-256 KB, still
        # sustains ~1.3 MB/s at 200 ms RTT (256 KB / 0.2 s), above holistic at 30 fps (~530 KB/s).
        self._sndbuf = max(16 * 1024, min(256 * 1024, self._max_unsent_bytes // 2))
        # Command flood guard (paho thread only).
        self._cmd_tokens = float(CMD_BURST)
        self._cmd_t = time.monotonic()
        self._cmd_dropped_unreported = 0
        self._cmd_next_report = 0.0
        # Extra parts (Home Assistant discovery...) hook in here instead of editing the session.
        self._connect_listeners: list = []
        self._subscriptions: Dict[str, int] = {}
        self._stop_listeners: list = []

        protocol = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=cfg.client_id, protocol=protocol)
        if m.username:
            self.client.username_pw_set(m.username, cfg.mqtt_password)
            if not m.tls.enabled:
                log.warning("MQTT: user name %s and its password go to %s:%d in clear text "
                            "(mqtt.tls.enabled is false); anyone on the path can read them",
                            m.username, m.host, m.port)
        if m.tls.enabled:
            try:
                self.client.tls_set(ca_certs=m.tls.ca_certs or None, certfile=m.tls.certfile or None,
                                    keyfile=m.tls.keyfile or None, cert_reqs=ssl.CERT_REQUIRED)
            except (ssl.SSLError, OSError, ValueError) as e:  # unreadable or malformed PEM: name the keys
                files = ", ".join(f"mqtt.tls.{k}={getattr(m.tls, k)}" for k in ("ca_certs", "certfile", "keyfile")
                                  if getattr(m.tls, k))
                raise ValueError(f"mqtt.tls: cannot load {files or 'the system trust store'}: {e}") from e
            self.client.tls_insecure_set(m.tls.insecure)
        self.client.will_set(self.topics["available"], "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=m.reconnect_min_delay,  # type: ignore[arg-type]
                                        max_delay=m.reconnect_max_delay)  # floats work: used as seconds
        # paho's own store for QoS>=1 messages is bounded too (0 would mean unlimited); the
        # sender uses at most queue_size of it, the rest is kept for status/online/stopped.
        self.client.max_queued_messages_set(max(1, m.queue_size) + CONTROL_RESERVE)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_socket_open = self._on_socket_open
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
        for fn in list(self._stop_listeners):  # parts living as long as this session end first
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - best effort at exit
                log.debug("MQTT stop listener %r failed: %s", fn, e)
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._queue_cond.notify_all()
        if not self.connected and self.counters.connects == 0 and self._sender.ident is not None:
            # Stopped right after start (SIGTERM during model load): a reachable broker still
            # gets ``stopped``; an unreachable one costs at most a second of the stop bound.
            end = min(deadline, time.monotonic() + 1.0)
            while not self.connected and time.monotonic() < end:
                time.sleep(0.02)
        if self.connected:
            try:
                info = self.client.publish(self.topics["available"], "stopped", qos=1, retain=True)
                if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                    log.warning("MQTT: could not queue 'stopped' (%s)", self._mqtt.error_string(info.rc))
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

    @property
    def sender_alive(self) -> bool:
        """False when the QoS>=1 sender thread has died (for supervision)."""
        return self._sender.is_alive() or not self._sender.ident or self._stopping
    # -- hooks for other parts ------------------------------------------------------------
    def add_connect_listener(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` on paho's thread after every (re)connect, once status/online are out.

        Returns a function that removes it. Keep ``fn`` short; use ``send`` to publish.
        """
        self._connect_listeners.append(fn)
        if self.connected:  # added late: catch up with the connect that already happened
            fn()
        return lambda: self._connect_listeners.remove(fn) if fn in self._connect_listeners else None

    def add_stop_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` when the session is being stopped, before it goes (a reload builds a new one)."""
        self._stop_listeners.append(fn)

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None], qos: int = 1) -> None:
        """Subscribe ``topic`` now and on every reconnect; ``callback(topic, payload)`` on paho's thread."""
        def on_message(client, userdata, message) -> None:
            try:
                callback(message.topic, bytes(message.payload))
            except Exception as e:  # noqa: BLE001 - nothing a client sends may stop the daemon
                log.error("MQTT handler for %s failed: %s", message.topic, e)

        self._subscriptions[topic] = qos
        self.client.message_callback_add(topic, on_message)
        if self.connected:
            self.client.subscribe(topic, qos=qos)

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
        # status, then online, now; what paho does not take (store full) the sender retries
        # first, in that order. Before, both were published here AND queued for the sender:
        # every connect sent each twice.
        pending = ["status", "online"]
        while pending and self._send_control(pending[0]):
            pending.pop(0)
        with self._lock:
            self._control = pending
            self._queue_cond.notify_all()
        for topic, qos in list(self._subscriptions.items()):
            client.subscribe(topic, qos=qos)
        for fn in list(self._connect_listeners):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - a listener must not break the connect
                log.error("MQTT on-connect listener %r failed: %s", fn, e)
        log.info("MQTT: connected to %s:%d%s", self.cfg.mqtt.host, self.cfg.mqtt.port,
                 f" (reconnect #{self.counters.reconnects})" if self.counters.reconnects else "")

    def _on_socket_open(self, client, userdata, sock) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sndbuf)
        except (OSError, AttributeError, ValueError) as e:  # not fatal: only latency under backpressure
            log.debug("MQTT: cannot size the socket send buffer: %s", e)

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
        """Screen one ``cmd`` message on paho's thread; only valid commands reach the daemon.

        Never raises: paho would log and drop the exception, but a bug here must not
        even cost the network thread a reconnect.
        """
        try:
            self._screen_cmd(message)
        except Exception as e:  # noqa: BLE001
            log.error("cmd handling failed: %s", e)

    def _screen_cmd(self, message) -> None:
        self.counters.commands += 1
        payload = message.payload
        if message.retain:
            # Delivered because it was retained on the broker: a stale order, not a live one.
            self.counters.retained_cleared += 1
            if payload:
                log.warning("ignoring a retained cmd message (%d bytes) and clearing it: commands are "
                            "never retained", len(payload))
                self._publish_now(self.topics["cmd"], b"", qos=1, retain=True)
            return
        if not payload:
            self.counters.commands_empty += 1
            return  # the empty message that clears a retained one; nothing to answer
        now = time.monotonic()
        self._cmd_tokens = min(float(CMD_BURST), self._cmd_tokens + (now - self._cmd_t) * CMD_RATE)
        self._cmd_t = now
        if self._cmd_tokens < 1.0:
            self.counters.commands_rate_dropped += 1
            self._cmd_dropped_unreported += 1
            if now >= self._cmd_next_report:  # one summary result per second, not one per drop
                self._cmd_next_report = now + 1.0
                n, self._cmd_dropped_unreported = self._cmd_dropped_unreported, 0
                self.publish_cmd_result({"id": None, "cmd": None, "ok": False, "dropped": n,
                                         "error": f"rate limit: {n} command(s) dropped "
                                                  f"(limit {CMD_RATE:g}/s, burst {CMD_BURST})"})
            return
        self._cmd_tokens -= 1.0
        if len(payload) > CMD_MAX_BYTES:  # before anything is copied or queued
            self.counters.commands_rejected += 1
            self.publish_cmd_result(CommandError(
                f"payload too large: {len(payload)} bytes (limit {CMD_MAX_BYTES})").result())
            return
        try:
            parse_command(payload)  # bounded and cheap; the daemon parses again when it applies
        except CommandError as e:
            self.counters.commands_rejected += 1
            log.warning("rejected command: %s", e)
            self.publish_cmd_result(e.result())
            return
        self._on_command(bytes(payload))

    # -- publishing -----------------------------------------------------------------------
    def _status_payload(self) -> bytes:
        try:
            return json.dumps(self._status_provider(), separators=(",", ":")).encode()
        except Exception as e:  # noqa: BLE001 - status must never break the connect callback
            log.error("building status failed: %s", e)
            return b'{"error":"status unavailable"}'

    def _publish_now(self, topic: str, payload: bytes, qos: int, retain: bool):
        """paho's MQTTMessageInfo, or None when paho raised."""
        try:
            return self.client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, RuntimeError) as e:
            log.warning("MQTT publish to %s failed: %s", topic, e)
            return None

    def _ok(self, info) -> bool:
        return info is not None and info.rc == self._mqtt.MQTT_ERR_SUCCESS

    def _enqueue(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        with self._lock:
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.counters.queue_dropped += 1
            self._queue.append((topic, payload, qos, retain))
            self._queue_cond.notify()

    def _store_full(self) -> bool:
        """Our QoS>=1 messages still in paho's store reach queue_size (called under _lock)."""
        if len(self._inflight) >= self._queue_size:
            self._inflight = [i for i in self._inflight if not self._finished(i)]
        return len(self._inflight) >= self._queue_size

    def _send_control(self, what: str) -> bool:
        if what == "status":
            info = self._publish_now(self.topics["status"], self._status_payload(), qos=1, retain=True)
        else:
            info = self._publish_now(self.topics["available"], "online", qos=1, retain=True)
        if not self._ok(info):
            self.counters.control_retries += 1
            if self.counters.control_retries in (1, 10) or self.counters.control_retries % 100 == 0:
                log.warning("MQTT: %s not taken by paho (%s); retrying", what,
                            "exception" if info is None else self._mqtt.error_string(info.rc))
            return False
        return True

    def _send_loop(self) -> None:
        """Publishes control messages (status, online) first, then drains the QoS>=1 queue."""
        while True:
            try:
                if self._send_step():
                    return
            except Exception as e:  # noqa: BLE001 - the sender must outlive any one bad message
                log.error("MQTT sender: %s", e)
                time.sleep(0.1)

    def _send_step(self) -> bool:
        """One publish (or wait); True when the loop should end."""
        with self._lock:
            while not self._stopping and not (self.connected and
                                              (self._control or (self._queue and not self._store_full()))):
                self._queue_cond.wait(0.2)
            if self._stopping and (not self._queue or not self.connected):
                return True
            control = self._control[0] if self._control else None
            item = None
            if control is None:
                item = self._queue.popleft()
        if control is not None:
            if self._send_control(control):
                with self._lock:
                    if self._control and self._control[0] == control:
                        self._control.pop(0)
            else:
                time.sleep(0.05)
            return False
        topic, payload, qos, retain = item
        info = self._publish_now(topic, payload, qos, retain)
        if self._ok(info):
            with self._lock:
                self._inflight.append(info)
            return False
        with self._lock:  # put it back; it is still the oldest
            self._queue.appendleft(item)
        time.sleep(0.1)
        return False

    def _finished(self, info) -> bool:
        """paho is done with this message: written (QoS 0), acknowledged (QoS>=1), or failed."""
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_AGAIN):
            return True  # is_published() would raise; paho marks lost QoS 0 packets this way
        return info.is_published()

    def _reap_unsent(self) -> None:
        """Forget QoS 0 messages paho has written (or lost with the link); under _q0_lock."""
        while self._unsent and self._finished(self._unsent[0][0]):
            info, size = self._unsent.popleft()
            self._unsent_bytes -= size
            if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                self.counters.link_lost += 1

    def send(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """QoS 0: now, or dropped (counted) when offline or too much is unsent; QoS >= 1: bounded queue."""
        if qos > 0:
            self._enqueue(topic, payload, qos, retain)
            return True
        if not self.connected:
            self.counters.offline_dropped += 1
            return False
        with self._q0_lock:
            self._reap_unsent()
            if self._unsent and (self._unsent_bytes + len(payload) > self._max_unsent_bytes
                                 or len(self._unsent) >= MAX_UNSENT_MSGS):
                self.counters.backpressure_dropped += 1
                return False
            info = self._publish_now(topic, payload, 0, retain)
            if not self._ok(info):
                self.counters.offline_dropped += 1
                return False
            self._unsent.append((info, len(payload)))
            self._unsent_bytes += len(payload)
        return True

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
        """Retained status (also sent on every connect); retried by the sender until paho takes it."""
        with self._lock:
            if "status" not in self._control:
                self._control.insert(0, "status")
            self._queue_cond.notify_all()

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

    @property
    def unsent_bytes(self) -> int:
        with self._q0_lock:
            self._reap_unsent()
            return self._unsent_bytes

    def stats_dict(self) -> Dict[str, Any]:
        """Everything the session counts, for the ``stats`` document."""
        c = self.counters
        return {"connected": self.connected, "state": self.state, **vars(c),
                "queue_len": self.queue_len, "unsent_bytes": self.unsent_bytes,
                "unsent_limit_bytes": self._max_unsent_bytes}
