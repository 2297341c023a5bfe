"""Web server pieces that are pure logic: the http config rules, image header checks, auth.

The real server, daemon and browser are exercised in test_web.py.
"""
from __future__ import annotations

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
