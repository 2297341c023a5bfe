"""Frame sources behind one small interface: ``open()``, ``read()``, ``close()``.

``read()`` returns an RGB uint8 array (H, W, 3), or ``None`` when no usable frame
came (timeout, corrupt frame: the caller counts it and tries again), and raises
``EndOfStream`` when a finite source is done. Each source converts its native
colour order to RGB exactly once, here, so the pipeline never has to guess.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..config import SourceConfig

log = logging.getLogger("edge_holistic.camera")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Jetson CSI camera through Argus, scaled in hardware, newest frame only.
JETSON_CSI_EXAMPLE = (
    "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM), width=1280, height=720, format=NV12, "
    "framerate=30/1 ! nvvidconv flip-method=0 ! video/x-raw, width=640, height=360, format=BGRx ! "
    "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
)


class SourceError(RuntimeError):
    """The source cannot be opened or has failed; the grabber reopens it with backoff."""


class EndOfStream(Exception):
    """A finite source (file or folder without loop) has no more frames."""


class Source:
    """Base class. Subclasses set ``live`` (a camera: frames come whether we read or not)."""

    live: bool = True
    kind: str = "source"

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg

    @property
    def description(self) -> str:
        return self.kind

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def nominal_fps(self) -> float:
        return float(self.cfg.fps)


def _bgr_to_rgb(frame: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """One explicit BGR->RGB conversion; anything that is not a 3-channel uint8 image is corrupt."""
    import cv2

    if frame is None or not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
        return None
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    return None


class V4l2Source(Source):
    """USB/CSI camera through OpenCV's V4L2 backend (MJPG, 1-frame driver buffer)."""

    kind = "v4l2"

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg)
        self.cap = None

    @property
    def description(self) -> str:
        return f"v4l2:{self.cfg.device}"

    def open(self) -> None:
        import cv2

        dev = self.cfg.device
        target = int(dev) if dev.isdigit() else dev
        if isinstance(target, str) and not os.path.exists(target):
            raise SourceError(f"camera device {target} does not exist")
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera {dev} with V4L2 (busy, no permission, or not a capture device)")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.cfg.fourcc))
        if self.cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
        if self.cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver from queueing stale frames
        self.cap = cap
        log.info("opened %s: %dx%d @ %.1f fps", self.description, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                 int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), cap.get(cv2.CAP_PROP_FPS))

    def read(self) -> Optional[np.ndarray]:
        if self.cap is None:
            raise SourceError("camera not open")
        ok, frame = self.cap.read()
        return _bgr_to_rgb(frame) if ok else None

    def close(self) -> None:
        cap, self.cap = self.cap, None
        if cap is not None:
            cap.release()


class GstreamerSource(V4l2Source):
    """A GStreamer pipeline string ending in an appsink (Jetson CSI: see JETSON_CSI_EXAMPLE).

    Needs an OpenCV built with GStreamer (JetPack's is; the pip wheels are not).
    """

    kind = "gstreamer"

    @property
    def description(self) -> str:
        return "gstreamer"

    def open(self) -> None:
        import cv2

        build = cv2.getBuildInformation()
        line = next((ln for ln in build.splitlines() if "GStreamer:" in ln), "")
        if "YES" not in line:
            raise SourceError("this OpenCV has no GStreamer support (pip wheels lack it); use the system "
                              "OpenCV (python3-opencv / JetPack) in the venv (--system-site-packages)")
        cap = cv2.VideoCapture(self.cfg.pipeline, cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            raise SourceError("cannot start the GStreamer pipeline (on Jetson: is nvargus-daemon running?)")
        self.cap = cap
        log.info("opened gstreamer pipeline")


class Picamera2Source(Source):
    """Raspberry Pi camera through picamera2 (libcamera), imported only when used."""

    kind = "picamera2"

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg)
        self.cam = None

    @property
    def description(self) -> str:
        return f"picamera2:{self.cfg.camera_num}"

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore
        except ImportError as e:
            raise SourceError(
                "source.type picamera2 needs the picamera2 module: 'sudo apt install python3-picamera2' and "
                f"create the venv with --system-site-packages ({e})") from e
        try:
            cam = Picamera2(self.cfg.camera_num)
        except Exception as e:  # no camera, or libcamera busy: a retryable open failure
            raise SourceError(f"picamera2 camera {self.cfg.camera_num} cannot be opened: {e}") from e
        try:
            size = (self.cfg.width or 640, self.cfg.height or 480)
            # 'RGB888' is a little-endian DRM fourcc: the numpy array is B,G,R. Converted in read().
            config = cam.create_video_configuration(main={"format": "RGB888", "size": size},
                                                    controls={"FrameRate": float(self.cfg.fps)})
            cam.configure(config)
            cam.start()
        except Exception as e:
            # Not closing here left the camera acquired: every retry then found it busy.
            try:
                cam.close()
            except Exception as close_error:  # noqa: BLE001
                log.debug("picamera2 close after a failed start: %s", close_error)
            raise SourceError(f"picamera2 configure/start failed: {e}") from e
        self.cam = cam

    def read(self) -> Optional[np.ndarray]:
        if self.cam is None:
            raise SourceError("picamera2 not open")
        try:
            frame = self.cam.capture_array("main", wait=max(2.0, 5.0 / self.cfg.fps))
        except Exception as e:  # picamera2 raises TimeoutError or RuntimeError on a frontend timeout
            raise SourceError(f"picamera2 capture failed: {e}") from e
        return _bgr_to_rgb(frame)  # RGB888 arrays are B,G,R

    def close(self) -> None:
        cam, self.cam = self.cam, None
        if cam is not None:
            try:
                cam.stop()
            except Exception as e:  # noqa: BLE001 - close() below must run whatever stop() did
                log.warning("picamera2 stop failed: %s", e)
            finally:
                cam.close()


