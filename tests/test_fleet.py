"""A fleet through real brokers: three daemons on an edge mosquitto, bridged to a central one.

Two consumers share one MQTT 5 subscription (``$share/...``) on the central broker:
every message of every device must arrive there exactly once across the two
(QoS 1 end to end), ``available`` must be right per device through the bridge,
and a killed daemon's LWT must cross it. docs/fleet.md describes the set-up.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import threading

import pytest

from mqtt_fixtures import Broker, DaemonProcess, Subscriber, daemon_config, wait_until

DEVICES = ("fleet-a", "fleet-b", "fleet-c")


class SharedConsumer:
    """An MQTT 5 client on a shared subscription, recording (device, seq) of each landmarks message."""

    def __init__(self, port: int, name: str) -> None:
        import paho.mqtt.client as mqtt

        self.got: list = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"{name}-{os.getpid()}", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("$share/fleet-consumers/edge_holistic/+/landmarks",
                                                                     qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.ready.wait(10), f"{name} could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        doc = json.loads(msg.payload)
        with self.lock:
            self.got.append((doc["source"], doc["frame"]["seq"]))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def bridged(tmp_path):
    central = Broker(tmp_path / "central").start()
    edge = Broker(tmp_path / "edge")
    # The edge broker forwards our whole tree to the central one (QoS 1, retained flags kept).
    edge.conf.write_text(edge.conf.read_text() + (
        "connection central\n"
        f"address 127.0.0.1:{central.port}\n"
        "topic edge_holistic/# out 1\n"
        "bridge_protocol_version mqttv50\n"
        "cleansession true\n"
        "restart_timeout 1\n"
        "notifications false\n"
    ))
    edge.start()
    probe = Subscriber(central.port, "edge_holistic/probe")
    pub = Subscriber(edge.port, "edge_holistic/unused")
    # The bridge connects asynchronously: probe until a message crosses it.
    crossed = wait_until(lambda: (pub.publish("edge_holistic/probe", b"x"), probe.of("probe"))[1], 15, 0.3)
    pub.close()
    probe.close()
    assert crossed, (tmp_path / "edge" / "mosquitto.log").read_text()
    yield edge, central
    edge.close()
    central.close()


def test_three_daemons_through_a_bridge_to_a_shared_subscription(bridged, tmp_path):
    edge, central = bridged
    consumers = [SharedConsumer(central.port, f"consumer{i}") for i in range(2)]
    truth = Subscriber(edge.port, "edge_holistic/+/landmarks")  # what the daemons really published
    watch = Subscriber(central.port, "edge_holistic/+/available")
    daemons = {}
    try:
        for i, dev in enumerate(DEVICES):
            cfg = daemon_config(tmp_path, edge.port, dev,
                                pipeline={"max_fps": 3},
                                mqtt={"qos": 1, "protocol": "5" if i == 0 else "3.1.1"},
                                homeassistant={"enabled": False})
            daemons[dev] = DaemonProcess(cfg)

        def last_available(dev):
            msgs = [m for m in watch.of("available") if m.topic == f"edge_holistic/{dev}/available"]
            return msgs[-1].text if msgs else None

        assert wait_until(lambda: all(last_available(d) == "online" for d in DEVICES), 60), \
            {d: daemons[d].log()[-2000:] for d in DEVICES}
        # A consumer that arrives late still learns every device's state (retained through the bridge).
        late = Subscriber(central.port, "edge_holistic/+/available")
        assert wait_until(lambda: len({m.topic for m in late.of("available") if m.retain}) == 3, 10)
        assert all(m.text == "online" for m in late.of("available"))
        late.close()

        def per_device(msgs):
            return collections.Counter(json.loads(m.payload)["source"] for m in msgs)

        assert wait_until(lambda: all(per_device(truth.of("landmarks"))[d] >= 8 for d in DEVICES), 60), \
            per_device(truth.of("landmarks"))

        # LWT: kill one daemon without a goodbye; the edge broker's will crosses the bridge.
        daemons["fleet-a"].signal(signal.SIGKILL)
        assert wait_until(lambda: last_available("fleet-a") == "offline", 20)
        assert last_available("fleet-b") == last_available("fleet-c") == "online"
        for dev in ("fleet-b", "fleet-c"):
            daemons[dev].signal(signal.SIGTERM)
            assert daemons[dev].wait(20) == 0, daemons[dev].log()[-2000:]
        assert wait_until(lambda: last_available("fleet-b") == last_available("fleet-c") == "stopped", 10)
        assert last_available("fleet-a") == "offline"

        expected = sorted((json.loads(m.payload)["source"], json.loads(m.payload)["frame"]["seq"])
                          for m in truth.of("landmarks"))

        def delivered():
            out = []
            for c in consumers:
                with c.lock:
                    out += c.got
            return sorted(out)

        wait_until(lambda: len(delivered()) >= len(expected), 15)
        got = delivered()
        dupes = [k for k, n in collections.Counter(got).items() if n > 1]
        assert not dupes, f"delivered more than once: {dupes[:10]}"
        assert got == expected, f"missing: {sorted(set(expected) - set(got))[:10]}, extra: {sorted(set(got) - set(expected))[:10]}"
        assert {d for d, _ in got} == set(DEVICES)
        assert all(len(c.got) > 0 for c in consumers), [len(c.got) for c in consumers]  # the broker shared the load
    finally:
        for d in daemons.values():
            d.close()
        for c in consumers:
            c.close()
        truth.close()
        watch.close()
