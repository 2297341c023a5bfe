"""Frame sources and the newest-frame grabber, on real files written to tmp_path."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import take_all
from edge_holistic.camera import (EndOfStream, FileSource, FrameGrabber, ImageFolderSource, Picamera2Source,
                                  SourceError, V4l2Source, infer_source, make_source)
from edge_holistic.camera.sources import GstreamerSource
from edge_holistic.config import SourceConfig

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "tests" / "data" / "clip.avi"


def _solid_bgr(b: int, g: int, r: int, size=(48, 64)) -> np.ndarray:
    img = np.zeros((*size, 3), np.uint8)
    img[:] = (b, g, r)
    return img


def _video(path: Path, frames: int = 6, fps: float = 20.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(frames):
        w.write(_solid_bgr(0, 0, 255))  # pure red in BGR
    w.release()
    return path


def test_infer_source(tmp_path):
    assert infer_source("0") == {"type": "v4l2", "device": "0"}
    assert infer_source("/dev/video2") == {"type": "v4l2", "device": "/dev/video2"}
    assert infer_source("videotestsrc ! appsink")["type"] == "gstreamer"
    assert infer_source(str(tmp_path)) == {"type": "images", "path": str(tmp_path)}
    clip = _video(tmp_path / "c.avi")
    assert infer_source(str(clip)) == {"type": "file", "path": str(clip)}
    assert infer_source("picamera2:1") == {"type": "picamera2", "camera_num": 1}
    with pytest.raises(ValueError, match="nothing-here.avi"):
        infer_source(str(tmp_path / "nothing-here.avi"))


def test_image_folder_yields_rgb_and_skips_corrupt_files(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _solid_bgr(255, 0, 0))  # blue, stored as BGR by OpenCV
    (tmp_path / "b.jpg").write_bytes(b"this is not a jpeg")
    src = ImageFolderSource(SourceConfig(type="images", path=str(tmp_path), loop=False, realtime=False))
    src.open()
    first = src.read()
    assert first.dtype == np.uint8 and first.shape == (48, 64, 3)
    assert tuple(first[0, 0]) == (0, 0, 255)  # RGB: blue is the last channel
    assert src.read() is None  # corrupt file: a skipped frame, not an exception
    with pytest.raises(EndOfStream):
        src.read()


def test_file_source_loops_or_ends(tmp_path):
    clip = _video(tmp_path / "red.avi", frames=4)
    looping = FileSource(SourceConfig(type="file", path=str(clip), loop=True, realtime=False))
    looping.open()
    frames = [looping.read() for _ in range(10)]  # more than the file holds: it rewinds
    assert all(f is not None and f.shape == (48, 64, 3) for f in frames)
    r, g, b = frames[0][24, 32].astype(int)
    assert r > 200 and g < 60 and b < 60  # red stays red after the BGR->RGB conversion
    looping.close()
    once = FileSource(SourceConfig(type="file", path=str(clip), loop=False, realtime=False))
    once.open()
    got = 0
    with pytest.raises(EndOfStream):
        while True:
            once.read()
            got += 1
    assert got == 4


def test_file_rate_is_read_from_the_file(tmp_path):
    clip = _video(tmp_path / "paced.avi", frames=6, fps=20.0)
    src = FileSource(SourceConfig(type="file", path=str(clip), loop=False, realtime=True, fps=30))
    src.open()
    assert src.nominal_fps == pytest.approx(20.0)  # the file's rate wins over source.fps
    assert all(src.read() is not None for _ in range(6))


def test_missing_inputs_give_specific_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        FileSource(SourceConfig(type="file", path=str(tmp_path / "gone.avi"))).open()
    with pytest.raises(SourceError, match="/dev/video97"):
        V4l2Source(SourceConfig(type="v4l2", device="/dev/video97")).open()
    with pytest.raises(SourceError, match="image folder not found"):
        ImageFolderSource(SourceConfig(type="images", path=str(tmp_path / "none"))).open()


def test_picamera2_absent_is_a_clear_error():
    try:
        import picamera2  # noqa: F401
        pytest.skip("picamera2 is installed here; the absent-module path cannot be exercised")
    except ImportError:
        pass
    with pytest.raises(SourceError, match="picamera2"):
        Picamera2Source(SourceConfig(type="picamera2")).open()


def test_gstreamer_needs_an_opencv_with_gstreamer():
    src = GstreamerSource(SourceConfig(type="gstreamer", pipeline="videotestsrc num-buffers=3 ! videoconvert ! "
                                                                   "video/x-raw,format=BGR ! appsink"))
    line = next((ln for ln in cv2.getBuildInformation().splitlines() if "GStreamer:" in ln), "")
    if "YES" in line:
        src.open()
        assert src.read() is not None
        src.close()
    else:
        with pytest.raises(SourceError, match="GStreamer"):
            src.open()


def test_grabber_keeps_newest_and_counts_drops(tmp_path):
    clip = _video(tmp_path / "g.avi", frames=30, fps=100.0)
    src = make_source(SourceConfig(type="file", path=str(clip), loop=True, realtime=True))
    g = FrameGrabber(src, stall_timeout=5).start()
    try:
        first = g.get(timeout=5)
        assert first is not None and first.rgb.shape == (48, 64, 3)
        time.sleep(0.5)  # the consumer is "busy": the capture thread overwrites the slot
        newest = g.get(timeout=5)
        assert newest.seq > first.seq + 1
        assert g.counters.dropped >= newest.seq - first.seq - 1 > 0
        assert g.counters.processed == 2
        assert g.counters.captured >= newest.seq
    finally:
        g.stop()


def test_grabber_lossless_when_not_realtime(tmp_path):
    clip = _video(tmp_path / "l.avi", frames=5)
    g = FrameGrabber(make_source(SourceConfig(type="file", path=str(clip), loop=False, realtime=False)),
                     stall_timeout=5).start()
    try:
        assert take_all(g, pause=0.05) == [1, 2, 3, 4, 5]
        assert g.ended.is_set() and g.counters.dropped == 0
    finally:
        g.stop()


def test_grabber_reopens_a_stalled_source_with_backoff(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "x.png"), _solid_bgr(0, 255, 0))
    events = []
    g = FrameGrabber(make_source(SourceConfig(type="images", path=str(folder), fps=20)), stall_timeout=0.5,
                     on_event=lambda kind, text: events.append(kind)).start()
    try:
        assert g.get(timeout=5) is not None
        (folder / "x.png").unlink()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and g.counters.reopens < 2:
            g.get(timeout=0.1)
        assert g.counters.stalls >= 2 and g.counters.reopens >= 2
        assert "stall" in events and "reopened" in events
        cv2.imwrite(str(folder / "y.png"), _solid_bgr(0, 255, 0))
        frame = None
        deadline = time.monotonic() + 10
        while frame is None and time.monotonic() < deadline:
            frame = g.get(timeout=0.2)
        assert frame is not None and tuple(frame.rgb[0, 0]) == (0, 255, 0)
    finally:
        g.stop()


def test_grabber_retries_an_unopenable_source(tmp_path):
    missing = tmp_path / "later.avi"
    g = FrameGrabber(make_source(SourceConfig(type="file", path=str(missing), realtime=False)),
                     stall_timeout=5).start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and g.counters.open_failures < 2:
            time.sleep(0.05)
        assert g.counters.open_failures >= 2 and "not found" in g.last_error
        _video(missing)  # the file appears: the next retry opens it
        assert g.get(timeout=10) is not None
    finally:
        g.stop()
