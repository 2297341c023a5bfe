"""Shared fixtures: the real models, the committed images, one pipeline per configuration, a broker per module."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
IMAGES = DATA / "images"
CLIP = DATA / "clip.avi"

# Keep LiteRT's one-line INFO banner out of captured output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Only the bundled models: a user models directory on the test machine must not change results.
os.environ["EDGE_HOLISTIC_MODELS_DIR"] = tempfile.mkdtemp(prefix="edge-holistic-test-user-models-")


def load_rgb(name: str) -> np.ndarray:
    bgr = cv2.imread(str(IMAGES / name))
    assert bgr is not None, f"test image {name} missing"
    return np.ascontiguousarray(bgr[:, :, ::-1])


def clip_frames_rgb(path: Path = CLIP):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    cap.release()
    assert frames, f"could not decode {path}"
    return frames


@pytest.fixture(scope="session")
def registry():
    from edge_holistic.runtime import Registry

    return Registry()


@pytest.fixture(scope="session")
def make_pipeline(registry):
    """Factory returning a fresh Engine (``EngineOptions`` keywords, default video mode);
    models are shared through one pool per session unless ``own_pool``."""
    import weakref

    from edge_holistic.pipeline import Engine, EngineOptions
    from edge_holistic.runtime.pool import ModelPool

    pool = ModelPool(registry)
    made = weakref.WeakSet()

    def make(own_pool: bool = False, **kw):
        e = Engine(EngineOptions(**kw), registry=registry, pool=ModelPool(registry) if own_pool else pool)
        made.add(e)
        return e

    yield make
    for e in list(made):
        e.close()


def take_all(grabber, pause: float = 0.0) -> list:
    """The seq of every frame ``grabber`` hands out until none comes within 5 s (a finite source has
    ended); ``pause`` after each frame plays a consumer slower than the source."""
    seqs = []
    while True:
        f = grabber.get(timeout=5)
        if f is None:
            return seqs
        seqs.append(f.seq)
        if pause:
            time.sleep(pause)


@pytest.fixture(scope="session")
def clip_frames():
    return clip_frames_rgb()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """One mosquitto per test module, for the modules whose daemons can share it (each under its own
    device id); a test that stops or restarts its broker makes its own ``mqtt_fixtures.Broker``."""
    from mqtt_fixtures import Broker

    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.close()


def run_cli(*args: str, timeout: float = 120.0, **kw) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "edge_holistic.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=kw.pop("cwd", REPO), **kw)


# The CI soak (tests/test_faults_soak.py) takes two minutes of wall time but little CPU of its
# own beyond one daemon: start it as soon as the tests are known so it overlaps the rest.
def assert_identical_sides(doc: dict, in_view=("pose", "face", "left_hand"), min_compared: int = 35) -> None:
    """A shadow@1 summary (``compare --json``, the shadow runner) of two identical model sets on
    the clip's first frames: every part agrees exactly and is found alike, and the parts in view
    (clip frames 0-39: person, face, left hand; tests/data/SOURCES.md) were compared at zero distance."""
    from edge_holistic.pipeline.agreement import PARTS

    for part in PARTS:
        p = doc["parts"][part]
        assert p["agreement"] == 1.0, part
        assert p["flips"] == {"lost": 0, "extra": 0}, part
        assert p["found"]["a"] == p["found"]["b"], part
    for part in in_view:
        p = doc["parts"][part]
        assert p["compared"] >= min_compared, (part, p)
        assert p["median_pct"] == 0.0 and p["p90_pct"] == 0.0, (part, p)


SOAK_TEST = "test_faults_soak.py::test_soak_two_minutes"


def pytest_collection_finish(session):
    if any(item.nodeid.endswith(SOAK_TEST) for item in session.items):
        import tempfile

        from fault_helpers import start_background_soak

        start_background_soak(tempfile.mkdtemp(prefix="ci-soak-"))


def pytest_sessionfinish(session, exitstatus):
    try:
        from fault_helpers import stop_background_soak
    except ImportError:
        return
    stop_background_soak()
