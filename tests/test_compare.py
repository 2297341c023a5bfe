"""``edge-holistic compare``: the real console entry point, real models, the committed clip.

About 15 s in all (three short subprocess runs on 30-40 clip frames).
"""
from __future__ import annotations

import argparse
import json

import jsonschema
import pytest

from conftest import CLIP, IMAGES, assert_identical_sides, run_cli
from edge_holistic.compare import parse_side
from edge_holistic.pipeline.agreement import SUMMARY_KEYS, load_schema


def _one_json_line(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line, got {len(lines)}: {stdout[:500]!r}"
    return json.loads(lines[0])


def _compare_clip(b: str) -> dict:
    """``compare --json`` of full@float against ``b`` on the clip's first 40 frames, schema-checked."""
    proc = run_cli("compare", "--source", str(CLIP), "--task", "holistic", "--a", "full@float", "--b", b,
                   "--frames", "40", "--warmup", "1", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = _one_json_line(proc.stdout)
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    return doc


def test_identical_sides_agree_exactly_and_json_matches_schema():
    doc = _compare_clip("full@float")
    assert tuple(doc) == SUMMARY_KEYS
    assert doc["frames"] == 40 and doc["every"] == 1 and doc["task"] == "holistic"
    assert doc["a"]["models"] == doc["b"]["models"] and doc["a"]["models"]["hand"].startswith("hand_landmark_full")
    assert_identical_sides(doc)
    assert doc["fps"]["a"] > 0 and doc["fps"]["b"] > 0
    assert 0 < doc["latency_ms"]["a"]["p50"] <= doc["latency_ms"]["a"]["p95"]


def test_full_vs_lite_differs_within_a_sane_range():
    doc = _compare_clip("lite@float")
    assert doc["b"]["models"]["pose"].startswith("pose_landmark_lite")
    assert doc["b"]["models"]["hand"].startswith("hand_landmark_lite")
    for part in ("pose", "left_hand"):  # different landmark models: never identical, never far off
        p = doc["parts"][part]
        assert p["compared"] >= 35, (part, p)
        assert 0.1 < p["median_pct"] < 5.0, (part, p)  # measured: pose 1.1 %, left hand 1.6 %
        assert p["median_pct"] <= p["p90_pct"] < 25.0, (part, p)
        assert p["agreement"] >= 0.9, (part, p)


def test_table_output_and_bad_side_spec():
    proc = run_cli("compare", "--source", str(CLIP), "--a", "lite@float", "--b", "lite@int8", "--frames", "30",
                   "--warmup", "0", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "A = lite@float   B = lite@int8   task pose   frames 30" in proc.stdout
    assert "pose" in proc.stdout and "fps: A" in proc.stdout
    bad = run_cli("compare", "--source", str(CLIP), "--b", "lite@int4")
    assert bad.returncode == 2 and "unknown precision 'int4'" in bad.stderr
    bad = run_cli("compare", "--source", str(CLIP), "--b", "tiny@float", "--frames", "2")
    assert bad.returncode == 2 and "unknown pose_model 'tiny'" in bad.stderr


def test_static_photo_folder():
    proc = run_cli("compare", "--source", str(IMAGES), "--static", "--a", "lite@float", "--b", "lite@int8",
                   "--frames", "3", "--warmup", "0", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = _one_json_line(proc.stdout)
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert doc["frames"] == 3 and doc["task"] == "pose" and doc["parts"]["pose"]["found"]["a"] >= 2


@pytest.mark.parametrize("text,expected", [
    ("full@float", ("full", "full", "float")),
    ("lite@int8", ("lite", "lite", "int8")),
    ("heavy", ("heavy", "full", "float")),
    ("full/lite@int8", ("full", "lite", "int8")),
])
def test_parse_side(text, expected):
    s = parse_side(text)
    assert (s.pose_model, s.hand_model, s.precision) == expected


@pytest.mark.parametrize("text", ["", "@int8", "full/@int8", "full@", "full@int4"])
def test_parse_side_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_side(text)
