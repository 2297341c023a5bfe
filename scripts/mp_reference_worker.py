#!/usr/bin/env python3
"""Runs the real MediaPipe legacy solutions; executed INSIDE the throwaway mediapipe venv.

Why a separate worker: this file imports ``mediapipe`` (numpy 1.x, opencv-contrib), so
it must never be imported by the package or by the repo's test environment. The
driver scripts (``make_reference.py``, later ``bench_compare.py``) launch it with the
venv's interpreter via ``_mpvenv.run_in_venv``. It only depends on mediapipe, numpy
and cv2, all present in that venv.

Modes:
  images  --out-dir D IMG...   golden JSON for static-image Pose (complexity 0, 1) and Holistic (1)
  clip    --out-dir D VIDEO    golden JSON for tracking-mode Pose (1) and Holistic (1), one record per frame
  bench   VIDEO                decode all frames, then time only process() per setting; print one JSON line

Input to MediaPipe is always RGB (OpenCV decodes BGR; we convert once).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import mediapipe as mp
import numpy as np

DECIMALS = 6
GZIP_ABOVE = 512 * 1024  # bytes of JSON text; larger golden files are written as .json.gz
COMPLEXITY_NAME = {0: "lite", 1: "full", 2: "heavy"}


def _arr(landmark_list: Any, fields: Sequence[str]) -> Optional[List[List[float]]]:
    """Landmark proto list -> rounded nested list, or None when the part was not found."""
    if landmark_list is None:
        return None
    a = np.array([[getattr(lm, f) for f in fields] for lm in landmark_list.landmark], dtype=np.float64)
    return np.round(a, DECIMALS).tolist()


def record(results: Any, width: int, height: int) -> Dict[str, Any]:
    """One golden item from a Pose or Holistic result (Pose has no face/hand attributes)."""
    return {
        "width": width,
        "height": height,
        "pose": _arr(results.pose_landmarks, ("x", "y", "z", "visibility")),
        "pose_world": _arr(results.pose_world_landmarks, ("x", "y", "z")),
        "face": _arr(getattr(results, "face_landmarks", None), ("x", "y", "z")),
        "left_hand": _arr(getattr(results, "left_hand_landmarks", None), ("x", "y", "z")),
        "right_hand": _arr(getattr(results, "right_hand_landmarks", None), ("x", "y", "z")),
    }


def make_solution(solution: str, static: bool, complexity: int) -> Tuple[Any, Dict[str, Any]]:
    """Construct a legacy solution and return it with the exact settings used (recorded in the JSON)."""
    settings: Dict[str, Any] = {
        "static_image_mode": static,
        "model_complexity": complexity,
        "smooth_landmarks": True,
        "enable_segmentation": False,
        "min_detection_confidence": 0.5,
        "min_tracking_confidence": 0.5,
    }
    if solution == "pose":
        return mp.solutions.pose.Pose(**settings), settings
    if solution == "holistic":
        settings["refine_face_landmarks"] = False
        return mp.solutions.holistic.Holistic(**settings), settings
    raise ValueError(f"unknown solution {solution!r}; expected 'pose' or 'holistic'")


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"error: cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_video_rgb(path: Path, max_frames: Optional[int] = None) -> List[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open video {path}")
    frames: List[np.ndarray] = []
    while max_frames is None or len(frames) < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"error: video {path} has no decodable frames")
    return frames


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_golden(out: Path, solution: str, settings: Dict[str, Any], input_desc: Dict[str, Any],
                 items: Dict[str, Dict[str, Any]]) -> None:
    """Compact JSON with one item per line: small in git, still readable and diffable."""
    head = {
        "mediapipe": mp.__version__,
        "solution": solution,
        "settings": settings,
        "input": input_desc,
    }
    lines = [json.dumps(head, separators=(",", ":"))[:-1] + ',"items":{']
    keys = list(items)
    for i, k in enumerate(keys):
        sep = "," if i < len(keys) - 1 else ""
        lines.append(json.dumps(k) + ":" + json.dumps(items[k], separators=(",", ":")) + sep)
    lines.append("}}")
    text = ("\n".join(lines) + "\n").encode()
    stale = out.with_name(out.name + ".gz")
    if len(text) > GZIP_ABOVE:
        # Face meshes over a whole clip run past a megabyte of digits; gzip (mtime 0, so the
        # bytes are reproducible) keeps the checkout small. tests/golden.py reads both forms.
        out, stale = stale, out
        text = gzip.compress(text, compresslevel=9, mtime=0)
    stale.unlink(missing_ok=True)
    out.write_bytes(text)
    print(f"wrote {out} ({len(text) // 1024} KB, {len(items)} items)", file=sys.stderr)


def run_images(out_dir: Path, images: Sequence[Path]) -> None:
    rgbs = {p.name: read_rgb(p) for p in images}
    desc = {"kind": "images", "color": "RGB", "sha256": {p.name: sha256(p) for p in images}}
    for solution, complexity in (("pose", 0), ("pose", 1), ("holistic", 1)):
        items: Dict[str, Dict[str, Any]] = {}
        for name, rgb in rgbs.items():
            # A fresh instance per image: static mode keeps no state, but this rules it out.
            sol, settings = make_solution(solution, True, complexity)
            with sol:
                items[name] = record(sol.process(rgb), rgb.shape[1], rgb.shape[0])
        write_golden(out_dir / f"{solution}_{COMPLEXITY_NAME[complexity]}_static.json", solution, settings, desc, items)


def run_clip(out_dir: Path, video: Path) -> None:
    frames = read_video_rgb(video)
    desc = {"kind": "video", "file": video.name, "sha256": sha256(video), "frames": len(frames),
            "color": "RGB", "decoder": f"opencv {cv2.__version__}",
            "timestamps": "legacy solution API default: frame i at (i+1)*33333 us"}
    for solution, complexity in (("pose", 1), ("holistic", 1)):
        sol, settings = make_solution(solution, False, complexity)
        items: Dict[str, Dict[str, Any]] = {}
        with sol:
            for i, rgb in enumerate(frames):
                items[str(i)] = record(sol.process(rgb), rgb.shape[1], rgb.shape[0])
        write_golden(out_dir / f"{solution}_{COMPLEXITY_NAME[complexity]}_tracking.json", solution, settings, desc, items)


def run_bench(video: Path, settings_names: Sequence[str], max_frames: Optional[int], warmup: int) -> Dict[str, Any]:
    """Tracking-mode throughput: decoding is done up front so only process() is timed.

    The first ``warmup`` frames are processed untimed on the same instance (graph start-up,
    XNNPACK init, first detection); the timed pass then starts again at frame 0, which
    costs at most one extra detection. MediaPipe picks its own thread count; the caller
    should note the machine's core count next to these numbers.
    """
    frames = read_video_rgb(video, max_frames)
    result: Dict[str, Any] = {"mediapipe": mp.__version__, "video": str(video), "frames": len(frames),
                              "width": frames[0].shape[1], "height": frames[0].shape[0], "warmup": warmup,
                              "fps": {}, "ms_mean": {}, "ms_p50": {}, "ms_p90": {}, "found": {}}
    for name in settings_names:
        solution, level = name.split("_")
        complexity = {v: k for k, v in COMPLEXITY_NAME.items()}[level]
        sol, _ = make_solution(solution, False, complexity)
        with sol:
            for rgb in frames[:warmup]:  # graph start-up and first detection are not steady state
                sol.process(rgb)
            times = np.empty(len(frames))
            found = 0
            for i, rgb in enumerate(frames):
                t0 = time.perf_counter()
                r = sol.process(rgb)
                times[i] = time.perf_counter() - t0
                found += r.pose_landmarks is not None
        result["fps"][name] = round(len(frames) / float(times.sum()), 2)
        result["ms_mean"][name] = round(float(times.mean()) * 1e3, 2)
        result["ms_p50"][name] = round(float(np.percentile(times, 50)) * 1e3, 2)
        result["ms_p90"][name] = round(float(np.percentile(times, 90)) * 1e3, 2)
        result["found"][name] = found
    return result


BENCH_SETTINGS = ("holistic_lite", "holistic_full", "pose_lite", "pose_full")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    pi = sub.add_parser("images")
    pi.add_argument("--out-dir", type=Path, required=True)
    pi.add_argument("images", type=Path, nargs="+")
    pc = sub.add_parser("clip")
    pc.add_argument("--out-dir", type=Path, required=True)
    pc.add_argument("video", type=Path)
    pb = sub.add_parser("bench")
    pb.add_argument("video", type=Path)
    pb.add_argument("--settings", nargs="+", default=list(BENCH_SETTINGS), choices=BENCH_SETTINGS)
    pb.add_argument("--max-frames", type=int, default=None)
    pb.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)

    if args.mode == "images":
        args.out_dir.mkdir(parents=True, exist_ok=True)
        run_images(args.out_dir, args.images)
    elif args.mode == "clip":
        args.out_dir.mkdir(parents=True, exist_ok=True)
        run_clip(args.out_dir, args.video)
    else:
        print(json.dumps(run_bench(args.video, args.settings, args.max_frames, args.warmup)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
