"""The web page and HTTP API of the real daemon process (issue 11).

One daemon (pose lite on the sample clip, a real mosquitto, a token file, small
limits so the refusals are quick) serves every test here; a paho subscriber
checks after the bad inputs that landmarks still flow. The browser test drives
Debian's headless Chromium through chromedriver (Selenium).
"""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from edge_holistic.message import load_schema
from mqtt_fixtures import DATA, Broker, DaemonProcess, Subscriber, daemon_config, free_port, wait_until

PREFIX = "edge_holistic"
DEVICE = "webcam"
TOKEN = "test-token-5f0c9e1d7a"
PHOTO = DATA / "images" / "COCO_val2014_000000000241.jpg"  # one person, 480x640
SCREENSHOTS = Path(os.environ.get("EDGE_HOLISTIC_SCREENSHOTS", tempfile.gettempdir()))
MAX_UPLOAD_MB = 1
TIMEOUT_S = 3


class Web:
    """A tiny HTTP client for the daemon's page (stdlib only: what a script would use)."""

    def __init__(self, port: int, token: str = TOKEN) -> None:
        self.port = port
        self.token = token

    def request(self, method: str, path: str, body: bytes = None, headers: dict = None, auth: bool = True,
                timeout: float = 30):
        h = dict(headers or {})
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def get_json(self, path: str, **kw):
        status, headers, body = self.request("GET", path, **kw)
        return status, json.loads(body) if body else None

    def analyze(self, data: bytes, ctype: str = "image/jpeg", query: str = "", **kw):
        return self.request("POST", "/api/analyze" + (f"?{query}" if query else ""), data,
                            {"Content-Type": ctype}, **kw)

    def multipart(self, fields: dict, image: bytes, filename: str = "photo.jpg", query: str = ""):
        boundary = "----edgeholistictest"
        parts = []
        for k, v in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
                     f'Content-Type: image/jpeg\r\n\r\n'.encode() + image + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", "/api/analyze" + (f"?{query}" if query else ""), body,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100000, 9)) + chunk(b"IEND", b""))


def jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    broker = Broker(tmp / "broker").start()
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    cfg = daemon_config(tmp, broker.port, DEVICE,
                        http={"enabled": True, "host": "127.0.0.1", "port": port, "token_file": str(token_file),
                              "max_upload_mb": MAX_UPLOAD_MB, "max_side": 640, "timeout_s": TIMEOUT_S})
    sub = Subscriber(broker.port, f"{PREFIX}/{DEVICE}/#")
    d = DaemonProcess(cfg)
    web = Web(port)
    try:
        assert sub.wait_for("landmarks", timeout=60) is not None, "no landmarks within 60 s:\n" + d.log()
        assert wait_until(lambda: _up(port), 20), "web page not listening:\n" + d.log()
        yield d, web, sub
    finally:
        sub.close()
        d.close()
        broker.close()


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def still_publishing(d, sub, n: int = 3, timeout: float = 20) -> bool:
    t0 = time.monotonic()
    return wait_until(lambda: len(sub.of("landmarks", since=t0)) >= n, timeout) is not None and d.proc.poll() is None


# -- documents ------------------------------------------------------------------------------
def test_documents_match_the_mqtt_ones(daemon):
    d, web, sub = daemon
    status, st = web.get_json("/api/status")
    assert status == 200 and st["device_id"] == DEVICE and st["task"] == "pose"
    mqtt_status = sub.wait_for("status", timeout=10).json()
    assert set(st) == set(mqtt_status) and st["models"] == mqtt_status["models"]
    status, stats = web.get_json("/api/stats")
    assert status == 200 and stats["frames"]["processed_total"] > 0 and stats["mqtt"]["connected"] is True
    status, latest = web.get_json("/api/latest")
    assert status == 200
    jsonschema.validate(latest, load_schema())
    assert latest["source"] == DEVICE
    status, health = web.get_json("/healthz", auth=False)
    assert status == 200 and health == {"ok": True}
    status, opts = web.get_json("/api/options")
    assert status == 200 and "lite" in opts["installed"]["pose_model"] and opts["current"]["pose_model"] == "lite"


