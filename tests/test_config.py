"""Config loading: every error names the key path, the line and the reason."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_holistic.config import ConfigError, PASSWORD_ENV, load_config, public_dict

REPO = Path(__file__).resolve().parents[1]


def _issues(text: str, **kw) -> list:
    with pytest.raises(ConfigError) as exc:
        load_config(text=text, **kw)
    return exc.value.issues


def test_repo_config_is_valid_and_documents_every_key():
    cfg = load_config(str(REPO / "config.yaml"))
    assert cfg.source.type == "v4l2" and cfg.source.device == "/dev/video0"
    assert cfg.topic_base == "edge_holistic/" + cfg.device_id
    # Every key of every section appears in the example (it is the documentation).
    text = (REPO / "config.yaml").read_text()
    for section, values in public_dict(cfg).items():
        if isinstance(values, dict):
            for key in values:
                assert f"{key}:" in text, f"config.yaml does not document {section}.{key}"


def test_empty_file_gives_defaults():
    cfg = load_config(text="", models=False)
    assert cfg.mqtt.port == 1883 and cfg.mqtt.qos == 0 and cfg.pipeline.task == "pose"
    assert cfg.client_id == "edge-holistic-edge-holistic"


def test_unknown_key_names_path_and_line():
    issues = _issues("device_id: cam0\nmqtt:\n  host: h\n  prot: 1884\n", models=False)
    assert len(issues) == 1
    assert issues[0].path == "mqtt.prot" and issues[0].line == 4
    assert "unknown key" in issues[0].message and "port" in issues[0].message


def test_every_error_is_reported_with_its_line():
    text = ("device_id: 'bad/id'\n"          # 1
            "source:\n"                      # 2
            "  type: v4l3\n"                 # 3
            "pipeline:\n"                    # 4
            "  threads: zero\n"              # 5
            "  min_detection_confidence: 2\n"  # 6
            "mqtt:\n"                        # 7
            "  port: 70000\n"                # 8
            "  qos: true\n"                  # 9
            "  tls:\n"                       # 10
            "    enabled: maybe\n")          # 11
    issues = {i.path: i for i in _issues(text, models=False)}
    assert set(issues) == {"device_id", "source.type", "pipeline.threads", "pipeline.min_detection_confidence",
                           "mqtt.port", "mqtt.qos", "mqtt.tls.enabled"}
    assert issues["mqtt.port"].line == 8 and "65535" in issues["mqtt.port"].message
    assert issues["mqtt.tls.enabled"].line == 11
    assert issues["mqtt.qos"].line == 9 and "integer" in issues["mqtt.qos"].message
    assert "v4l2" in issues["source.type"].message
    assert str(issues["mqtt.port"]).startswith("<config>:8: mqtt.port:")


def test_yaml_syntax_error_has_line():
    issues = _issues("mqtt:\n  port: [1,\n", models=False)
    assert issues[0].line is not None and "YAML" in issues[0].message


def test_duplicate_key_is_an_error():
    issues = _issues("mqtt:\n  port: 1\n  port: 2\n", models=False)
    assert issues[0].path == "mqtt.port" and issues[0].line == 3 and "duplicate" in issues[0].message


def test_section_must_be_a_mapping():
    issues = _issues("mqtt: localhost\n", models=False)
    assert issues[0].path == "mqtt" and "mapping" in issues[0].message


def test_protocol_accepts_yaml_number_5_and_string():
    assert load_config(text="mqtt: {protocol: 5}", models=False).mqtt.protocol == "5"
    assert load_config(text="mqtt: {protocol: '3.1.1'}", models=False).mqtt.protocol == "3.1.1"
    assert _issues("mqtt: {protocol: 4}", models=False)[0].path == "mqtt.protocol"


def test_threads_int_or_auto():
    assert load_config(text="pipeline: {threads: 3}", models=False).pipeline.threads == 3
    assert load_config(text="pipeline: {threads: auto}", models=False).pipeline.threads == "auto"
    assert _issues("pipeline: {threads: 0}", models=False)[0].path == "pipeline.threads"


def test_model_names_checked_against_registry():
    issues = _issues("pipeline: {pose_model: heavy}")
    assert issues[0].path == "pipeline.pose_model"
    assert "lite" in issues[0].message and "full" in issues[0].message  # lists what is installed
    issues = _issues("pipeline: {task: holistic, hand_model: huge}")
    assert issues[0].path == "pipeline.hand_model"


def test_cross_field_rules():
    issues = _issues("source: {type: file}", models=False)
    assert issues[0].path == "source.path" and "required" in issues[0].message
    issues = _issues("source: {type: file, path: /nonexistent/clip.avi}", models=False)
    assert "not found" in issues[0].message
    issues = _issues("health: {memory_soft_mb: 500, memory_hard_mb: 400}", models=False)
    assert issues[0].path == "health.memory_soft_mb"


def test_overrides_are_validated_and_name_the_flag():
    cfg = load_config(text="", models=False, overrides={"mqtt.port": (1884, "--mqtt-port"),
                                                       "device_id": ("cam9", "--device-id")})
    assert cfg.mqtt.port == 1884 and cfg.device_id == "cam9"
    issues = _issues("", models=False, overrides={"device_id": ("a b", "--device-id")})
    assert issues[0].path == "device_id" and issues[0].origin == "--device-id"


def test_password_from_file_and_env_never_in_public_dict(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("s3cret-from-file\n")
    text = f"mqtt: {{username: u, password_file: '{pw}'}}"
    cfg = load_config(text=text, models=False)
    assert cfg.mqtt_password == "s3cret-from-file"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(public_dict(cfg))
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert load_config(text=text, models=False).mqtt_password == "from-env"
    issues = _issues("mqtt: {username: u, password_file: /nonexistent/pw}", models=False)
    assert issues[0].path == "mqtt.password_file"


def test_config_hash_changes_with_content():
    a = load_config(text="device_id: a", models=False).digest
    assert a == load_config(text="device_id: a\n# comment", models=False).digest
    assert a != load_config(text="device_id: b", models=False).digest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_holistic.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_check_config_verb(tmp_path):
    ok = _cli("check-config", str(REPO / "config.yaml"))
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  port: nope\npipeline:\n  pose_model: heavy\n")
    r = _cli("check-config", str(bad))
    assert r.returncode == 2
    assert f"{bad}:2: mqtt.port:" in r.stderr and "integer" in r.stderr
    assert f"{bad}:4: pipeline.pose_model:" in r.stderr
    missing = _cli("check-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_daemon_doc_config_table_is_generated_from_the_schema():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_config_docs.py")], capture_output=True,
                         text=True, check=True, timeout=60).stdout.strip()
    assert out in (REPO / "docs" / "daemon.md").read_text(), \
        "docs/daemon.md config table is stale: paste the output of scripts/gen_config_docs.py"
