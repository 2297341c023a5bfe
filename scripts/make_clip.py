#!/usr/bin/env python3
"""Synthesise the committed video fixture ``tests/data/clip.avi`` from one committed still.

Why synthesise: the only real video we have (OpenPose's ``video.avi``) has no stated
license, so it cannot be committed. A virtual camera moving over a committed COCO
still gives a clip whose content we know exactly: where the person is in every frame,
and a stretch where they are certainly absent (only synthetic background in view),
which is what tracking tests need (track, lose, re-detect).

How: the still is pasted into a wider synthetic canvas (smooth colour gradient plus
low-frequency texture, generated from a fixed seed, no people). A virtual camera
(centre, zoom, roll) follows cosine-eased keyframes; each frame is one
``cv2.warpAffine`` of the canvas. The person box (given in still pixels) is projected
through the same transform to label every frame, and the labels go to a JSON sidecar.

Deterministic: no randomness except a seeded generator, fixed keyframes, and the
output written by OpenCV's FFmpeg MJPG encoder at its default quality (same bytes from
the same opencv-python build; other builds may differ slightly, hence the sidecar
records the decoded frame count and labels, not pixel hashes).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "tests" / "data" / "images" / "COCO_val2014_000000000459.jpg"
# Person box in the source still's pixels (x0, y0, x1, y1): the man in a suit, head to
# the bottom edge, hands included. Read off MediaPipe Pose/Holistic on the still
# (tests/data/golden/holistic_static.json) plus a margin.
DEFAULT_PERSON_BOX = (10.0, 100.0, 500.0, 640.0)


@dataclass(frozen=True)
class Key:
    """Camera state at one frame: canvas point at the frame centre, zoom, roll (degrees)."""

    frame: int
    cx: float  # in units of the still's width, 0 = still's left edge
    cy: float  # in units of the still's height
    zoom: float  # 1.0 = the still's height fills the frame height
    roll: float  # degrees, positive = counter-clockwise image rotation (OpenCV convention)


# The motion script. Units are relative to the still so the same script fits any source.
# Around frames 44..52 the still is entirely out of view (the sidecar has the exact ranges).
KEYS: Tuple[Key, ...] = (
    Key(0, 0.50, 0.50, 1.00, 0.0),
    Key(12, 0.42, 0.50, 1.00, 4.0),
    Key(24, 0.58, 0.48, 1.25, -6.0),
    Key(34, 0.50, 0.42, 1.45, 10.0),  # closest zoom, upper body
    Key(46, 2.20, 0.50, 1.00, 0.0),  # panned far right: only background
    Key(50, 2.20, 0.50, 1.00, 0.0),  # hold: person absent
    Key(64, 0.52, 0.52, 0.95, -4.0),  # back on the person
    Key(80, 0.50, 0.55, 0.80, -10.0),  # zoomed out, rolled the other way
    Key(92, 0.47, 0.50, 0.90, 3.0),
    Key(99, 0.50, 0.50, 1.00, 0.0),
)


def steady_keys(cx: float, cy: float, zoom: float) -> Tuple[Key, ...]:
    """A hand-held camera resting on one person: a slow sway of a few percent in position,
    zoom and roll, the person never leaving the frame.

    For the face-and-hands benchmark clip (``scripts/bench_compare.py``): face and both hands
    in view on every frame, so every holistic model runs on every frame, the heaviest load
    the pipeline sees, unlike the tour above, where the person is small, cut or gone.
    """
    return (
        Key(0, cx, cy, zoom, 0.0),
        Key(25, cx - 0.03, cy + 0.02, zoom * 1.08, 3.0),
        Key(50, cx + 0.03, cy - 0.01, zoom * 0.95, -3.0),
        Key(75, cx - 0.02, cy, zoom * 1.05, 2.0),
        Key(99, cx, cy, zoom, 0.0),
    )


def camera_at(keys: Sequence[Key], frame: int) -> Tuple[float, float, float, float]:
    """Cosine-eased interpolation between the two keyframes around ``frame``."""
    if frame <= keys[0].frame:
        k = keys[0]
        return k.cx, k.cy, k.zoom, k.roll
    for a, b in zip(keys, keys[1:]):
        if a.frame <= frame <= b.frame:
            t = (frame - a.frame) / (b.frame - a.frame)
            s = 0.5 - 0.5 * np.cos(np.pi * t)  # ease in/out: no jerks at keyframes
            return (
                a.cx + (b.cx - a.cx) * s,
                a.cy + (b.cy - a.cy) * s,
                a.zoom + (b.zoom - a.zoom) * s,
                a.roll + (b.roll - a.roll) * s,
            )
    k = keys[-1]
    return k.cx, k.cy, k.zoom, k.roll


def make_background(width: int, height: int, seed: int) -> np.ndarray:
    """A person-free canvas: two-colour diagonal gradient plus blurred seeded noise.

    Low-frequency texture keeps MJPG from degenerating to flat blocks and gives the
    detectors something non-trivial to reject, without any shape resembling a person.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx / width * 0.7 + yy / height * 0.3)[..., None]
    top = np.array([150, 170, 185], np.float32)  # BGR: cool grey-blue wall
    bottom = np.array([95, 120, 140], np.float32)  # BGR: warmer, darker
    img = top * (1 - t) + bottom * t
    noise = rng.normal(0.0, 1.0, (height // 24 + 1, width // 24 + 1)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = cv2.GaussianBlur(noise, (0, 0), 8)
    img += (noise * (12.0 / max(float(noise.std()), 1e-6)))[..., None]  # luminance only: plaster-like
    return np.clip(img, 0, 255).astype(np.uint8)


def build_canvas(still: np.ndarray, seed: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Paste ``still`` into a background 4x its width and 2x its height; return canvas and paste origin."""
    h, w = still.shape[:2]
    canvas = make_background(4 * w, 2 * h, seed)
    ox, oy = w // 2, h // 2  # still occupies [ox, ox+w) x [oy, oy+h)
    canvas[oy:oy + h, ox:ox + w] = still
    return canvas, (ox, oy)


def frame_matrix(cam: Tuple[float, float, float, float], still_wh: Tuple[int, int], origin: Tuple[int, int],
                 out_wh: Tuple[int, int]) -> np.ndarray:
    """2x3 affine mapping canvas pixels to output pixels for one camera state."""
    cx, cy, zoom, roll = cam
    w, h = still_wh
    ow, oh = out_wh
    centre = (origin[0] + cx * w, origin[1] + cy * h)
    scale = zoom * oh / h
    m = cv2.getRotationMatrix2D(centre, roll, scale)  # rotates+scales about the canvas point
    m[0, 2] += ow / 2 - centre[0]  # then move that point to the frame centre
    m[1, 2] += oh / 2 - centre[1]
    return m


def visible_fraction(box: np.ndarray, m: np.ndarray, out_wh: Tuple[int, int], samples: int = 24) -> float:
    """Fraction of a (canvas-pixel) box that lands inside the output frame, by grid sampling."""
    x0, y0, x1, y1 = box
    gx, gy = np.meshgrid(np.linspace(x0, x1, samples), np.linspace(y0, y1, samples))
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)], axis=0)
    px, py = m @ pts
    inside = (px >= 0) & (px < out_wh[0]) & (py >= 0) & (py < out_wh[1])
    return float(inside.mean())


def ranges(mask: np.ndarray) -> List[List[int]]:
    """Inclusive [first, last] index ranges where ``mask`` is true."""
    out: List[List[int]] = []
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    return [[int(a), int(b)] for a, b in zip(starts, ends)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="committed still to film")
    p.add_argument("--person-box", type=float, nargs=4, default=DEFAULT_PERSON_BOX,
                   metavar=("X0", "Y0", "X1", "Y1"), help="person box in the still's pixels")
    p.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "clip.avi")
    p.add_argument("--size", type=int, nargs=2, default=(400, 300), metavar=("W", "H"))
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=20241)
    p.add_argument("--steady", type=float, nargs=3, default=None, metavar=("CX", "CY", "ZOOM"),
                   help="instead of the tour, a camera resting on the point (CX, CY) of the still "
                        "(fractions of its width and height) at ZOOM, swaying slightly")
    args = p.parse_args(argv)
    keys = KEYS if args.steady is None else steady_keys(*args.steady)

    still = cv2.imread(str(args.source), cv2.IMREAD_COLOR)
    if still is None:
        print(f"error: cannot read source image {args.source}", file=sys.stderr)
        return 2
    h, w = still.shape[:2]
    bx0, by0, bx1, by1 = args.person_box
    if not (0 <= bx0 < bx1 <= w and 0 <= by0 < by1 <= h):
        print(f"error: --person-box {args.person_box} is not inside the {w}x{h} source", file=sys.stderr)
        return 2
    canvas, origin = build_canvas(still, args.seed)
    person = np.array([bx0 + origin[0], by0 + origin[1], bx1 + origin[0], by1 + origin[1]])
    still_box = np.array([origin[0], origin[1], origin[0] + w - 1, origin[1] + h - 1], float)
    out_wh = (int(args.size[0]), int(args.size[1]))
    n = keys[-1].frame + 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # FFmpeg's MJPEG encoder at its default quality: at 400x300 it is ~40% smaller than
    # OpenCV's built-in MJPEG muxer at equal PSNR (~36.5 dB), keeping the clip under 2 MB.
    writer = cv2.VideoWriter(str(args.out), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), args.fps, out_wh)
    if not writer.isOpened():
        print(f"error: OpenCV cannot open an MJPG writer for {args.out}", file=sys.stderr)
        return 2
    person_frac = np.zeros(n)
    still_frac = np.zeros(n)
    cams = []
    for i in range(n):
        cam = camera_at(keys, i)
        m = frame_matrix(cam, (w, h), origin, out_wh)
        frame = cv2.warpAffine(canvas, m, out_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        writer.write(frame)
        person_frac[i] = visible_fraction(person, m, out_wh)
        still_frac[i] = visible_fraction(still_box, m, out_wh)
        cams.append([round(float(v), 4) for v in cam])
    writer.release()

    sidecar: Dict[str, object] = {
        "file": args.out.name,
        "source": args.source.name,
        "frames": n,
        "fps": args.fps,
        "width": out_wh[0],
        "height": out_wh[1],
        "person_box_in_source": [float(v) for v in args.person_box],
        "notes": ("person_visible: >=60% of the person box inside the frame; person_absent: no pixel "
                  "of the source still in view (only synthetic background); other frames are transitions."),
        "person_visible": ranges(person_frac >= 0.6),
        "person_absent": ranges(still_frac == 0.0),
        "person_fraction": [round(float(v), 3) for v in person_frac],
        "camera": {"columns": ["cx", "cy", "zoom", "roll_deg"], "per_frame": cams},
    }
    sidecar_path = args.out.with_suffix(".json")
    sidecar_path.write_text(json.dumps(sidecar, indent=1) + "\n")
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({n} frames, {out_wh[0]}x{out_wh[1]}, {size_kb:.0f} KB) and {sidecar_path.name}")
    print(f"person_visible={sidecar['person_visible']} person_absent={sidecar['person_absent']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