def test_metrics_parse_with_prometheus_client(daemon):
    from prometheus_client.parser import text_string_to_metric_families

    d, web, sub = daemon
    status, headers, body = web.request("GET", "/metrics", auth=False)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    value = {f.name: f.samples[0].value for f in families.values() if f.samples}
    assert value["edge_holistic_frames_processed"] > 0 and value["edge_holistic_frames_captured"] > 0
    assert "edge_holistic_frames_dropped" in families
    assert value["edge_holistic_mqtt_connected"] == 1.0 and "edge_holistic_mqtt_reconnects" in families
    assert value["edge_holistic_resident_memory_bytes"] > 50e6
    assert value["edge_holistic_person_present"] in (0.0, 1.0)
    lat = families["edge_holistic_stage_latency_seconds"]
    stages = {s.labels["stage"] for s in lat.samples if s.name.endswith("_count")}
    assert {"total", "pose_landmark"} <= stages or "total" in stages, stages
    models = {s.labels["part"]: s.labels["model"] for s in families["edge_holistic_model_info"].samples}
    assert models["pose"].startswith("pose_landmark_lite")


# -- token ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("GET", "/"), ("GET", "/analyze"), ("GET", "/api/status"),
                                         ("GET", "/api/latest"), ("GET", "/stream.mjpg"), ("GET", "/api/events"),
                                         ("POST", "/api/cmd"), ("POST", "/api/analyze")])
