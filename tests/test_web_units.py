"""Web server pieces that are pure logic: the http config rules, image header checks, auth.

The real server, daemon and browser are exercised in test_web.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_holistic.config import ConfigError, is_loopback, load_config

REPO = Path(__file__).resolve().parents[1]


def _issues(text: str) -> list:
    with pytest.raises(ConfigError) as exc:
        load_config(text=text, models=False)
    return exc.value.issues


def test_http_defaults():
    h = load_config(text="", models=False).http
    assert (h.enabled, h.host, h.port, h.token_file, h.allow_anonymous) == (True, "127.0.0.1", 8080, "", False)
    assert (h.max_upload_mb, h.max_side, h.timeout_s) == (10.0, 1920, 10.0)


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                       ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                       ("::", False), ("camera.local", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_non_loopback_bind_needs_token_or_anonymous(tmp_path):
    issues = _issues("http: {host: 0.0.0.0}")
    assert issues[0].path == "http.host" and "token_file" in issues[0].message and issues[0].line == 1
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    assert load_config(text=f"http: {{host: 0.0.0.0, token_file: '{token}'}}", models=False).http.host == "0.0.0.0"
    assert load_config(text="http: {host: 0.0.0.0, allow_anonymous: true}", models=False).http.allow_anonymous
    assert load_config(text="http: {host: 0.0.0.0, enabled: false}", models=False).http.enabled is False
    issues = _issues("http: {token_file: /nonexistent/token}")
    assert issues[0].path == "http.token_file" and "not found" in issues[0].message
    issues = _issues("http: {port: 0, max_upload_mb: 0}")
    assert [i.path for i in issues] == ["http.port", "http.max_upload_mb"]


def test_check_config_refuses_open_bind_with_reason(tmp_path):
    cfg = tmp_path / "open.yaml"
    cfg.write_text("device_id: cam1\nhttp:\n  host: 0.0.0.0\n")
    r = subprocess.run([sys.executable, "-m", "edge_holistic.cli", "check-config", "--no-models", str(cfg)],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2
    assert f"{cfg}:3: http.host:" in r.stderr and "token_file" in r.stderr and "allow_anonymous" in r.stderr


# -- upload checks (edge_holistic.web.images) ------------------------------------------------
import struct  # noqa: E402
import zlib  # noqa: E402

import cv2  # noqa: E402

from edge_holistic.web.auth import authorized, bearer, read_token, TokenError, token_matches  # noqa: E402
from edge_holistic.web.images import ImageRejected, decode, probe  # noqa: E402

PHOTO = REPO / "tests" / "data" / "images" / "COCO_val2014_000000000241.jpg"


def png_claiming(width: int, height: int) -> bytes:
    """A ~200-byte PNG whose header claims width x height (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100000, 9)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp"])
def test_probe_reads_dimensions_of_every_accepted_format(ext):
    img = cv2.imread(str(PHOTO))
    data = cv2.imencode(ext, img)[1].tobytes()
    info = probe(data)
    assert (info.width, info.height) == (img.shape[1], img.shape[0])
    out, _ = decode(data, 1920)
    assert out.shape == img.shape


def test_bomb_refused_from_its_header_without_decoding():
    data = png_claiming(50000, 50000)
    assert len(data) < 1000
    with pytest.raises(ImageRejected) as e:
        decode(data, 1920)
    assert e.value.status == 413 and "50000x50000" in str(e.value)


@pytest.mark.parametrize("data,status,words", [
    (b"", 400, "empty"),
    (b"hello, not an image", 415, "JPEG, PNG"),
    (PHOTO.read_bytes()[:5000], 422, "truncated"),
    (png_claiming(1, 1), 422, "too small"),
    (b"\x89PNG\r\n\x1a\n\0\0", 422, "PNG"),
])
def test_bad_uploads_get_a_status_and_a_reason(data, status, words):
    with pytest.raises(ImageRejected) as e:
        decode(data, 1920)
    assert e.value.status == status and words in str(e.value)


def test_large_jpeg_is_scaled_down_to_max_side():
    img = cv2.resize(cv2.imread(str(PHOTO)), (4000, 3000))
    out, info = decode(cv2.imencode(".jpg", img)[1].tobytes(), 1920)
    assert (info.width, info.height) == (4000, 3000) and out.shape == (1440, 1920, 3)


def test_token_rules(tmp_path):
    assert read_token("") is None
    f = tmp_path / "token"
    f.write_text("short\n")
    with pytest.raises(TokenError, match="at least 8"):
        read_token(str(f))
    f.write_text("correct-horse-battery\nignored second line\n")
    token = read_token(str(f))
    assert token == "correct-horse-battery"
    assert bearer("Bearer abc") == "abc" and bearer("Basic abc") is None and bearer(None) is None
    assert token_matches(token, token) and not token_matches(token, token[:-1]) and not token_matches(token, None)
    assert authorized(None, "/api/cmd", None, None)
    assert authorized(token, "/healthz", None, None) and authorized(token, "/metrics", None, None)
    assert not authorized(token, "/api/cmd", None, None)
    assert not authorized(token, "/", "Bearer wrong-token", None)
    assert authorized(token, "/api/cmd", f"Bearer {token}", None)
    assert authorized(token, "/stream.mjpg", None, token)


