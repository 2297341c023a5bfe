"""Fault injection: SIGHUP bursts with good and broken config files, and the memory limits.

Run time: ~45 s (the reload daemon, and two memory daemons running at the same time).
"""
from __future__ import annotations

import os
import signal
import time

import yaml

from edge_holistic.config import load_config
from fault_helpers import latest_stats
from mqtt_fixtures import Broker, DaemonProcess, Subscriber, daemon_config

PREFIX = "edge_holistic"
BURST = 50


def _variants(tmp, port, dev):
    """name -> file; the daemon's --config is a symlink switched between them."""
    d = tmp / "variants"
    d.mkdir()
    out = {}
    for name, fps in (("good_a", 6), ("good_b", 7)):
        p = daemon_config(tmp, port, dev, pipeline={"max_fps": fps})
        out[name] = p.rename(d / f"{name}.yaml")
    good = yaml.safe_load(out["good_a"].read_text())
    bad = dict(good, pipeline=dict(good["pipeline"], max_fps="fast"))
    (d / "invalid.yaml").write_text(yaml.safe_dump(bad))
    out["invalid"] = d / "invalid.yaml"
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01garbage\x00" * 50)
    out["binary"] = d / "binary.yaml"
    (d / "a_directory.yaml").mkdir()
    out["unreadable_dir"] = d / "a_directory.yaml"
    out["dangling"] = d / "does_not_exist.yaml"
    ca = d / "broken_ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    tls = dict(good, mqtt=dict(good["mqtt"], tls={"enabled": True, "ca_certs": str(ca)}))
    (d / "tls_broken.yaml").write_text(yaml.safe_dump(tls))
    out["tls_broken"] = d / "tls_broken.yaml"
    return out


EXPECT = {"invalid": "pipeline.max_fps", "binary": "UTF-8", "unreadable_dir": "Is a directory",
          "dangling": "No such file", "tls_broken": "mqtt.tls.ca_certs"}


def _point(link, target):
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def test_sighup_burst_keeps_last_good_config_and_says_why(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    dev = "hup"
    files = _variants(tmp_path, broker.port, dev)
    link = tmp_path / "live.yaml"
    _point(link, files["good_a"])
    digests = {n: load_config(str(files[n])).digest for n in ("good_a", "good_b")}
    sub = Subscriber(broker.port, f"{PREFIX}/{dev}/#")
    d = DaemonProcess(link)
    try:
        assert sub.wait_for("landmarks", timeout=60), d.log()
        order = ["good_a", "invalid", "binary", "good_b", "unreadable_dir", "dangling", "tls_broken"]
        for i in range(BURST):
            _point(link, files[order[i % len(order)]])
            d.signal(signal.SIGHUP)
            time.sleep(0.02)
        assert d.proc.poll() is None, d.log()
        assert sub.wait_for("landmarks", timeout=15, since=time.monotonic()), "frames stopped after the burst"
        # Then each broken kind on its own: rejected with a reason, the last good config kept.
        seen = {}
        for bad in ("invalid", "binary", "unreadable_dir", "dangling", "tls_broken"):
            good = "good_b" if bad in ("binary", "dangling") else "good_a"
            _point(link, files[good])
            t_good = time.monotonic()
            d.signal(signal.SIGHUP)
            ok = sub.wait_for("status", lambda m: m.json().get("config_hash") == digests[good] and
                              m.json().get("config_error") is None, timeout=20, since=t_good)
            assert ok is not None, (good, [m.text for m in sub.of("status", t_good)][-1:], d.log()[-3000:])
            _point(link, files[bad])
            t_bad = time.monotonic()
            d.signal(signal.SIGHUP)
            rej = sub.wait_for("status", lambda m: m.json().get("config_error"), timeout=20, since=t_bad)
            assert rej is not None, (bad, d.log()[-3000:])
            doc = rej.json()
            assert doc["config_hash"] == digests[good], (bad, doc)  # the last good config still runs
            assert EXPECT[bad] in doc["config_error"], (bad, doc["config_error"])
            seen[bad] = doc["config_error"]
            assert sub.wait_for("landmarks", timeout=10, since=time.monotonic()), bad
        assert d.proc.poll() is None
        st = latest_stats(sub)
        assert st["control"]["reloads_rejected"] >= 5, st["control"]
        assert "Traceback" not in d.log()
        print(f"\n{BURST} SIGHUPs in {0.02 * BURST:.1f} s: alive; control {st['control']}")
        for k, v in seen.items():
            print(f"  {k}: {v[:160]}")
    finally:
        sub.close()
        d.close()
        broker.close()


def test_memory_soft_limit_sheds_and_recovers_across_sighup_hard_limit_exits_3(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    sub = Subscriber(broker.port, f"{PREFIX}/#")
    soft_cfg = daemon_config(tmp_path, broker.port, "memsoft",
                             health={"memory_soft_mb": 40, "memory_check_interval": 0.5, "shed_max_fps": 2})
    hard_cfg = daemon_config(tmp_path, broker.port, "memhard",
                             health={"memory_hard_mb": 60, "memory_check_interval": 0.5})
    soft = DaemonProcess(soft_cfg)
    hard = DaemonProcess(hard_cfg)
    out = {}
    try:
        code = hard.wait(90)
        assert code == 3, (code, hard.log()[-2000:])
        out["hard_exit"] = code
        on = sub.wait_for("status", lambda m: "/memsoft/" in m.topic and m.json()["shed_load"].get("active"),
                          timeout=60)
        assert on is not None, soft.log()[-3000:]
        assert on.json()["max_fps"] <= 2
        # RSS "falls" below the limit: raise the limit and reload (a fresh guard must end shedding).
        cfg = yaml.safe_load(soft_cfg.read_text())
        cfg["health"]["memory_soft_mb"] = 100000
        soft_cfg.write_text(yaml.safe_dump(cfg))
        t = time.monotonic()
        soft.signal(signal.SIGHUP)
        off = sub.wait_for("status", lambda m: "/memsoft/" in m.topic and not m.json()["shed_load"].get("active"),
                           timeout=30, since=t)
        assert off is not None, soft.log()[-3000:]
        assert off.json()["max_fps"] == 8 and off.json()["config_error"] is None, off.json()
        # And back on when the limit is lowered again: shedding follows RSS, both ways, across reloads.
        cfg["health"]["memory_soft_mb"] = 40
        soft_cfg.write_text(yaml.safe_dump(cfg))
        t = time.monotonic()
        soft.signal(signal.SIGHUP)
        again = sub.wait_for("status", lambda m: "/memsoft/" in m.topic and m.json()["shed_load"].get("active"),
                             timeout=30, since=t)
        assert again is not None, soft.log()[-3000:]
        assert soft.proc.poll() is None
        print(f"\nmemory: hard limit exit {code}; shedding on -> off (SIGHUP, limit raised) -> on again")
    finally:
        sub.close()
        soft.close()
        hard.close()
        broker.close()
