"""Model registry and interpreter pool: checksums, clear errors, lazy loading, release."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_holistic.runtime import ModelError, Registry, auto_threads, resolve_precision
from edge_holistic.runtime.pool import ModelPool

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def models_copy(tmp_path):
    """A private copy of the manifest and two model files, to break on purpose."""
    src = REPO / "models"
    shutil.copy(src / "manifest.yaml", tmp_path / "manifest.yaml")
    for f in ("pose_detection.tflite", "pose_landmark_lite.tflite"):
        shutil.copy(src / f, tmp_path / f)
    return tmp_path


def test_every_manifest_checksum_matches(registry):
    results = registry.verify_all()
    assert results, "manifest lists no models"
    bad = [(s.name, e) for s, e in results if e]
    assert not bad, bad


def test_missing_model_names_file_and_expected_hash(models_copy):
    reg = Registry(models_copy)
    spec = reg.spec("pose_landmark", "full", "float16")
    with pytest.raises(ModelError) as e:
        reg.open(spec)
    msg = str(e.value)
    assert "missing" in msg and "pose_landmark_full.tflite" in msg and spec.sha256 in msg


def test_altered_model_is_refused(models_copy):
    f = models_copy / "pose_landmark_lite.tflite"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    reg = Registry(models_copy)
    with pytest.raises(ModelError, match="altered.*pose_landmark_lite.tflite"):
        reg.open(reg.spec("pose_landmark", "lite", "float16"))
    # The untouched file next to it still loads.
    assert reg.open(reg.spec("pose_detector", "default", "float16")).input_shape == (1, 224, 224, 3)


def test_missing_manifest(tmp_path):
    with pytest.raises(ModelError, match="manifest not found"):
        Registry(tmp_path)


def test_unknown_names_list_the_valid_ones(registry):
    with pytest.raises(ModelError, match=r"unknown pose_landmark variant '../../etc/passwd'; valid: .*full.*lite"):
        registry.spec("pose_landmark", "../../etc/passwd", "float16")
    with pytest.raises(ModelError, match="unknown model role"):
        registry.spec("palm", "default", "float16")
    with pytest.raises(ModelError, match="unknown precision"):
        resolve_precision("fp4")


def test_precision_and_thread_rules():
    assert resolve_precision("auto", "aarch64") == "int8"
    assert resolve_precision("auto", "armv7l") == "int8"
    assert resolve_precision("auto", "x86_64") == "float16"
    assert resolve_precision("float") == "float16"
    assert auto_threads(4) == 3 and auto_threads(2) == 2 and auto_threads(1) == 1 and auto_threads(12) == 4


def test_pool_loads_once_under_concurrent_requests(registry):
    pool = ModelPool(registry)
    got = []
    barrier = threading.Barrier(4)

    def ask():
        barrier.wait()
        got.append(pool.get("pose_landmark", "lite", "float16", 1))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.loads == 1 and len({id(m) for m in got}) == 1


def test_pool_releases_idle_but_never_in_use(registry):
    pool = ModelPool(registry, idle_release_s=0.0)
    keep = pool.get("pose_detector", "default", "float16", 1)
    pool.get("pose_landmark", "lite", "float16", 1)
    pool.retain([id(keep)])
    dropped = pool.release_idle()
    assert dropped == ["pose_landmark_lite@float16"]
    assert [name for _, name, _ in pool.loaded()] == ["pose_detection@float16"]
    # Reloading after release gives the same numbers.
    x = np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)
    m1 = pool.get("pose_landmark", "lite", "float16", 1)
    idx = m1.output_index_by_size([195])
    a = m1.run(x, idx)[0]
    pool.retain([id(keep)])
    pool.release_idle()
    m2 = pool.get("pose_landmark", "lite", "float16", 1)
    assert m2 is not m1
    np.testing.assert_array_equal(a, m2.run(x, idx)[0])


def test_pool_drop_namespace_releases_only_that_namespace_now(registry):
    """The A/B shadow disabled: its interpreters (namespace "shadow1") leave at once; the
    primary's, and anything another owner still uses, stay."""
    pool = ModelPool(registry, idle_release_s=3600.0)
    main = pool.get("pose_landmark", "lite", "float16", 1)
    mine = pool.get("pose_landmark", "lite", "float16", 1, "shadow1/main")
    kept = pool.get("pose_detector", "default", "float16", 1, "shadow1/main")
    assert mine is not main
    pool.retain([id(main)], owner="primary")
    pool.retain([id(kept)], owner="other")
    assert pool.drop_namespace("shadow1") == ["pose_landmark_lite@float16"]
    assert sorted(key[4] for key, _, _ in pool.loaded()) == ["main", "shadow1/main"]
    assert pool.drop_namespace("shadow2") == []
