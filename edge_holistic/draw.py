"""Annotated images for people, kept apart from the pipeline (which never draws)."""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .pipeline.types import FrameResult

# Skeleton edges between the 33 pose landmarks (index meanings in the README).
POSE_EDGES: Tuple[Tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)

HAND_EDGES: Tuple[Tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11),
    (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)


def _chain(*idx: int) -> List[Tuple[int, int]]:
    return list(zip(idx[:-1], idx[1:]))


# Face mesh contour chains (lips, eyes, brows, oval) as vertex sequences.
FACE_CONTOURS: Tuple[Tuple[int, int], ...] = tuple(
    _chain(61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
    + _chain(61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
    + _chain(78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
    + _chain(78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
    + _chain(263, 249, 390, 373, 374, 380, 381, 382, 362)
    + _chain(263, 466, 388, 387, 386, 385, 384, 398, 362)
    + _chain(33, 7, 163, 144, 145, 153, 154, 155, 133)
    + _chain(33, 246, 161, 160, 159, 158, 157, 173, 133)
    + _chain(276, 283, 282, 295, 285) + _chain(300, 293, 334, 296, 336)
    + _chain(46, 53, 52, 65, 55) + _chain(70, 63, 105, 66, 107)
    + _chain(10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109, 10)
)

VISIBILITY_THRESHOLD = 0.5  # below this a pose joint is not drawn (MediaPipe's drawing default)


def _px(lm: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.round(lm[:, :2] * np.array([width, height])).astype(np.int32)


def _edges(img: np.ndarray, pts: np.ndarray, edges: Iterable[Tuple[int, int]], color, thickness: int,
           ok: Optional[np.ndarray] = None) -> None:
    for a, b in edges:
        if ok is None or (ok[a] and ok[b]):
            cv2.line(img, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), color, thickness, cv2.LINE_AA)


def draw_result(bgr: np.ndarray, result: FrameResult) -> np.ndarray:
    """A copy of the BGR frame with the pose skeleton (visibility-aware), face contours and hands."""
    img = bgr.copy()
    h, w = img.shape[:2]
    t = max(1, int(round(max(w, h) / 400)))
    if result.pose is not None:
        lm = result.pose.landmarks
        pts = _px(lm, w, h)
        ok = lm[:, 3] >= VISIBILITY_THRESHOLD
        _edges(img, pts, POSE_EDGES, (255, 255, 255), t + 1, ok)
        for i in np.nonzero(ok)[0]:
            colour = (0, 138, 255) if i % 2 else (231, 217, 0)  # odd = person's left, even = right
            if i == 0:
                colour = (255, 255, 255)
            cv2.circle(img, tuple(int(v) for v in pts[i]), t + 2, colour, -1, cv2.LINE_AA)
    if result.face is not None:
        _edges(img, _px(result.face.landmarks, w, h), FACE_CONTOURS, (200, 255, 200), max(1, t - 1))
    for hand, colour in ((result.left_hand, (0, 138, 255)), (result.right_hand, (231, 217, 0))):
        if hand is not None:
            pts = _px(hand.landmarks, w, h)
            _edges(img, pts, HAND_EDGES, colour, t)
            for p in pts:
                cv2.circle(img, tuple(int(v) for v in p), t + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return img