def test_token_required_everywhere_but_health_and_metrics(daemon, method, path):
    d, web, sub = daemon
    body = json.dumps({"cmd": "pause"}).encode() if path == "/api/cmd" else None
    headers = {"Content-Type": "application/json"} if body else {}
    for auth_header in ({}, {"Authorization": "Bearer wrong-token-123"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Cookie": "edge_holistic_token=nope"}):
        status, h, _ = web.request(method, path, body, {**headers, **auth_header}, auth=False)
        assert status == 401, (path, auth_header, status)
    assert web.request("GET", "/healthz", auth=False)[0] == 200
    assert web.request("GET", "/metrics", auth=False)[0] == 200


def test_sighup_moves_the_page_to_its_new_port_and_token(tmp_path):
    """http changes take effect on a reload: a new port and a rotated token; a port that is
    taken keeps the page where it was, and the daemon runs on either way."""
    import signal

    import yaml

    token_file = tmp_path / "token"
    token_file.write_text("first-token-123\n")
    port1, port2 = free_port(), free_port()
    cfg = daemon_config(tmp_path, free_port(), "webreload",  # no broker: the page must not depend on MQTT
                        http={"enabled": True, "host": "127.0.0.1", "port": port1, "token_file": str(token_file)})
    d = DaemonProcess(cfg)
    blocker = socket.socket()
    try:
        assert wait_until(lambda: _up(port1), 60), d.log()
        assert Web(port1, "first-token-123").get_json("/api/status")[0] == 200

        doc = yaml.safe_load(cfg.read_text())
        doc["http"]["port"] = port2
        cfg.write_text(yaml.safe_dump(doc))
        token_file.write_text("second-token-456\n")
        d.signal(signal.SIGHUP)
        assert wait_until(lambda: _up(port2), 20), d.log()
        assert not _up(port1)
        assert Web(port2, "second-token-456").get_json("/api/status")[0] == 200
        assert Web(port2, "first-token-123").get_json("/api/status")[0] == 401

        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        doc["http"]["port"] = blocker.getsockname()[1]
        cfg.write_text(yaml.safe_dump(doc))
        d.signal(signal.SIGHUP)
        assert wait_until(lambda: "keeping the previous http settings" in d.log(), 20), d.log()
        assert wait_until(lambda: _up(port2), 10), d.log()
        assert Web(port2, "second-token-456").get_json("/healthz", auth=False)[0] in (200, 503)
        assert d.proc.poll() is None
    finally:
        blocker.close()
        d.close()


def test_upload_refused_while_memory_is_shed_and_the_daemon_runs_on(tmp_path):
    """An upload must not load a model set (~100 MB for holistic) while the daemon is already
    above its memory soft limit: that could carry it past the hard limit, which ends the process.
    503 + Retry-After naming memory; the daemon keeps publishing; a lower-memory state is not
    needed for this (soft limit 1 MB: always shedding)."""
    broker = Broker(tmp_path / "broker").start()
    port = free_port()
    cfg = daemon_config(tmp_path, broker.port, "webmem",
                        http={"enabled": True, "host": "127.0.0.1", "port": port},
                        health={"memory_soft_mb": 1, "memory_check_interval": 0.5})
    sub = Subscriber(broker.port, f"{PREFIX}/webmem/#")
    d = DaemonProcess(cfg)
    try:
        assert wait_until(lambda: _up(port) and "shedding load" in d.log(), 60), d.log()
        web = Web(port, token="")
        photo = (DATA / "images" / "COCO_val2014_000000000241.jpg").read_bytes()
        status, headers, body = web.analyze(photo, query="task=holistic")
        assert status == 503, (status, body[:300])
        assert "memory" in json.loads(body)["error"] and int(headers["Retry-After"]) >= 1, body
        assert still_publishing(d, sub), d.log()
    finally:
        sub.close()
        d.close()
        broker.close()


def test_controls_refuse_without_token_and_apply_with_it(daemon):
    d, web, sub = daemon
    cmd = json.dumps({"cmd": "set", "max_fps": 6}).encode()
    status, _, _ = web.request("POST", "/api/cmd", cmd, {"Content-Type": "application/json"}, auth=False)
    assert status == 401
    assert web.get_json("/api/status")[1]["max_fps"] == 8.0  # nothing applied
    status, _, body = web.request("POST", "/api/cmd", cmd, {"Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["ok"] is True, body
    assert wait_until(lambda: web.get_json("/api/status")[1]["max_fps"] == 6.0, 10)
    # The same validation as MQTT cmd: an unknown model is refused with its name.
    bad = json.dumps({"cmd": "set", "pose_model": "gigantic"}).encode()
    status, _, body = web.request("POST", "/api/cmd", bad, {"Content-Type": "application/json"})
    assert status == 422 and "gigantic" in json.loads(body)["error"]
    status, _, body = web.request("POST", "/api/cmd", b"pose_model=lite", {"Content-Type": "text/plain"})
    assert status == 415
    # Login sets an HttpOnly, SameSite=Strict cookie that then works without the header.
    status, h, _ = web.request("POST", "/api/login", json.dumps({"token": TOKEN}).encode(),
                               {"Content-Type": "application/json"}, auth=False)
    cookie = h["Set-Cookie"]
    assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, _, _ = web.request("GET", "/api/status", headers={"Cookie": cookie.split(";")[0]}, auth=False)
    assert status == 200
    web.request("POST", "/api/cmd", json.dumps({"cmd": "set", "max_fps": 8}).encode(),
                {"Content-Type": "application/json"})


def test_no_cors_wildcard_and_security_headers(daemon):
    d, web, sub = daemon
    status, h, _ = web.request("GET", "/api/status", headers={"Origin": "http://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in h
    assert h["X-Content-Type-Options"] == "nosniff" and "default-src 'self'" in h["Content-Security-Policy"]


# -- analyze -------------------------------------------------------------------------------------
def test_analyze_multipart_raw_and_drawn(daemon):
    d, web, sub = daemon
    data = PHOTO.read_bytes()
    status, h, body = web.multipart({"task": "holistic", "pose_model": "full"}, data)
    assert status == 200, body
    msg = json.loads(body)
    jsonschema.validate(msg, load_schema())
    assert msg["frame"]["width"] == 480 and msg["frame"]["height"] == 640
    assert msg["pose"] is not None and msg["face"] is not None
    assert msg["models"]["pose"].startswith("pose_landmark_full") and "face" in msg["models"]
    status, h, body = web.analyze(data, query="draw=1")
    assert status == 200 and h["Content-Type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (640, 480, 3)
    assert float(np.abs(img.astype(int) - cv2.imread(str(PHOTO)).astype(int)).mean()) > 0.5  # something drawn


def test_large_image_is_scaled_and_landmarks_stay_normalised(daemon):
    d, web, sub = daemon
    img = cv2.imread(str(PHOTO))
    status, _, small = web.analyze(jpeg(img))
    big = cv2.resize(img, (1200, 1600), interpolation=cv2.INTER_CUBIC)  # above max_side 640
    status2, _, large = web.analyze(jpeg(big))
    assert status == status2 == 200
    a, b = json.loads(small), json.loads(large)
    assert (b["frame"]["width"], b["frame"]["height"]) == (1200, 1600)
    pa = np.array(a["pose"]["landmarks"])[:, :2]
    pb = np.array(b["pose"]["landmarks"])[:, :2]
    assert np.abs(pa - pb)[:25].max() < 0.03  # same photo, same normalised landmarks


@pytest.mark.parametrize("shape", ["lying", "wide"])
def test_unusual_aspect_ratios_are_processed(daemon, shape):
    d, web, sub = daemon
    img = cv2.imread(str(PHOTO))
    img = np.ascontiguousarray(np.rot90(img)) if shape == "lying" else cv2.resize(img, (2000, 120))
    status, _, body = web.analyze(jpeg(img))
    assert status == 200, body
    assert json.loads(body)["frame"]["width"] == img.shape[1]


def _error(status_body):
    status, headers, body = status_body
    return status, json.loads(body)["error"], headers


BAD_INPUTS = {
    "empty": (lambda w: w.analyze(b""), 400, "empty"),
    "not an image": (lambda w: w.analyze(b"GIF? no: plain text " * 10), 415, "JPEG, PNG"),
    "wrong type": (lambda w: w.analyze(b"{}", "application/json"), 415, "image"),
    "truncated": (lambda w: w.analyze(PHOTO.read_bytes()[:20000]), 422, "truncated"),
    "corrupt png": (lambda w: w.analyze(png_claiming(640, 480), "image/png"), 422, "corrupt"),
    "1x1": (lambda w: w.analyze(cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(), "image/png"),
            422, "too small"),
    "63 high": (lambda w: w.analyze(jpeg(np.full((63, 400, 3), 128, np.uint8))), 422, "at least 64"),
    "bomb": (lambda w: w.analyze(png_claiming(50000, 50000), "image/png"), 413, "50000x50000"),
    "too many bytes": (lambda w: w.analyze(os.urandom(MAX_UPLOAD_MB * 1048576 + 1)), 413, "limit"),
    "unknown pose model": (lambda w: w.analyze(PHOTO.read_bytes(), query="pose_model=../../etc/passwd"),
                           422, "unknown pose_model"),
    "unknown precision": (lambda w: w.analyze(PHOTO.read_bytes(), query="precision=int4"), 422, "precision"),
    "unknown parameter": (lambda w: w.analyze(PHOTO.read_bytes(), query="model_path=/tmp/x"), 422, "model_path"),
    "no image field": (lambda w: w.request("POST", "/api/analyze", b"--b\r\nContent-Disposition: form-data; "
                                           b"name=\"task\"\r\n\r\npose\r\n--b--\r\n",
                                           {"Content-Type": "multipart/form-data; boundary=b"}), 400, "image"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_its_status_and_a_reason(daemon, case):
    d, web, sub = daemon
    call, want, words = BAD_INPUTS[case]
    status, error, _ = _error(call(web))
    assert status == want and words in error, (case, status, error)


def test_upload_limit_holds_while_streaming_without_content_length(daemon):
    """Chunked transfer (no Content-Length): 413 arrives while the client is still sending."""
    d, web, sub = daemon
    s = socket.create_connection(("127.0.0.1", web.port), timeout=5)
    s.sendall(f"POST /api/analyze HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
              "Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"10000\r\n" + b"\xff" * 0x10000 + b"\r\n"
    sent, reply = 0, b""
    s.setblocking(False)
    try:
        while sent < 32 * MAX_UPLOAD_MB * 1048576 and not reply:
            try:
                s.sendall(chunk)
                sent += 0x10000
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
            try:
                reply = s.recv(4096)
            except BlockingIOError:
                pass
        s.setblocking(True)
        s.settimeout(5)
        while b"\r\n\r\n{" not in reply and b"}" not in reply.split(b"\r\n\r\n")[-1]:
            more = s.recv(4096)
            if not more:
                break
            reply += more
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b"max_upload_mb" in reply
    # The answer came while most of the body was still unsent (socket buffers hold a few MB).
    assert sent < 32 * MAX_UPLOAD_MB * 1048576, "the whole body was sent before the server answered"


def test_slow_client_is_cut_off(daemon):
    """One byte a second: answered 408 after http.timeout_s, not held open."""
    d, web, sub = daemon
    s = socket.create_connection(("127.0.0.1", web.port), timeout=2)
    t0 = time.monotonic()
    s.sendall(f"POST /api/analyze HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
              "Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n".encode())
    reply = b""
    while time.monotonic() - t0 < TIMEOUT_S + 10:
        try:
            s.sendall(b"\xff")
            reply += s.recv(4096)
            if reply:
                break
        except socket.timeout:
            continue
        except OSError:
            break
    s.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"timeout_s" in reply


def test_client_trickling_headers_is_cut_off(daemon):
    """Headers that never end: the connection is closed (aiohttp's keep-alive timer, 2 x timeout_s)."""
    d, web, sub = daemon
    s = socket.create_connection(("127.0.0.1", web.port), timeout=1)
    t0 = time.monotonic()
    s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
    closed = False
    while time.monotonic() - t0 < 4 * TIMEOUT_S + 10:
        try:
            s.sendall(b"X")
            if s.recv(4096) == b"":
                closed = True
                break
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
    s.close()
    assert closed, "a client sending endless headers was never disconnected"


def test_daemon_keeps_publishing_after_bad_inputs(daemon):
    d, web, sub = daemon
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda case: BAD_INPUTS[case][0](web), list(BAD_INPUTS)))
    assert still_publishing(d, sub), d.log()
    assert web.get_json("/healthz", auth=False)[0] == 200


# -- live -------------------------------------------------------------------------------------------
def _metric(web, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    body = web.request("GET", "/metrics", auth=False)[2].decode()
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == name:
                return s.value
    return 0.0


def test_mjpeg_encodes_only_while_watched(daemon):
    d, web, sub = daemon
    assert _metric(web, "edge_holistic_mjpeg_watchers") == 0
    before = _metric(web, "edge_holistic_mjpeg_frames_encoded_total")
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=20)
    conn.request("GET", "/stream.mjpg", headers={"Authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    frames = []
    buf = b""
    while len(frames) < 3:
        buf += r.read1(65536)
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0]
                         .split(b":")[1])
            if len(rest) < length + 2:
                break
            frames.append(rest[:length])
            buf = rest[length + 2:]
    assert _metric(web, "edge_holistic_mjpeg_watchers") == 1
    conn.close()
    img = cv2.imdecode(np.frombuffer(frames[-1], np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (300, 400, 3)
    assert wait_until(lambda: _metric(web, "edge_holistic_mjpeg_watchers") == 0, 15)
    stopped = _metric(web, "edge_holistic_mjpeg_frames_encoded_total")
    assert stopped >= before + 3
    time.sleep(1.5)
    assert _metric(web, "edge_holistic_mjpeg_frames_encoded_total") == stopped  # nobody watches: no encoding


def test_live_numbers_are_pushed(daemon):
    d, web, sub = daemon
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    events = []
    buf = b""
    while len(events) < 2:
        buf += r.read1(4096)
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            data = [ln[6:] for ln in block.split(b"\n") if ln.startswith(b"data: ")]
            events.append(json.loads(data[0]))
    conn.close()
    last = events[-1]
    assert last["fps"] > 0 and last["latency_ms"] > 0 and last["mqtt"] == "connected"
    assert last["rss_mb"] > 50 and last["models"]["pose"].startswith("pose_landmark_lite")
    assert last["person"] in (True, False) and last["state"] == "running"


# -- browser ------------------------------------------------------------------------------------------
def _chrome():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (os.path.exists(binary) and os.path.exists(driver)):
        pytest.skip("chromium / chromium-driver not installed (scripts/test.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts), profile


def test_browser_live_page_and_analyze(daemon):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d, web, sub = daemon
    browser, profile = _chrome()
    base = f"http://127.0.0.1:{web.port}"
    try:
        browser.get(base + "/")
        # A token is set: the page asks for it first.
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "token"))
        browser.find_element(By.ID, "token").send_keys(TOKEN + "\n")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "n-fps")
                                         and b.find_element(By.ID, "n-fps").text not in ("", "–", "0.0"))
        WebDriverWait(browser, 30).until(lambda b: b.execute_script(
            "const i = document.getElementById('video'); return i.complete && i.naturalWidth > 0"))
        assert browser.execute_script("return document.getElementById('video').naturalWidth") == 400
        assert browser.find_element(By.ID, "n-mqtt").text == "connected"
        WebDriverWait(browser, 10).until(lambda b: "pose_landmark_lite" in b.find_element(By.ID, "models").text)
        browser.save_screenshot(str(SCREENSHOTS / "edge_holistic_live.png"))
        # The page's pause control goes through /api/cmd to the daemon and back in the numbers.
        WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "c-pause").text == "Pause")
        browser.find_element(By.ID, "c-pause").click()
        WebDriverWait(browser, 15).until(lambda b: b.find_element(By.ID, "n-state").text == "paused")
        assert web.get_json("/api/status")[1]["state"] == "paused"
        browser.find_element(By.ID, "c-pause").click()
        WebDriverWait(browser, 15).until(lambda b: b.find_element(By.ID, "n-state").text == "running")

        browser.get(base + "/analyze")
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#a-pose option"))
        browser.find_element(By.ID, "image").send_keys(str(DATA / "images" / "COCO_val2014_000000000536.jpg"))
        browser.find_element(By.ID, "a-submit").click()
        WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.body.dataset.result"))
        WebDriverWait(browser, 10).until(lambda b: b.execute_script(
            "const i = document.getElementById('annotated'); return i.complete && i.naturalWidth > 0"))
        assert browser.execute_script("return document.body.dataset.result") == "person"
        shown = json.loads(browser.find_element(By.ID, "json").text)
        jsonschema.validate(shown, load_schema())
        assert browser.find_element(By.ID, "dl-json").get_attribute("href").startswith("blob:")
        browser.save_screenshot(str(SCREENSHOTS / "edge_holistic_analyze.png"))
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert still_publishing(d, sub), d.log()
