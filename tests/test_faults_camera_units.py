"""Camera faults at the unit level: the grabber and the sources with scripted devices.

The real-process camera faults (a folder that vanishes, a blocked read, odd frames
through the running daemon) are in test_faults_camera.py; these pin the logic
behind them with sources whose behaviour a test can script exactly.
"""
from __future__ import annotations

import sys
import threading
import time
import types

import numpy as np
import pytest

from edge_holistic.camera import FrameGrabber
from edge_holistic.camera.sources import Picamera2Source, Source, SourceError, _bgr_to_rgb
from edge_holistic.config.schema import SourceConfig


class Scripted(Source):
    kind = "scripted"

    def __init__(self, read=None):
        super().__init__(SourceConfig(type="v4l2"))
        self.reads = 0
        self.opens = 0
        self.closes = 0
        self._read = read or (lambda: None)

    def open(self):
        self.opens += 1

    def read(self):
        self.reads += 1
        return self._read()

    def close(self):
        self.closes += 1


def test_read_failing_at_once_does_not_spin():
    """read() -> None instantly: attempts are paced (10..160 ms), not a busy loop until stall_timeout."""
    src = Scripted()
    g = FrameGrabber(src, stall_timeout=100.0).start()
    time.sleep(1.0)
    g.stop()
    # A spinning loop makes ~10^5 reads a second; paced, one second allows about 10-15.
    assert 3 <= src.reads <= 40, src.reads
    assert g.counters.bad_frames == src.reads


def test_join_timeout_still_closes_the_source():
    release = threading.Event()
    src = Scripted(read=lambda: release.wait() and None)
    g = FrameGrabber(src, stall_timeout=100.0).start()
    time.sleep(0.2)
    g.stop(timeout=0.2)
    assert src.closes == 1, "a grabber whose join timed out left the device open"
    release.set()
    g.thread.join(2)
    assert src.closes == 1  # not closed twice when the read finally returns


def test_exception_in_read_reopens_with_backoff_and_closes():
    calls = {"n": 0}

    def read():
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError("device unplugged")
        return np.zeros((4, 4, 3), np.uint8)

    src = Scripted(read=read)
    g = FrameGrabber(src, stall_timeout=100.0).start()
    frame = g.get(timeout=5.0)
    g.stop()
    assert frame is not None and frame.rgb.shape == (4, 4, 3)
    assert g.counters.errors == 2 and g.counters.reopens == 2
    assert src.closes >= 3  # two closes for reopen + the final one


@pytest.fixture
def fake_picamera2(monkeypatch):
    """A picamera2 module whose camera can fail in configure/start/stop as told."""
    made = []

    class Cam:
        fail = set()

        def __init__(self, num):
            self.closed = False
            made.append(self)

        def create_video_configuration(self, **kw):
            return kw

        def configure(self, config):
            if "configure" in self.fail:
                raise RuntimeError("Failed to configure camera")

        def start(self):
            if "start" in self.fail:
                raise RuntimeError("Camera frontend has timed out")

        def stop(self):
            if "stop" in self.fail:
                raise RuntimeError("stop failed")

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Cam))
    return Cam, made


@pytest.mark.parametrize("step", ["configure", "start"])
def test_picamera2_failed_start_closes_the_camera(fake_picamera2, step):
    Cam, made = fake_picamera2
    Cam.fail = {step}
    src = Picamera2Source(SourceConfig(type="picamera2"))
    with pytest.raises(SourceError, match="configure/start"):
        src.open()
    assert made[-1].closed, f"camera left acquired after {step}() raised"


def test_picamera2_stop_raising_still_closes(fake_picamera2):
    Cam, made = fake_picamera2
    Cam.fail = {"stop"}
    src = Picamera2Source(SourceConfig(type="picamera2"))
    src.open()
    src.close()
    assert made[-1].closed and src.cam is None


@pytest.mark.parametrize("frame, expect", [
    (np.full((5, 7), 9, np.uint8), (5, 7, 3)),          # grayscale
    (np.full((5, 7, 1), 9, np.uint8), (5, 7, 3)),       # grayscale with a channel axis
    (np.zeros((3, 1, 3), np.uint8), (3, 1, 3)),         # odd-sized
    (np.zeros((0, 0, 3), np.uint8), None),              # zero-size
    (np.zeros((0, 5), np.uint8), None),
    (np.zeros((4, 4, 2), np.uint8), None),              # two channels: no colour meaning
    (np.zeros((4, 4, 3), np.float32), None),            # not 8-bit
])
def test_frame_conversion_odd_frames(frame, expect):
    out = _bgr_to_rgb(frame)
    assert (out is None) if expect is None else (out.shape == expect and out.dtype == np.uint8)
