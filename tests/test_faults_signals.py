"""Fault injection: SIGTERM at awkward moments, against the real daemon.

- during model load (holistic, the longest load);
- during MQTT reconnect backoff (no broker, long max delay);
- while the capture thread is blocked in read() for good (an image "file" that is a FIFO
  nobody writes: ``open()`` never returns).

The documented bound (docs/reliability.md): exit within STOP_BOUND_S of SIGTERM, exit code 0,
and ``stopped`` on ``available`` whenever a broker is reachable.
Run time: ~25 s (the three cases run at the same time).
"""
from __future__ import annotations

import os
import shutil
import signal
import time

from fault_helpers import run_cases_concurrently
from mqtt_fixtures import DATA, Broker, DaemonProcess, Subscriber, daemon_config, free_port, wait_until

PREFIX = "edge_holistic"
STOP_BOUND_S = 10.0  # capture join 3 s + engine flush + MQTT flush 3 s, with margin


def _stop_within(d: DaemonProcess, bound: float):
    t = time.monotonic()
    d.signal(signal.SIGTERM)
    code = d.wait(bound + 20)  # measured, then judged against the bound
    return code, time.monotonic() - t


def _during_load(tmp, broker, out):
    dev = "sigload"
    cfg = daemon_config(tmp, broker.port, dev,
                        pipeline={"task": "holistic", "pose_model": "full", "hand_model": "full"})
    sub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: "starting" in d.log(), 30), d.log()
        time.sleep(0.2)
        loading = "pipeline ready" not in d.log()
        t = time.monotonic()
        code, took = _stop_within(d, STOP_BOUND_S)
        stopped = sub.wait_for("available", lambda m: m.text == "stopped", timeout=5, since=t)
        out["model load"] = {"signalled_while_loading": loading, "exit": code, "seconds": round(took, 2),
                             "stopped_published": stopped is not None}
        assert code == 0, d.log()[-2000:]
        assert stopped is not None, d.log()[-2000:]
    finally:
        sub.close()
        d.close()


def _during_backoff(tmp, broker, out):
    cfg = daemon_config(tmp, free_port(), "sigbackoff",  # nothing listens there
                        mqtt={"reconnect_min_delay": 2, "reconnect_max_delay": 60})
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: d.log().count("unreachable") >= 2, 60), d.log()
        code, took = _stop_within(d, STOP_BOUND_S)
        out["reconnect backoff"] = {"exit": code, "seconds": round(took, 2)}
        assert code == 0, d.log()[-2000:]
    finally:
        d.close()


def _during_blocked_read(tmp, broker, out):
    folder = tmp / "imgs"
    folder.mkdir()
    shutil.copy(sorted((DATA / "images").glob("*.jpg"))[0], folder / "a.jpg")
    os.mkfifo(folder / "b.jpg")  # imread opens it and waits for a writer that never comes
    dev = "sigblocked"
    cfg = daemon_config(tmp, broker.port, dev, source={"type": "images", "path": str(folder), "fps": 10},
                        health={"stall_timeout": 1, "unhealthy_after": 3})
    sub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    d = DaemonProcess(cfg)
    try:
        assert sub.wait_for("status", lambda m: "source down" in m.text, timeout=60), d.log()[-2000:]
        t = time.monotonic()
        code, took = _stop_within(d, STOP_BOUND_S)
        stopped = sub.wait_for("available", lambda m: m.text == "stopped", timeout=5, since=t)
        out["blocked read"] = {"exit": code, "seconds": round(took, 2), "stopped_published": stopped is not None}
        assert code == 0, d.log()[-2000:]
        assert stopped is not None, d.log()[-2000:]
    finally:
        sub.close()
        d.close()


def test_sigterm_during_load_backoff_and_blocked_read(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    out: dict = {}
    try:
        try:
            run_cases_concurrently({fn.__name__: fn for fn in (_during_load, _during_backoff, _during_blocked_read)},
                                   tmp_path, broker, out, 200)
        finally:
            print("\nSIGTERM:", out)
        for case, r in out.items():
            assert r["seconds"] <= STOP_BOUND_S, (case, r)
    finally:
        broker.close()
