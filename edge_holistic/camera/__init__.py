"""Frame sources and the newest-frame capture thread."""
from .grabber import CaptureCounters, Frame, FrameGrabber
from .sources import (JETSON_CSI_EXAMPLE, EndOfStream, FileSource, GstreamerSource, ImageFolderSource,
                      Picamera2Source, Source, SourceError, V4l2Source, infer_source, make_source)

__all__ = [
    "CaptureCounters", "EndOfStream", "FileSource", "Frame", "FrameGrabber", "GstreamerSource",
    "ImageFolderSource", "JETSON_CSI_EXAMPLE", "Picamera2Source", "Source", "SourceError", "V4l2Source",
    "infer_source", "make_source",
]
