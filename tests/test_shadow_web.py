"""The A/B shadow's numbers on the daemon's web side: /api/stats carries stats.shadow and
/metrics the shadow gauges (real daemon, real broker, prometheus_client's own parser), and the
live page shows them and promotes (headless Chromium). ~20 s."""
from __future__ import annotations

import json
import http.client

import jsonschema

from edge_holistic.pipeline.agreement import load_schema
from mqtt_fixtures import Broker, DaemonProcess, Subscriber, daemon_config, free_port, wait_until


def _get(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _browser_panel_and_promote(port: int) -> None:
    """Headless Chromium: the panel shows the pair and per-part numbers; Promote swaps them."""
    import shutil

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_web import _chrome

    browser, profile = _chrome()
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "shadow").is_displayed()
                                         and "pose" in b.find_element(By.ID, "shadow-parts").text)
        assert "primary lite@" in browser.find_element(By.ID, "shadow-pair").text
        browser.find_element(By.ID, "c-promote").click()
        WebDriverWait(browser, 30).until(lambda b: "primary full@" in b.find_element(By.ID, "shadow-pair").text)
        WebDriverWait(browser, 10).until(lambda b: "applied (promote)" in b.find_element(By.ID, "cmd-result").text)
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_stats_api_and_metrics_carry_the_shadow(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    broker = Broker(tmp_path / "broker").start()
    port = free_port()
    cfg = daemon_config(tmp_path, broker.port, "shweb",
                        http={"enabled": True, "host": "127.0.0.1", "port": port},
                        pipeline={"max_fps": 8, "shadow": {"enabled": True, "pose_model": "full", "precision": "float",
                                                           "every": 1, "max_cpu_percent": 0}})
    sub = Subscriber(broker.port, "edge_holistic/shweb/#")
    d = DaemonProcess(cfg)
    try:
        def shadow_doc():
            try:
                status, body = _get(port, "/api/stats")
            except OSError:
                return None
            doc = json.loads(body).get("shadow") if status == 200 else None
            return doc if doc and doc["parts"]["pose"]["compared"] >= 3 else None

        doc = wait_until(shadow_doc, 90)
        assert doc, d.log()
        jsonschema.Draft202012Validator(load_schema()).validate(doc)
        assert doc["a"]["label"].startswith("lite") and doc["b"]["label"].startswith("full")
        status, body = _get(port, "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        dist = {(s.labels["part"], s.labels["quantile"]): s.value
                for s in families["edge_holistic_shadow_distance_percent"].samples}
        assert ("pose", "0.5") in dist and ("pose", "0.9") in dist and dist[("pose", "0.5")] > 0  # lite vs full
        agree = {s.labels["part"]: s.value for s in families["edge_holistic_shadow_found_agreement_ratio"].samples}
        assert set(agree) == {"pose", "face", "left_hand", "right_hand"} and 0 <= agree["pose"] <= 1
        assert families["edge_holistic_shadow_frames_compared"].samples[0].value >= 3
        _browser_panel_and_promote(port)
    finally:
        sub.close()
        d.close()
        broker.close()
