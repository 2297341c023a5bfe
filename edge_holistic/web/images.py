"""Uploaded bytes -> an RGB array, refusing what must not be decoded.

Why the header is read before decoding: a PNG of a few hundred bytes can claim
50000x50000 pixels, and decoding it would ask for 7.5 GB. OpenCV has its own
guard (``OPENCV_IO_MAX_IMAGE_PIXELS``), but it reads that variable once, when cv2
is imported, which in the daemon happens long before the web server starts; so
the dimensions are read here from the format's own header (a few bytes at a
known place) and checked first. Formats accepted: JPEG, PNG, WebP, BMP: those
a camera or phone produces and the headless OpenCV wheel decodes.

Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (the DCT
scaling behind ``IMREAD_REDUCED_COLOR_*``), so a 12 MP photo never exists at
full size in memory: 4000x3000 decodes straight to 2000x1500 (9 MB instead of
36 MB).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

MIN_SIDE = 64  # the product documents' minimum: below this no landmark model sees a person
MAX_PIXELS = 40_000_000  # 40 MP: above any phone photo a user would send, far below a bomb
FORMATS = ("jpeg", "png", "webp", "bmp")


class ImageRejected(ValueError):
    """An upload that is not processed; ``status`` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def _jpeg_header(data: bytes) -> Tuple[Optional[Tuple[int, int]], int]:
    """Walk the JPEG markers: ((w, h) from the first SOFn or None, offset of the scan data or -1)."""
    i = 2
    n = len(data)
    size: Optional[Tuple[int, int]] = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return size, -1
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker == 0xD9:
            return size, -1
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if length < 2:
            return size, -1
        if marker == 0xDA:
            return size, i + 2 + length
        if size is None and 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= n:
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            size = (w, h)
        i += 2 + length
    return size, -1


def probe(data: bytes) -> ImageInfo:
    """Format and claimed size from the header alone, or ImageRejected (415/422)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageRejected(422, "truncated or corrupt PNG: no IHDR header")
        w, h = struct.unpack(">II", data[16:24])
        return ImageInfo("png", w, h)
    if data[:3] == b"\xff\xd8\xff":
        size, scan = _jpeg_header(data)
        if size is None:
            raise ImageRejected(422, "truncated or corrupt JPEG: no frame header (SOF) found")
        # libjpeg decodes a cut-off file with grey below the cut and only a warning: refuse it
        # here instead of computing landmarks on half a picture.
        if scan < 0 or data.rfind(b"\xff\xd9", scan) < 0:
            raise ImageRejected(422, "truncated JPEG: the file ends before its end-of-image marker")
        return ImageInfo("jpeg", *size)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return ImageInfo("webp", w & 0x3FFF, h & 0x3FFF)
        if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if chunk == b"VP8X" and len(data) >= 30:
            return ImageInfo("webp", int.from_bytes(data[24:27], "little") + 1,
                             int.from_bytes(data[27:30], "little") + 1)
        raise ImageRejected(422, "truncated or corrupt WebP header")
    if data[:2] == b"BM":
        if len(data) < 26:
            raise ImageRejected(422, "truncated or corrupt BMP header")
        w, h = struct.unpack("<ii", data[18:26])
        return ImageInfo("bmp", abs(w), abs(h))
    raise ImageRejected(415, "not an image this server decodes (accepted: JPEG, PNG, WebP, BMP)")


def check_size(info: ImageInfo, max_pixels: int = MAX_PIXELS) -> None:
    if info.width < MIN_SIDE or info.height < MIN_SIDE:
        raise ImageRejected(422, f"image too small: {info.width}x{info.height} pixels; "
                                 f"both sides must be at least {MIN_SIDE}")
    if info.width * info.height > max_pixels:
        raise ImageRejected(413, f"image too large: its {info.format.upper()} header claims "
                                 f"{info.width}x{info.height} pixels (limit {max_pixels // 1_000_000} MP); "
                                 "not decoded")


def _reduced_flag(info: ImageInfo, max_side: int) -> Tuple[int, int]:
    """(imdecode flag, factor): the largest JPEG scale-down that keeps the long side >= max_side."""
    import cv2

    if info.format != "jpeg":
        return cv2.IMREAD_COLOR, 1
    long_side = max(info.width, info.height)
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if long_side // factor >= max_side:
            return flag, factor
    return cv2.IMREAD_COLOR, 1


def decode(data: bytes, max_side: int, max_pixels: int = MAX_PIXELS) -> Tuple[np.ndarray, ImageInfo]:
    """(BGR image with long side <= max_side, header info), or ImageRejected.

    The landmarks are normalised to the image, so scaling down keeps them valid for
    the original size; the message then reports the original width and height.
    """
    import cv2

    if not data:
        raise ImageRejected(400, "empty upload: no image bytes received")
    info = probe(data)
    check_size(info, max_pixels)
    flag, _ = _reduced_flag(info, max_side)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None or img.ndim != 3 or img.shape[0] < 1:
        raise ImageRejected(422, f"truncated or corrupt {info.format.upper()} data: the decoder could not read it")
    h, w = img.shape[:2]
    long_side = max(w, h)
    if long_side > max_side:
        scale = max_side / long_side
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return img, info