class _Paced(Source):
    """Real-time pacing for recorded sources: frame k is released at t0 + k/fps."""

    live = False

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg)
        self._t0: Optional[float] = None
        self._k = 0

    def _pace(self) -> None:
        if not self.cfg.realtime:
            return
        now = time.monotonic()
        if self._t0 is None or now - (self._t0 + self._k / self.nominal_fps) > 1.0:
            self._t0, self._k = now, 0  # first frame, or we fell behind by >1 s: re-anchor
        due = self._t0 + self._k / self.nominal_fps
        if due > now:
            time.sleep(due - now)
        self._k += 1


class FileSource(_Paced):
    """A video file, looped by default; decoding errors are skipped frames, not crashes."""

    kind = "file"

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg)
        self.cap = None
        self._bgr: Optional[np.ndarray] = None  # the decoder's reused output buffer
        self._fps = float(cfg.fps)
        self._since_open = 0

    @property
    def description(self) -> str:
        return f"file:{self.cfg.path}"

    @property
    def nominal_fps(self) -> float:
        return self._fps

    def open(self) -> None:
        import cv2

        if not os.path.isfile(self.cfg.path):
            raise SourceError(f"video file not found: {self.cfg.path}")
        cap = cv2.VideoCapture(self.cfg.path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot decode video file {self.cfg.path}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if fps and 0 < fps <= 240 else float(self.cfg.fps)
        self.cap = cap
        self._since_open = 0

    def read(self) -> Optional[np.ndarray]:
        if self.cap is None:
            raise SourceError("file not open")
        self._pace()
        # Decode into the same BGR array every time (only the RGB copy leaves this method): one
        # fresh 2.7 MB buffer per 720p frame instead of two, each a page-faulted mmap under the
        # daemon's fixed mmap threshold (~2 ms of CPU per frame measured on this x86 VM).
        ok, frame = self.cap.read(self._bgr)
        self._bgr = frame if ok else None
        if not ok:
            # End of file (or a broken tail). Rewind by reopening, which also picks up a replaced file.
            empty = self._since_open == 0
            self.close()
            if not self.cfg.loop:
                raise EndOfStream(self.cfg.path)
            if empty:
                raise SourceError(f"no decodable frame in {self.cfg.path}")
            self.open()
            return self.read()  # first frame of the next pass (an empty file raised above)
        self._since_open += 1
        return _bgr_to_rgb(frame)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageFolderSource(_Paced):
    """A folder of images, re-listed at every pass so files can be dropped in or removed.

    Unreadable files are skipped frames. An empty folder produces no frames
    (the stall watchdog then reopens it), which is also how a drop-folder idles.
    """

    kind = "images"

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg)
        self._files: List[Path] = []
        self._i = 0
        self._passes = 0
        self._open = False

    @property
    def description(self) -> str:
        return f"images:{self.cfg.path}"

    def _list(self) -> List[Path]:
        folder = Path(self.cfg.path)
        if not folder.is_dir():
            raise SourceError(f"image folder not found: {folder}")
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def open(self) -> None:
        self._files = self._list()
        self._i = 0
        self._open = True

    def read(self) -> Optional[np.ndarray]:
        import cv2

        if not self._open:
            raise SourceError("image folder not open")
        if self._i >= len(self._files):
            if self._files:
                self._passes += 1
                if not self.cfg.loop:
                    raise EndOfStream(self.cfg.path)
            self._files = self._list()
            self._i = 0
            if not self._files:
                time.sleep(min(0.2, 1.0 / self.nominal_fps))  # idle, without spinning
                return None
        path = self._files[self._i]
        self._i += 1
        self._pace()
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)  # None for missing/corrupt files
        return _bgr_to_rgb(frame)

    def close(self) -> None:
        self._open = False


SOURCES = {
    "v4l2": V4l2Source,
    "picamera2": Picamera2Source,
    "gstreamer": GstreamerSource,
    "file": FileSource,
    "images": ImageFolderSource,
}


def make_source(cfg: SourceConfig) -> Source:
    return SOURCES[cfg.type](cfg)


def infer_source(spec: str) -> dict:
    """Turn a ``--source`` string into source config keys.

    int or /dev/videoN -> v4l2; contains '!' -> gstreamer; directory -> images;
    existing file -> file. Anything else is an error naming the string.
    """
    s = spec.strip()
    if s.isdigit() or s.startswith("/dev/video"):
        return {"type": "v4l2", "device": s}
    if "!" in s:
        return {"type": "gstreamer", "pipeline": s}
    if s == "picamera2" or s.startswith("picamera2:"):
        num = s.split(":", 1)[1] if ":" in s else "0"
        return {"type": "picamera2", "camera_num": int(num) if num.isdigit() else num}
    if os.path.isdir(s):
        return {"type": "images", "path": s}
    if os.path.isfile(s):
        return {"type": "file", "path": s}
    raise ValueError(f"--source {spec!r}: not a device index, /dev/videoN, directory, existing file, "
                     "'picamera2[:N]' or GStreamer pipeline (a string with '!')")
