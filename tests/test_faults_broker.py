"""Fault injection: the broker killed and restarted, and a slow uplink, against the real daemon.

Run time: ~45 s for the restarts (two daemons at once, qos 0 and qos 1, 10 restarts),
~35 s for the slow link (``FAULTS_SLOW_LINK_S`` seconds throttled, 20 by default;
docs/reliability.md reports the 60 s run).
"""
from __future__ import annotations

import os
import signal
import time

from fault_helpers import ThrottleProxy, latest_stats, proc_status, wait_stats
from mqtt_fixtures import Broker, DaemonProcess, Subscriber, daemon_config

PREFIX = "edge_holistic"
RESTARTS = 10
QUEUE = 3  # qos 1 queue_size: small, so the half-open spells fill paho's store
SLOW_RATE = 100_000  # bytes/s daemon -> broker while throttled
RSS_BOUND_MB = 40.0  # stated bound: RSS growth while throttled (unsent QoS 0 is capped at max_unsent_kb)


def _fresh(sub: Subscriber, dev: str, since: float, timeout: float = 25.0) -> dict:
    """online, status and landmarks of ``dev`` received after ``since`` (None where missing)."""
    base = f"{dev}/"
    got = {}
    got["online"] = sub.wait_for("available", lambda m: m.topic.endswith(base + "available") and m.text == "online",
                                 timeout=timeout, since=since)
    got["status"] = sub.wait_for("status", lambda m: m.topic.endswith(base + "status"), timeout=timeout, since=since)
    got["landmarks"] = sub.wait_for("landmarks", lambda m: m.topic.endswith(base + "landmarks"), timeout=timeout,
                                    since=since)
    return got


