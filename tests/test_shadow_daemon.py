"""The A/B shadow in the real daemon process with a real broker: the published stream is
untouched, the numbers arrive in stats.shadow and on the retained shadow topic, bad shadow
settings are refused with the key named, and promote twice returns to the start.

About 40 s (two daemon runs over the committed clip, pose lite, one thread, paced at 5 and 10 fps).
"""
from __future__ import annotations

import json
import time

import jsonschema
import pytest

from conftest import run_cli
from edge_holistic.pipeline.agreement import load_schema
from mqtt_fixtures import DATA, Subscriber, wait_until, watched_daemon

PREFIX = "edge_holistic"
CLIP_FRAMES = 100


def test_identical_shadow_leaves_the_stream_alone_and_agrees(broker, tmp_path):
    """Every frame published once, in order, while an identical candidate runs on every frame;
    its numbers (distance 0, full agreement) in stats.shadow and on the retained topic."""
    with watched_daemon(broker, tmp_path, "shd", args=["--once", "--stdout"], separate_stdout=True,
                        source={"type": "file", "path": str(DATA / "clip.avi"), "realtime": False},
                        # paced so the candidate keeps up: a dropped frame would be a gap in its tracking
                        pipeline={"max_fps": 5, "shadow": {"enabled": True, "pose_model": "lite",
                                                            "precision": "float", "every": 1,
                                                            "max_cpu_percent": 0}}) as (_, sub, d):
        assert d.wait(180) == 0, d.log()
        assert sub.wait_for("available", lambda m: m.text == "stopped", timeout=10)
        # The stdout sink is lossless (MQTT QoS 0 drops, counted, while not yet connected).
        msgs = [json.loads(line) for line in d.stdout_path.read_text().splitlines()]
        assert [m["frame"]["seq"] for m in msgs] == list(range(1, CLIP_FRAMES + 1)), d.log()  # none lost, in order
        ts = [m["frame"]["ts"] for m in msgs]
        assert ts == sorted(ts)
        assert all(m["models"]["pose"].startswith("pose_landmark_lite") for m in msgs)  # only the primary's
        stats = [m.json()["shadow"] for m in sub.of("stats")]
        docs = [s for s in stats if s is not None and s["frames"] >= 10]
        assert docs, (stats, d.log())
        schema = jsonschema.Draft202012Validator(load_schema())
        last = docs[-1]
        schema.validate(last)
        assert last["every"] == 1 and last["a"]["models"] == last["b"]["models"]
        pose = last["parts"]["pose"]
        assert pose["compared"] >= 5 and pose["median_pct"] == 0.0 and pose["p90_pct"] == 0.0, (pose, last["counters"])
        assert pose["agreement"] == 1.0 and pose["flips"] == {"lost": 0, "extra": 0}, pose
        retained = Subscriber(broker.port, f"{PREFIX}/shd/shadow")  # joins late: gets the retained one
        try:
            got = retained.wait_for("shadow", lambda m: bool(m.payload), timeout=10)
            assert got is not None and got.retain
            schema.validate(got.json())
        finally:
            retained.close()
        assert "Traceback" not in d.log()


def test_promote_twice_returns_to_the_start_and_bad_settings_are_refused(broker, tmp_path):
    with watched_daemon(broker, tmp_path, "promo", args=["--once", "--stdout"], separate_stdout=True,
                        source={"type": "file", "path": str(DATA / "clip.avi"), "realtime": False},
                        pipeline={"max_fps": 10, "shadow": {"enabled": True, "pose_model": "full",
                                                            "precision": "float", "every": 2,
                                                            "max_cpu_percent": 0}}) as (_, sub, d):

        def command(ident: str, doc: dict) -> dict:
            t0 = time.monotonic()
            sub.publish(f"{PREFIX}/promo/cmd", json.dumps({"id": ident, **doc}))
            res = sub.wait_for("cmd/result", lambda m: m.json().get("id") == ident, timeout=20, since=t0)
            assert res is not None, d.log()
            return res.json()

        assert wait_until(lambda: len(sub.of("landmarks")) >= 5, 60), d.log()
        for bad, key in (({"every": 0}, "shadow.every"), ({"pose_model": "tiny"}, "shadow.pose_model"),
                         ({"max_cpu_percent": 500}, "shadow.max_cpu_percent"), ({"colour": 1}, "shadow.colour"),
                         ("lite", "shadow")):
            res = command(f"bad-{key}", {"cmd": "set", "shadow": bad})
            assert res["ok"] is False and key in res["error"], res
        res = command("p1", {"cmd": "promote"})
        assert res["ok"] is True, (res, d.log())
        assert res["applied"]["primary"]["pose_model"] == "full" and res["applied"]["shadow"]["pose_model"] == "lite"
        res = command("p2", {"cmd": "promote"})
        assert res["ok"] is True, (res, d.log())
        assert res["applied"]["primary"]["pose_model"] == "lite" and res["applied"]["shadow"]["pose_model"] == "full"
        res = command("off", {"cmd": "set", "shadow": {"enabled": False}})
        assert res["ok"] is True and res["applied"]["shadow"]["enabled"] is False, res
        res = command("p3", {"cmd": "promote"})
        assert res["ok"] is False and "enabled shadow" in res["error"], res
        status = sub.wait_for("status", lambda m: m.json().get("shadow", {}).get("enabled") is False, timeout=10)
        assert status is not None and status.json()["pose_model"] == "lite"  # back at the start
        assert status.json()["shadow"]["pose_model"] == "full"
        assert d.wait(180) == 0, d.log()
        msgs = [json.loads(line) for line in d.stdout_path.read_text().splitlines()]
        assert [m["frame"]["seq"] for m in msgs] == list(range(1, CLIP_FRAMES + 1))
        names = [m["models"]["pose"][:len("pose_landmark_lite")] for m in msgs]
        # lite, then full after the first promote, then lite again after the second: back to the start
        runs = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
        assert runs == ["pose_landmark_lite", "pose_landmark_full", "pose_landmark_lite"], runs
        assert names[-1] == "pose_landmark_lite"
        assert "Traceback" not in d.log()


@pytest.mark.parametrize("text,key", [
    ("pipeline: {shadow: {every: 0}}", "pipeline.shadow.every"),
    ("pipeline: {shadow: {pose_model: tiny}}", "pipeline.shadow.pose_model"),
    ("pipeline: {shadow: {precision: int4}}", "pipeline.shadow.precision"),
    ("pipeline: {shadow: {enabled: maybe}}", "pipeline.shadow.enabled"),
])
def test_bad_shadow_config_names_the_key(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text("mqtt: {enabled: false}\n" + text + "\n")
    proc = run_cli("check-config", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{key}:" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
