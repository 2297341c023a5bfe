"""Pure-logic checks behind the fault suite: config refusals, the clear-text warning, TLS errors.

Run time: < 1 s.
"""
from __future__ import annotations

import logging

import pytest

from edge_holistic.config import ConfigError, load_config

BASE = "source: {type: v4l2}\n"


@pytest.mark.parametrize("line, key", [
    ('mqtt: {topic_prefix: "$SYS/edge"}', "mqtt.topic_prefix"),
    ('mqtt: {topic_prefix: "home/+/edge"}', "mqtt.topic_prefix"),
    ('mqtt: {topic_prefix: "home/#"}', "mqtt.topic_prefix"),
    ('mqtt: {topic_prefix: "home\\0edge"}', "mqtt.topic_prefix"),
    ('mqtt: {topic_prefix: "/home"}', "mqtt.topic_prefix"),
    ('mqtt: {topic_prefix: "home/"}', "mqtt.topic_prefix"),
    ('mqtt: {topic_prefix: "home\\n"}', "mqtt.topic_prefix"),
    ('device_id: "$cam"', "device_id"),
    ('device_id: "cam+1"', "device_id"),
    ('device_id: "cam#"', "device_id"),
    ('device_id: "cam\\0"', "device_id"),
    ('device_id: "cam0\\n"', "device_id"),
])
def test_topic_levels_refuse_wildcards_dollar_and_nul(line, key):
    with pytest.raises(ConfigError) as exc:
        load_config(text=BASE + line)
    text = str(exc.value)
    assert key in text and "invalid value" in text, text


def test_valid_topic_prefix_and_device_id_pass():
    cfg = load_config(text=BASE + 'device_id: cam-0.a\nmqtt: {topic_prefix: "home/edge_holistic"}')
    assert cfg.topic_base == "home/edge_holistic/cam-0.a"


def _session(text, password=None):
    from edge_holistic.publish.mqtt import MqttSession

    cfg = load_config(text=BASE + text)
    cfg.mqtt_password = password
    return MqttSession(cfg, status_provider=dict, on_command=lambda payload: None)


def test_credentials_without_tls_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="edge_holistic.mqtt"):
        _session("mqtt: {username: alice}", password="secret")
    msgs = [r.getMessage() for r in caplog.records]
    assert any("clear text" in m and "alice" in m for m in msgs), msgs
    assert not any("secret" in m for m in msgs)


def test_no_warning_without_credentials(caplog):
    with caplog.at_level(logging.WARNING, logger="edge_holistic.mqtt"):
        _session("mqtt: {host: localhost}")
    assert not [r for r in caplog.records if "clear text" in r.getMessage()]


def test_malformed_tls_file_is_a_config_error_naming_the_key(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=r"mqtt\.tls\.ca_certs="):
        _session(f"mqtt: {{tls: {{enabled: true, ca_certs: '{ca}'}}}}")


def test_unsent_budget_sizes_the_socket_buffer():
    s = _session("mqtt: {max_unsent_kb: 64}")
    assert s.stats_dict()["unsent_limit_bytes"] == 64 * 1024
    assert s.unsent_bytes == 0