def test_broker_killed_and_restarted_ten_times_qos0_and_qos1(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    devs = {"bq0": 0, "bq1": 1}
    daemons = {}
    sub = Subscriber(broker.port, f"{PREFIX}/#")
    try:
        for dev, qos in devs.items():
            cfg = daemon_config(tmp_path, broker.port, dev, mqtt={"qos": qos, "queue_size": QUEUE})
            daemons[dev] = DaemonProcess(cfg)
        for dev, d in daemons.items():
            assert sub.wait_for("landmarks", lambda m, dev=dev: f"/{dev}/" in m.topic, timeout=60), d.log()
        timings = []
        for i in range(RESTARTS):
            how = "SIGKILL" if i % 2 == 0 else "SIGTERM"
            if i % 3 == 2:  # half-open first: the broker stops reading, QoS 1 messages pile up unacked
                broker.proc.send_signal(signal.SIGSTOP)
                time.sleep(4.0)
                how = "SIGSTOP 4 s, then SIGKILL"
                broker.proc.kill()
                broker.proc.wait(5)
                broker.proc = None
            elif how == "SIGKILL":
                broker.proc.kill()
                broker.proc.wait(5)
                broker.proc = None
            else:
                broker.stop()
            time.sleep(0.5)
            broker.start()
            t_up = time.monotonic()
            for dev, d in daemons.items():
                got = _fresh(sub, dev, t_up)
                missing = [k for k, v in got.items() if v is None]
                assert not missing, f"restart {i + 1} ({how}): {dev} has no fresh {missing}\n{d.log()[-3000:]}"
                assert d.proc.poll() is None, d.log()
            timings.append(round(time.monotonic() - t_up, 2))
        t_end = time.monotonic()
        for dev, qos in devs.items():
            got = sub.wait_for("stats", lambda m, dev=dev: f"/{dev}/" in m.topic and
                               m.json()["mqtt"]["reconnects"] >= RESTARTS, timeout=15, since=t_end)
            assert got is not None, [m.text for m in sub.of("stats", t_end)][-2:]
            m = got.json()["mqtt"]
            assert m["reconnects"] >= RESTARTS and m["connected"], m
            assert m["queue_len"] <= QUEUE, m
            if qos == 0:
                assert m["offline_dropped"] + m["link_lost"] > 0, m  # frames while down: dropped and counted
            else:  # the half-open spells filled paho's store and the queue: oldest dropped and counted
                assert m["queue_dropped"] > 0, m
            print(f"\n{dev} (qos {qos}): {m}")
        print(f"\nseconds from broker start to fresh online+status+landmarks: {timings}")
    finally:
        sub.close()
        for d in daemons.values():
            d.close()
        broker.close()


def test_slow_link_bounded_memory_drops_counted_full_rate_after(tmp_path):
    seconds = float(os.environ.get("FAULTS_SLOW_LINK_S", "20"))
    broker = Broker(tmp_path / "broker").start()
    proxy = ThrottleProxy(broker.port)
    dev = "slow"
    cfg = daemon_config(tmp_path, proxy.port, dev,
                        source={"type": "file", "path": str(daemon_config.__globals__["DATA"] / "clip.avi"),
                                "realtime": False},
                        pipeline={"max_fps": 0}, mqtt={"max_unsent_kb": 64, "keepalive": 60})
    sub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    d = DaemonProcess(cfg)
    try:
        assert sub.wait_for("landmarks", timeout=60), d.log()
        time.sleep(4.0)  # warm up
        t_a, f_a = time.monotonic(), proxy.forwarded
        time.sleep(3.0)
        offered = (proxy.forwarded - f_a) / (time.monotonic() - t_a)
        rate = min(SLOW_RATE, offered / 4)  # the uplink must be well below what the daemon sends
        base = proc_status(d.pid)["rss_mb"]
        st0 = latest_stats(sub)
        proxy.rate = rate
        t0 = time.monotonic()
        peak = base
        while time.monotonic() - t0 < seconds:
            peak = max(peak, proc_status(d.pid)["rss_mb"])
            time.sleep(0.5)
            if os.environ.get("FAULTS_VERBOSE"):
                s_ = latest_stats(sub)
                print(round(time.monotonic() - t0, 1), round(offered), round(rate), proxy.forwarded,
                      s_ and {k: s_["mqtt"][k] for k in ("unsent_bytes", "backpressure_dropped", "published")})
        assert d.proc.poll() is None, d.log()
        proxy.rate = None
        t_lift = time.monotonic()
        st = wait_stats(sub, lambda s: s["mqtt"]["backpressure_dropped"] > 0, timeout=30, since=t_lift)
        assert st is not None, (latest_stats(sub), d.log()[-2000:])
        m = st["mqtt"]
        assert m["unsent_limit_bytes"] == 64 * 1024
        assert peak - base <= RSS_BOUND_MB, (base, peak)
        # Full rate again: every frame processed in a window after the lift arrives (no seq gaps).
        time.sleep(3.0)
        w0 = time.monotonic()
        time.sleep(5.0)
        seqs = sorted({m.json()["frame"]["seq"] for m in sub.of("landmarks", w0)})
        span = seqs[-1] - seqs[0] + 1
        delivered = len(seqs) / span
        assert delivered >= 0.95, (len(seqs), span)
        got = len(seqs) / (time.monotonic() - w0)
        fps = latest_stats(sub)["fps"]["processed"]
        print(f"\nslow link: offered {offered / 1e3:.0f} kB/s, throttled to {rate / 1e3:.0f} kB/s for {seconds:.0f} s; "
              f"rss {base:.1f} -> peak {peak:.1f} MB (+{peak - base:.1f}); backpressure_dropped "
              f"{m['backpressure_dropped']} (before {st0['mqtt']['backpressure_dropped']}), "
              f"link_lost {m['link_lost']}; "
              f"after: {delivered:.0%} of frames delivered, {got:.1f} msg/s received vs {fps:.1f} fps processed")
    finally:
        sub.close()
        d.close()
        proxy.close()
        broker.close()
