"""The `edge-holistic` verbs: `analyze` and `models` run as real subprocesses, the shared flags in-process."""
from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import IMAGES, run_cli
from edge_holistic.message import load_schema


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(load_schema())


def test_analyze_prints_one_valid_message_per_image(tmp_path, validator):
    imgs = [str(IMAGES / "COCO_val2014_000000000536.jpg"), str(IMAGES / "no_person_kitchen.jpg")]
    p = run_cli("analyze", *imgs, "--task", "pose", "--pose-model", "lite", "--draw", str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 2
    msgs = [json.loads(line) for line in lines]
    for m, src in zip(msgs, imgs):
        validator.validate(m)
        assert m["source"] == src
    assert len(msgs[0]["pose"]["landmarks"]) == 33 and msgs[0]["face"] is None
    assert msgs[0]["models"]["pose"] == "pose_landmark_lite_nomask@float16"
    assert msgs[1]["pose"] is None
    drawn = sorted(f.name for f in (tmp_path / "out").iterdir())
    assert drawn == ["COCO_val2014_000000000536.png", "no_person_kitchen.png"]


def test_analyze_bad_files_are_reported_and_the_rest_processed(tmp_path, validator):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((IMAGES / "COCO_val2014_000000000536.jpg").read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good = str(IMAGES / "COCO_val2014_000000000536.jpg")
    p = run_cli("analyze", str(empty), good, str(corrupt), str(tmp_path / "missing.jpg"), str(text), "--pose-model", "lite")
    assert p.returncode == 1
    assert len(p.stdout.strip().splitlines()) == 1
    validator.validate(json.loads(p.stdout))
    err = p.stderr
    assert f"{empty}: empty file" in err
    assert f"{corrupt}: not a readable image" in err
    assert f"{tmp_path / 'missing.jpg'}: No such file or directory" in err
    assert f"{text}: not a readable image" in err
    assert "4 of 5 file(s) failed" in err


def test_analyze_unknown_model_is_a_usage_error():
    p = run_cli("analyze", str(IMAGES / "COCO_val2014_000000000536.jpg"), "--pose-model", "huge")
    assert p.returncode == 2
    assert "unknown pose_landmark variant 'huge'" in p.stderr and p.stdout == ""


def test_analyze_bad_threads_value():
    p = run_cli("analyze", str(IMAGES / "COCO_val2014_000000000536.jpg"), "--threads", "zero")
    assert p.returncode == 2 and "--threads" in p.stderr


def test_models_list_and_verify():
    p = run_cli("models", "list", "--json")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    names = {r["name"] for r in rows}
    assert {"pose_landmark_full@float16", "pose_landmark_lite@float16", "pose_detection@float16"} <= names
    assert all(r["state"] == "ok" for r in rows)
    v = run_cli("models", "verify")
    assert v.returncode == 0 and "0 failed" in v.stdout


def test_run_and_ha_remove_read_the_same_config_and_connection_flags(tmp_path, monkeypatch):
    """ha-remove must reach the broker and device the daemon uses: same flags, same key paths, same file."""
    from edge_holistic.cli import build_parser
    from edge_holistic.config.flags import connection_overrides, default_config_path
    from edge_holistic.daemon import cli_overrides

    flags = ["--mqtt-host", "broker.lan", "--mqtt-port", "8883", "--device-id", "cam9"]
    want = {"mqtt.host": ("broker.lan", "--mqtt-host"), "mqtt.port": (8883, "--mqtt-port"),
            "device_id": ("cam9", "--device-id")}
    parser = build_parser()
    assert cli_overrides(parser.parse_args(["run", *flags])) == want
    assert connection_overrides(parser.parse_args(["ha-remove", *flags])) == want
    assert connection_overrides(parser.parse_args(["ha-remove"])) == {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGE_HOLISTIC_CONFIG", raising=False)
    assert default_config_path() in ("/etc/edge-holistic/config.yaml", "config.yaml")
    monkeypatch.setenv("EDGE_HOLISTIC_CONFIG", str(tmp_path / "mine.yaml"))
    assert default_config_path() == str(tmp_path / "mine.yaml")
