"""The A/B shadow runner with real models on the committed clip, and its settings rules.

Real engines, real pool; the primary is an Engine in video mode whose results are offered
the way the daemon's frame tap offers them. About 25 s in all.
"""
from __future__ import annotations

import jsonschema
import pytest

from edge_holistic.pipeline import Engine, EngineOptions, RunningMode
from conftest import assert_identical_sides
from edge_holistic.pipeline.agreement import load_schema
from edge_holistic.pipeline.shadow import (
    RUN, WARMUP, ShadowRunner, ShadowSettings, promote_plan, validate_shadow,
)
from edge_holistic.runtime.pool import ModelPool

FPS = 30.0


@pytest.fixture(scope="module")
def primary_results(registry, clip_frames):
    """The primary (holistic, full, float) over the first 40 clip frames, as the daemon would have it."""
    pool = ModelPool(registry)
    opts = EngineOptions(running_mode=RunningMode.VIDEO, task="holistic", precision="float", threads=2)
    with Engine(opts, pool=pool) as engine:
        results = [engine.detect_for_video(f, i / FPS) for i, f in enumerate(clip_frames[:40])]
        options = engine.effective_options
    return pool, options, results


def _feed(runner: ShadowRunner, frames, results) -> None:
    for i, (f, r) in enumerate(zip(frames, results)):
        runner.offer(f, r, i / FPS)
        assert runner.flush(30)  # the test waits so nothing is dropped; the daemon never does


def test_identical_candidate_agrees_exactly(primary_results, clip_frames):
    pool, options, results = primary_results
    s = ShadowSettings(enabled=True, pose_model="full", hand_model="full", precision="float", every=1,
                       max_cpu_percent=0)
    runner = ShadowRunner(s, options, pool)
    try:
        _feed(runner, clip_frames, results)
        doc = runner.summary()
    finally:
        runner.close()
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert doc["counters"]["compared"] == 40 and doc["counters"]["dropped"] == 0
    assert doc["every"] == 1 and doc["a"]["models"] == doc["b"]["models"]
    assert_identical_sides(doc)
    # the candidate's interpreters were its own (own slots) and are gone after close
    assert not [k for k, _, _ in pool.loaded() if k[4].startswith("shadow")]


def test_lite_int8_candidate_sampled_in_runs(primary_results, clip_frames):
    pool, options, results = primary_results
    s = ShadowSettings(enabled=True, pose_model="lite", hand_model="lite", precision="int8", every=2,
                       max_cpu_percent=0)
    runner = ShadowRunner(s, options, pool)
    try:
        assert {k[4] for k, _, _ in pool.loaded() if k[4].startswith("shadow")}  # loaded when enabled
        _feed(runner, clip_frames, results)
        doc = runner.summary()
    finally:
        runner.close()
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    runs = 40 // (RUN * 2)
    c = doc["counters"]
    assert c["offered"] == runs * RUN and c["warmup"] == runs * WARMUP
    assert c["compared"] == runs * (RUN - WARMUP) == doc["frames"]
    assert doc["b"]["models"]["pose"].startswith("pose_landmark_lite") and doc["b"]["models"]["pose"].endswith("int8")
    pose = doc["parts"]["pose"]
    assert pose["compared"] >= 8 and 0.05 < pose["median_pct"] < 5.0, pose


def test_update_disables_and_releases_models(primary_results, clip_frames):
    pool, options, results = primary_results
    runner = ShadowRunner(ShadowSettings(enabled=True, every=1, max_cpu_percent=0), options, pool)
    try:
        assert [k for k, _, _ in pool.loaded() if k[4].startswith("shadow")]
        runner.update(ShadowSettings(enabled=False))
        assert runner.summary() is None
        assert not [k for k, _, _ in pool.loaded() if k[4].startswith("shadow")]  # released when disabled
        runner.offer(clip_frames[0], results[0], 0.0)  # ignored while disabled
        runner.update(ShadowSettings(enabled=True, pose_model="full", every=1, max_cpu_percent=0))
        _feed(runner, clip_frames[:3], results[:3])
        assert runner.summary()["counters"]["compared"] == 3
    finally:
        runner.close()


def test_cpu_ceiling_skips_whole_runs(primary_results, clip_frames):
    pool, options, results = primary_results
    runner = ShadowRunner(ShadowSettings(enabled=True, every=1, max_cpu_percent=50), options, pool,
                          cpu_percent=lambda: 75.0)
    try:
        _feed(runner, clip_frames[:10], results[:10])
        c = runner.summary()["counters"]
    finally:
        runner.close()
    assert c["offered"] == 10 and c["skipped_cpu"] == 10 and c["compared"] == 0


def test_promote_twice_returns_to_the_start(primary_results):
    _, options, _ = primary_results
    shadow = ShadowSettings(enabled=True, pose_model="lite", hand_model="lite", precision="int8")
    to_primary, shadow2 = promote_plan(options, shadow)
    assert to_primary == {"pose_model": "lite", "hand_model": "lite", "precision": "int8"}
    assert (shadow2.pose_model, shadow2.hand_model, shadow2.precision) == ("full", "full", "float")
    promoted = EngineOptions(**{**{k: getattr(options, k) for k in ("task", "threads")}, **to_primary})
    back, shadow3 = promote_plan(promoted, shadow2)
    assert back == {"pose_model": "full", "hand_model": "full", "precision": "float"}
    assert shadow3 == shadow
    with pytest.raises(ValueError, match="enabled shadow"):
        promote_plan(options, ShadowSettings(enabled=False))


@pytest.mark.parametrize("changes,key", [
    ({"every": 0}, "shadow.every"),
    ({"every": 2.5}, "shadow.every"),
    ({"every": True}, "shadow.every"),
    ({"max_cpu_percent": 101}, "shadow.max_cpu_percent"),
    ({"enabled": "yes"}, "shadow.enabled"),
    ({"precision": "int4"}, "shadow.precision"),
    ({"pose_model": "tiny"}, "shadow.pose_model"),
    ({"hand_model": "heavy"}, "shadow.hand_model"),
    ({"colour": "red"}, "shadow.colour"),
])
def test_bad_shadow_setting_names_the_key(registry, changes, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate_shadow(changes, registry=registry)


def test_good_shadow_settings(registry):
    s = validate_shadow({"enabled": True, "every": 5, "max_cpu_percent": 60, "pose_model": "full"},
                        registry=registry)
    assert s == ShadowSettings(enabled=True, pose_model="full", every=5, max_cpu_percent=60.0)