# -- analyze scheduling (edge_holistic.web.analyze) with a stand-in engine -------------------------
import asyncio  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from edge_holistic.web import analyze as analyze_mod  # noqa: E402


class _SlowEngine:
    """Holds the model set until released: lets the test decide when a detection ends."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.closed = False

    def detect(self, rgb):
        self.gate.wait(10)
        return "result"

    def close(self):
        self.closed = True


def test_one_request_per_model_set_and_503_when_it_cannot_start(monkeypatch):
    gate = threading.Event()
    engines = []

    def fake_engine(model_set, registry, pool=None):
        engines.append(_SlowEngine(gate))
        return engines[-1]

    monkeypatch.setattr(analyze_mod, "make_image_engine", fake_engine)
    executor = ThreadPoolExecutor(2)

    async def scenario():
        a = analyze_mod.Analyzer(None, None, executor, timeout_s=0.3)
        key = ("pose", "full", "full", "float")
        first = asyncio.ensure_future(a.run(key, None))
        await asyncio.sleep(0.05)
        with pytest.raises(analyze_mod.Busy) as busy:  # same set, still taken after timeout_s
            await a.run(key, None)
        assert busy.value.retry_after >= 1
        with pytest.raises(analyze_mod.Busy, match="processing took longer"):  # the held one: abandoned
            await first
        gate.set()
        await asyncio.sleep(0.05)  # the worker finishes; only then is the set free again
        assert await a.run(key, None) == "result"  # the engine was kept
        assert len(engines) == 1
        a.release_idle(max_idle_s=0)
        assert engines[0].closed and a.loaded() == []

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        executor.shutdown()


def test_analyze_parameters_are_registry_names_only():
    installed = {"task": ["pose", "holistic"], "pose_model": ["full", "lite"], "hand_model": ["full", "lite"],
                 "precision": ["float", "int8", "auto"]}
    defaults = {"task": "pose", "pose_model": "full", "hand_model": "full", "precision": "auto"}
    key, draw = analyze_mod.validate_params({"pose_model": "lite", "draw": "1"}, installed, defaults)
    assert key == ("pose", "lite", "full", "auto") and draw == "image"
    for params, word in (({"pose_model": "heavy"}, "pose_model"), ({"pose_model": "/etc/passwd"}, "pose_model"),
                         ({"task": "segmentation"}, "task"), ({"draw": "maybe"}, "draw"), ({"model": "x"}, "model")):
        with pytest.raises(analyze_mod.BadParameter, match=word):
            analyze_mod.validate_params(params, installed, defaults)


# -- no token on loopback: nothing needs one (real server, stand-in daemon view) -------------------
class _StubView:
    registry = None
    pool = None

    def status(self):
        return {"state": "running", "models": {}, "task": "pose"}

    def stats(self):
        return {"frames": {}, "mqtt": None}

    def latest(self):
        return None

    def health(self):
        return False, "no frame processed for 61 s"

    def command(self, cmd, origin, timeout=5.0):
        return {"id": None, "cmd": cmd.get("cmd"), "ok": True, "origin": origin}

    def add_frame_tap(self, fn):
        return lambda: None

    def memory_level(self):
        return "ok"

    def installed_variants(self):
        return {"task": ["pose"], "pose_model": ["full"], "hand_model": ["full"], "precision": ["float"]}


def test_without_token_nothing_needs_one_and_healthz_reports_the_reason():
    import http.client
    import socket as socket_mod

    from edge_holistic.web import start_web

    with socket_mod.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(text=f"http: {{port: {port}}}", models=False).http
    server = start_web(_StubView(), cfg, {"task": "pose", "pose_model": "full", "hand_model": "full",
                                          "precision": "float"})
    try:
        def get(path, method="GET", body=None, headers=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            out = r.status, r.read()
            conn.close()
            return out

        assert get("/")[0] == 200 and get("/analyze")[0] == 200 and get("/api/status")[0] == 200
        assert get("/api/cmd", "POST", b'{"cmd": "pause"}', {"Content-Type": "application/json"})[0] == 200
        status, body = get("/healthz")
        assert status == 503 and json.loads(body)["reason"] == "no frame processed for 61 s"
        status, body = get("/api/latest")
        assert status == 404 and "no frame" in json.loads(body)["error"]
        status, body = get("/nowhere")
        assert status == 404 and json.loads(body)["status"] == 404
        assert get("/stream.mjpg", "HEAD")[0] == 405  # an endless body has no HEAD
    finally:
        server.stop()
