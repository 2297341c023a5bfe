"""Pure geometry shared by every stage: anchors, rotated ROIs, crops and projections.

Conventions follow MediaPipe's so results can be compared number for number:
a ROI is ``Rect(cx, cy, w, h, theta)`` with centre and size normalised by the
image width/height and ``theta`` clockwise in radians (image y points down).
All functions are vectorised over landmarks; none holds state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np


@dataclass(frozen=True)
class Rect:
    """A rotated rectangle, normalised by image size (MediaPipe's NormalizedRect)."""

    cx: float
    cy: float
    w: float
    h: float
    theta: float = 0.0


def normalize_radians(a: float) -> float:
    """Map an angle into [-pi, pi)."""
    return a - 2.0 * math.pi * math.floor((a + math.pi) / (2.0 * math.pi))


def rotation_from_points(p0: Sequence[float], p1: Sequence[float], target: float, width: int, height: int) -> float:
    """Rotation that turns the p0 -> p1 direction (normalised coords) to ``target`` radians."""
    x0, y0 = p0[0] * width, p0[1] * height
    x1, y1 = p1[0] * width, p1[1] * height
    return normalize_radians(target - math.atan2(-(y1 - y0), x1 - x0))


def rect_from_alignment_points(
    p0: Sequence[float], p1: Sequence[float], target: float, width: int, height: int
) -> Rect:
    """Centre at p0, square of side 2*|p1-p0| pixels, rotation from p0 -> p1."""
    dx = (p1[0] - p0[0]) * width
    dy = (p1[1] - p0[1]) * height
    box = 2.0 * math.hypot(dx, dy)
    return Rect(float(p0[0]), float(p0[1]), box / width, box / height,
                rotation_from_points(p0, p1, target, width, height))


def transform_rect(
    r: Rect,
    width: int,
    height: int,
    scale_x: float = 1.0,
    scale_y: float = 1.0,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
    square_long: bool = True,
) -> Rect:
    """Shift (in the rect's rotated frame), make square on the long side (pixels), scale."""
    cx, cy, w, h, th = r.cx, r.cy, r.w, r.h, r.theta
    if th == 0.0:
        cx += w * shift_x
        cy += h * shift_y
    else:
        c, s = math.cos(th), math.sin(th)
        cx += (width * w * shift_x * c - height * h * shift_y * s) / width
        cy += (width * w * shift_x * s + height * h * shift_y * c) / height
    if square_long:
        long_side = max(w * width, h * height)
        w, h = long_side / width, long_side / height
    return Rect(cx, cy, w * scale_x, h * scale_y, th)


def landmarks_bbox(xy: np.ndarray) -> Tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of normalised points (MediaPipe's LandmarksToDetection)."""
    lo = xy.min(axis=0)
    hi = xy.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# --------------------------------------------------------------------------------------
# Crops: one perspective warp per ROI, straight into the model's input tensor.


@dataclass(frozen=True)
class Crop:
    """How a model input was cut from the image; enough to map outputs back."""

    rect: Rect  # the ROI after aspect-ratio padding (what the tensor really covers)
    pad: Tuple[float, float, float, float]  # letterbox fraction left, top, right, bottom
    size: Tuple[int, int]  # tensor (width, height)


def pad_rect_to_aspect(r: Rect, width: int, height: int, tensor_w: int, tensor_h: int) -> Tuple[Rect, Tuple[float, float, float, float]]:
    """Grow the ROI along one axis to the tensor's aspect ratio; report the padding fractions."""
    roi_w, roi_h = r.w * width, r.h * height
    tensor_aspect = tensor_h / tensor_w
    roi_aspect = roi_h / roi_w
    if tensor_aspect > roi_aspect:
        new_w, new_h = roi_w, roi_w * tensor_aspect
        v = (1.0 - roi_aspect / tensor_aspect) / 2.0
        pad = (0.0, v, 0.0, v)
    else:
        new_w, new_h = roi_h / tensor_aspect, roi_h
        hz = (1.0 - tensor_aspect / roi_aspect) / 2.0
        pad = (hz, 0.0, hz, 0.0)
    return Rect(r.cx, r.cy, new_w / width, new_h / height, r.theta), pad


def crop_matrix(r: Rect, width: int, height: int, tensor_w: int, tensor_h: int) -> np.ndarray:
    """2x3 affine map from tensor pixels to image pixels for a rotated ROI.

    Tensor pixel (u, v) samples image point centre + R(theta) @ ((u/tw - 1/2) a, (v/th - 1/2) b),
    the same corner mapping as MediaPipe's OpenCV ImageToTensor path.
    """
    a, b = r.w * width, r.h * height
    c, s = math.cos(r.theta), math.sin(r.theta)
    e, f = r.cx * width, r.cy * height
    sx, sy = a / tensor_w, b / tensor_h
    return np.array(
        [[c * sx, -s * sy, e - c * a / 2 + s * b / 2],
         [s * sx, c * sy, f - s * a / 2 - c * b / 2]],
        dtype=np.float64,
    )


def warp_into(
    image: np.ndarray,
    r: Rect,
    out: np.ndarray,
    value_range: Tuple[float, float],
    keep_aspect: bool = True,
    border: str = "replicate",
) -> Crop:
    """Cut the ROI out of ``image`` (uint8 HxWx3) into ``out`` (float32 th x tw x 3).

    The warp runs on uint8 (cheap, and a zero border becomes ``min`` after scaling,
    as in MediaPipe), then one fused multiply-add writes the float tensor in place.
    """
    height, width = image.shape[:2]
    th, tw = out.shape[:2]
    if keep_aspect:
        r, pad = pad_rect_to_aspect(r, width, height, tw, th)
    else:
        pad = (0.0, 0.0, 0.0, 0.0)
    m = crop_matrix(r, width, height, tw, th)
    border_mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    patch = cv2.warpAffine(
        image, m, (tw, th), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border_mode, borderValue=0
    )
    lo, hi = value_range
    np.multiply(patch, np.float32((hi - lo) / 255.0), out=out, casting="unsafe")
    if lo != 0.0:
        out += np.float32(lo)
    return Crop(r, pad, (tw, th))


def remove_letterbox(points: np.ndarray, pad: Tuple[float, float, float, float]) -> np.ndarray:
    """Undo keep-aspect padding on tensor-normalised points (N, >=2); z (col 2) scales like x."""
    pl, pt, pr, pb = pad
    if pl == pt == pr == pb == 0.0:
        return points
    out = points.astype(np.float32, copy=True)
    sx = 1.0 - pl - pr
    sy = 1.0 - pt - pb
    out[:, 0] = (points[:, 0] - pl) / sx
    out[:, 1] = (points[:, 1] - pt) / sy
    if points.shape[1] > 2:
        out[:, 2] = points[:, 2] / sx
    return out


def project_to_image(points: np.ndarray, crop: Crop, original: Optional[Rect] = None) -> np.ndarray:
    """Map tensor-normalised points back to image-normalised ones.

    ``original`` is the ROI before aspect padding; letterbox removal maps points
    into it (MediaPipe removes the letterbox, then projects with the unpadded ROI).
    """
    r = original if original is not None else crop.rect
    pts = remove_letterbox(points, crop.pad) if original is not None else points
    c, s = math.cos(r.theta), math.sin(r.theta)
    x = pts[:, 0] - 0.5
    y = pts[:, 1] - 0.5
    out = np.empty_like(pts, dtype=np.float32)
    out[:, 0] = r.cx + (x * c - y * s) * r.w
    out[:, 1] = r.cy + (x * s + y * c) * r.h
    if pts.shape[1] > 2:
        out[:, 2] = pts[:, 2] * r.w
        out[:, 3:] = pts[:, 3:]
    return out


def rotate_world(points: np.ndarray, theta: float) -> np.ndarray:
    """Rotate world landmarks (N, 3) about z by the ROI angle."""
    c, s = math.cos(theta), math.sin(theta)
    out = points.astype(np.float32, copy=True)
    out[:, 0] = c * points[:, 0] - s * points[:, 1]
    out[:, 1] = s * points[:, 0] + c * points[:, 1]
    return out


# --------------------------------------------------------------------------------------
# SSD anchors and detections


def ssd_anchors(
    input_size: int,
    strides: Sequence[int],
    min_scale: float = 0.1484375,
    max_scale: float = 0.75,
) -> np.ndarray:
    """Anchor centres (N, 2) for MediaPipe's fixed-size SSD anchors (aspect 1, offset 0.5).

    Layers with equal consecutive strides are merged; each merged layer places
    2 anchors per cell per layer (aspect 1.0 and the interpolated one), all at
    the cell centre. With fixed anchor size, only centres matter for decoding.
    """
    centres = []
    i = 0
    n = len(strides)
    while i < n:
        j = i
        while j < n and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        fm = int(math.ceil(input_size / strides[i]))
        grid = (np.arange(fm, dtype=np.float32) + 0.5) / fm
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        cells = np.stack([xx.ravel(), yy.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
        i = j
    return np.concatenate(centres, axis=0)


@dataclass
class Detections:
    """Decoded SSD detections in tensor-normalised coordinates."""

    boxes: np.ndarray  # (N, 4) xmin, ymin, xmax, ymax
    keypoints: np.ndarray  # (N, K, 2)
    scores: np.ndarray  # (N,)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def decode_detections(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    anchors: np.ndarray,
    input_size: float,
    num_keypoints: int,
    min_score: float,
) -> Detections:
    """Decode XYWH box + keypoint regressions against anchors, keep scores >= min_score."""
    raw_boxes = raw_boxes.reshape(anchors.shape[0], -1)
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.nonzero(scores >= min_score)[0]
    rb = raw_boxes[keep]
    a = anchors[keep]
    cx = rb[:, 0] / input_size + a[:, 0]
    cy = rb[:, 1] / input_size + a[:, 1]
    w = rb[:, 2] / input_size
    h = rb[:, 3] / input_size
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = rb[:, 4 : 4 + 2 * num_keypoints].reshape(-1, num_keypoints, 2) / input_size + a[:, None, :]
    valid = (w >= 0) & (h >= 0) & np.isfinite(boxes).all(axis=1)
    return Detections(boxes[valid], kp[valid], scores[keep][valid])


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(d: Detections, iou_threshold: float = 0.3, max_results: int = 0) -> Detections:
    """MediaPipe's weighted NMS: clusters by IoU > threshold around the best box,
    averages boxes and keypoints by score, keeps the best score.

    Loops once per *output* detection (a handful), never per anchor.
    """
    if len(d) == 0:
        return d
    order = np.argsort(-d.scores, kind="stable")
    boxes, kps, scores = d.boxes[order], d.keypoints[order], d.scores[order]
    out_b, out_k, out_s = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        top = remaining[0]
        ious = iou_one_to_many(boxes[top], boxes[remaining])
        members = remaining[ious > iou_threshold]
        if members.size == 0 or members[0] != top:
            members = np.concatenate([[top], members[members != top]])
        wts = scores[members]
        total = wts.sum()
        out_b.append((boxes[members] * wts[:, None]).sum(axis=0) / total)
        out_k.append((kps[members] * wts[:, None, None]).sum(axis=0) / total)
        out_s.append(scores[top])
        remaining = np.setdiff1d(remaining, members, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
        if max_results and len(out_s) >= max_results:
            break
    return Detections(np.array(out_b, np.float32), np.array(out_k, np.float32), np.array(out_s, np.float32))


def letterbox_rect(width: int, height: int, tensor_size: int) -> Rect:
    """The whole image as a ROI (letterboxed by :func:`warp_into` with keep_aspect)."""
    return Rect(0.5, 0.5, 1.0, 1.0, 0.0)


def detections_remove_letterbox(d: Detections, pad: Tuple[float, float, float, float]) -> Detections:
    """Map tensor-normalised detections of a full-image letterboxed crop to image-normalised."""
    pl, pt, pr, pb = pad
    sx, sy = 1.0 - pl - pr, 1.0 - pt - pb
    boxes = d.boxes.copy()
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - pl) / sx
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - pt) / sy
    kps = d.keypoints.copy()
    kps[..., 0] = (kps[..., 0] - pl) / sx
    kps[..., 1] = (kps[..., 1] - pt) / sy
    return Detections(boxes, kps, d.scores)


def project_detections(d: Detections, crop: Crop, width: int, height: int) -> Detections:
    """Map detections made inside a rotated crop to image-normalised coordinates.

    Keypoints go through the crop's projection; each box becomes the axis-aligned
    hull of its four projected corners (MediaPipe's DetectionProjection).
    """
    if len(d) == 0:
        return d
    n = len(d)
    kps = project_to_image(d.keypoints.reshape(-1, 2).astype(np.float32), crop).reshape(n, -1, 2)
    b = d.boxes
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1).reshape(-1, 2)
    pc = project_to_image(corners.astype(np.float32), crop).reshape(n, 4, 2)
    boxes = np.concatenate([pc.min(axis=1), pc.max(axis=1)], axis=1)
    return Detections(boxes, kps, d.scores)
