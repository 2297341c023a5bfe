"""The bench verb end to end: the real console entry point on the committed clip.

Speed itself is never asserted (it depends on the machine and its load); these tests
pin the output contract that scripts and users parse, and the error paths.
"""
from __future__ import annotations

import json

import pytest

from conftest import CLIP, IMAGES, run_cli

KEYS = {"fps", "frames", "latency_ms", "stages_ms", "rss_mb", "task", "models"}


def _one_json_line(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line, got {len(lines)}: {stdout[:500]!r}"
    return json.loads(lines[0])


@pytest.mark.parametrize("task", ["pose", "holistic"])
def test_json_line_shape(task):
    proc = run_cli("bench", "--source", str(CLIP), "--task", task, "--frames", "10", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = _one_json_line(proc.stdout)
    assert set(doc) == KEYS
    assert isinstance(doc["fps"], float) and doc["fps"] > 0
    assert doc["frames"] == 10
    assert set(doc["latency_ms"]) == {"p50", "p95"}
    assert 0 < doc["latency_ms"]["p50"] <= doc["latency_ms"]["p95"]
    assert doc["task"] == task
    assert isinstance(doc["rss_mb"], float) and doc["rss_mb"] > 10
    assert "pose_landmarks" in doc["stages_ms"]
    for stage, v in doc["stages_ms"].items():
        assert set(v) == {"p50", "p95"} and 0 <= v["p50"] <= v["p95"], stage
    assert doc["models"]["pose"].startswith("pose_landmark_full")
    if task == "holistic":
        assert {"face", "face_detector", "hand", "hand_recrop"} <= set(doc["models"])
        assert {"face_detect", "left_recrop", "right_recrop"} & set(doc["stages_ms"])
    else:
        assert "face" not in doc["models"]


def test_live_mode_goes_through_submit_and_keeps_every_frame():
    proc = run_cli("bench", "--source", str(CLIP), "--task", "holistic", "--frames", "8", "--warmup", "2",
                   "--mode", "live", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = _one_json_line(proc.stdout)
    assert set(doc) == KEYS and doc["frames"] == 8 and doc["fps"] > 0
    assert {"face", "hand"} <= set(doc["models"]) and "pose_landmarks" in doc["stages_ms"]


def test_threads_sweep_prints_one_line_per_setting():
    proc = run_cli("bench", "--source", str(CLIP), "--frames", "4", "--warmup", "1", "--threads-sweep", "1,2",
                   "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2 and all(set(d) == KEYS and d["frames"] == 4 for d in lines)


def test_image_folder_table_output():
    proc = run_cli("bench", "--source", str(IMAGES), "--frames", "3", "--warmup", "0", "--schedule", "sequential", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "fps" in proc.stdout and "pose_landmarks" in proc.stdout and "peak RSS" in proc.stdout


def test_missing_source_is_a_clear_error(tmp_path):
    proc = run_cli("bench", "--source", str(tmp_path / "nope.avi"), "--json")
    assert proc.returncode == 2
    assert "nope.avi: no such file or directory" in proc.stderr and proc.stdout == ""


def test_unreadable_sources_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video" * 100)
    proc = run_cli("bench", "--source", str(junk))
    assert proc.returncode == 2 and "junk.avi" in proc.stderr and "video" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("bench", "--source", str(empty))
    assert proc.returncode == 2 and "holds no images" in proc.stderr


def test_bad_frames_value_is_a_usage_error():
    proc = run_cli("bench", "--source", str(CLIP), "--frames", "0")
    assert proc.returncode == 2 and "--frames" in proc.stderr
