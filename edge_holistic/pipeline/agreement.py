"""How closely two model sets agree on the same frames (A/B shadow and ``compare``).

Why a distance relative to the part's own box: a 5 px error is nothing on a body that
fills a 720p frame and everything on a hand 40 px wide. Dividing each landmark's image
distance (x, y in pixels; z is left out, its scale differs per model) by the diagonal
of the part's bounding box (the mean of both sides' boxes, so A vs B and B vs A give the
same number) makes pose, face and hands comparable, and comparable across cameras.

Per part (pose, face, left hand, right hand) the summary holds:

- ``median_pct`` / ``p90_pct``: median and 90th percentile over every landmark of every
  frame where *both* sides found the part (pooled: a face contributes 468 distances a
  frame, a hand 21; the pose only the points either side calls visible), as % of the box
  diagonal; null when no such frame;
- ``found``: frames where A found the part, B found it, both, neither;
- ``agreement``: fraction of frames where A and B agree on found / not found;
- ``flips``: the disagreements by direction, ``lost`` (A found it, B did not) and
  ``extra`` (B found it, A did not);
- ``toggles``: per side, how often found / not found changed between consecutive compared
  frames (flicker; a model that keeps losing a hand shows here even when it agrees on
  most frames).

And for the run: each side's latency (p50/p95 of its per-frame total, ms), each side's
throughput when it is known (``compare``: frames / own wall time; the daemon's shadow:
null), counters, and which models each side ran. The same dict (``shadow@1``, see
``SUMMARY_KEYS`` and ``schema/shadow@1.json``) is ``stats.shadow``, the retained
``{prefix}/{device_id}/shadow`` message and ``compare --json``'s line.

Everything is over a bounded window of the most recent compared frames (the daemon
runs for months); ``window=None`` keeps every frame (``compare`` on a file).
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Optional, Tuple

import numpy as np

from .types import FrameResult

SCHEMA_ID = "edge-holistic/shadow@1"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "shadow@1.json"
PARTS = ("pose", "face", "left_hand", "right_hand")
SUMMARY_KEYS = ("schema", "task", "every", "a", "b", "window", "frames", "frames_total", "parts", "latency_ms", "fps",
                "counters")
PART_KEYS = ("compared", "median_pct", "p90_pct", "found", "agreement", "flips", "toggles")
DEFAULT_WINDOW = 300  # compared frames; with every: 10 at 15 fps, the last 200 s
_MIN_DIAGONAL_PX = 1.0  # a degenerate box (all points on one pixel) must not divide by ~0
VISIBLE = 0.5  # pose landmarks count when either side gives them visibility >= this


# --------------------------------------------------------------------------------------
# Pure functions


def part_points(result: FrameResult, part: str) -> Optional[np.ndarray]:
    """The part's landmarks as (N, 2) float64 pixel coordinates, or None if not found."""
    found = getattr(result, part)
    if found is None:
        return None
    lms = np.asarray(found.landmarks, dtype=np.float64)
    return lms[:, :2] * np.array([result.width, result.height], dtype=np.float64)


def pose_visible(result: FrameResult) -> Optional[np.ndarray]:
    """(33,) bool: pose landmarks this side considers visible, or None without a pose."""
    if result.pose is None:
        return None
    return np.asarray(result.pose.landmarks)[:, 3] >= VISIBLE


def box_diagonal(points: np.ndarray) -> float:
    """Diagonal of the axis-aligned box around (N, 2) points, in their units."""
    span = np.ptp(points, axis=0)
    return float(np.hypot(span[0], span[1]))


def distances_pct(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-landmark distance between two (N, 2) point sets as % of the mean box diagonal.

    Symmetric in ``a`` and ``b``; identical inputs give exactly 0. Shapes must match
    (same part, same landmark count) or it is a ValueError naming both shapes.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"point sets must both be (N, 2); got {a.shape} and {b.shape}")
    diag = max(0.5 * (box_diagonal(a) + box_diagonal(b)), _MIN_DIAGONAL_PX)
    return np.hypot(a[:, 0] - b[:, 0], a[:, 1] - b[:, 1]) * (100.0 / diag)


@dataclass(frozen=True)
class PartComparison:
    found_a: bool
    found_b: bool
    distances: Optional[np.ndarray]  # (N,) float32 % of box diagonal when both found, else None


def compare_results(a: FrameResult, b: FrameResult) -> Dict[str, PartComparison]:
    """One frame, both sides: per part, who found it and (when both) how far apart.

    A part a task never computes (face and hands with task pose) is simply not found on
    either side, which counts as agreement. Pose distances (and the pose box) cover only the
    landmarks at least one side calls visible: BlazePose always returns 33 points, and for
    a person cut off at the waist the legs are guesses far outside the frame whose spread
    would dominate the numbers (measured on the committed clip, full vs full-int8: p90
    13.7% over all 33 points, see docs/int8.md for the visible-only figures). If neither
    side calls any point visible, all 33 are used.
    """
    if (a.width, a.height) != (b.width, b.height):
        raise ValueError(f"results are for different frame sizes: {a.width}x{a.height} vs {b.width}x{b.height}")
    out = {}
    for part in PARTS:
        pa, pb = part_points(a, part), part_points(b, part)
        if part == "pose" and pa is not None and pb is not None:
            keep = pose_visible(a) | pose_visible(b)
            if keep.any():
                pa, pb = pa[keep], pb[keep]
        dist = distances_pct(pa, pb).astype(np.float32) if pa is not None and pb is not None else None
        out[part] = PartComparison(pa is not None, pb is not None, dist)
    return out


def percentiles(values: np.ndarray, qs: Iterable[float]) -> Tuple[Optional[float], ...]:
    """Rounded percentiles of a 1-D array, or Nones when it is empty."""
    qs = tuple(qs)
    if values.size == 0:
        return (None,) * len(qs)
    return tuple(round(float(v), 3) for v in np.percentile(values, qs))


def summarize_part(found_a: np.ndarray, found_b: np.ndarray, distances: Iterable[np.ndarray]) -> Dict[str, Any]:
    """One part's summary from per-frame found flags (bool arrays, frame order) and the
    distance arrays of the frames where both found it."""
    found_a = np.asarray(found_a, dtype=bool)
    found_b = np.asarray(found_b, dtype=bool)
    chunks = [d for d in distances if d is not None]
    pooled = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    median, p90 = percentiles(pooled, (50, 90))
    n = int(found_a.size)
    both = int(np.count_nonzero(found_a & found_b))
    return {
        "compared": len(chunks),
        "median_pct": median,
        "p90_pct": p90,
        "found": {"a": int(found_a.sum()), "b": int(found_b.sum()), "both": both,
                  "neither": int(np.count_nonzero(~found_a & ~found_b))},
        "agreement": round(float(np.mean(found_a == found_b)), 4) if n else None,
        "flips": {"lost": int(np.count_nonzero(found_a & ~found_b)),
                  "extra": int(np.count_nonzero(~found_a & found_b))},
        "toggles": {"a": int(np.count_nonzero(np.diff(found_a))), "b": int(np.count_nonzero(np.diff(found_b)))},
    }


def side_description(label: str, options: Any = None, models: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """What one side ran: a label like ``full@int8``, its model choices (from options given
    as an object or a dict) and model files."""
    out: Dict[str, Any] = {"label": label}
    for key in ("pose_model", "hand_model", "precision"):
        value = options.get(key) if isinstance(options, dict) else getattr(options, key, None)
        out[key] = None if value is None else str(value)
    out["models"] = dict(models or {})
    return out


# --------------------------------------------------------------------------------------
# Accumulator


class AgreementAccumulator:
    """Per-frame comparisons in, the ``shadow@1`` summary out. Not thread-safe by itself:
    one thread adds (the shadow worker), readers call :meth:`summary` under the owner's lock
    or after the run."""

    def __init__(self, task: str, a: Dict[str, Any], b: Dict[str, Any],
                 window: Optional[int] = DEFAULT_WINDOW, every: int = 1) -> None:
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be a positive number of frames or None, got {window!r}")
        self.task = task
        self.every = int(every)
        self.a = dict(a)
        self.b = dict(b)
        self.window = None if window is None else int(window)
        self._frames: Deque[Tuple[Dict[str, PartComparison], float, float]] = deque(maxlen=self.window)
        self.frames_total = 0
        self.fps: Dict[str, Optional[float]] = {"a": None, "b": None}
        self.counters: Dict[str, int] = {"offered": 0, "compared": 0, "warmup": 0, "dropped": 0,
                                         "skipped_cpu": 0, "errors": 0}

    def add(self, a: FrameResult, b: FrameResult) -> Dict[str, PartComparison]:
        """Compare one frame's two results; latency is each result's ``latency_ms["total"]``."""
        cmp = compare_results(a, b)
        self._frames.append((cmp, float(a.latency_ms.get("total", np.nan)), float(b.latency_ms.get("total", np.nan))))
        self.frames_total += 1
        self.counters["compared"] += 1
        self.b["models"] = dict(b.models)
        self.a["models"] = dict(a.models)
        return cmp

    def reset(self, a: Optional[Dict[str, Any]] = None, b: Optional[Dict[str, Any]] = None,
              task: Optional[str] = None, every: Optional[int] = None) -> None:
        """Start over (after a promote or a new candidate: old numbers describe other models)."""
        self._frames.clear()
        self.frames_total = 0
        self.counters = {k: 0 for k in self.counters}
        self.fps = {"a": None, "b": None}
        if a is not None:
            self.a = dict(a)
        if b is not None:
            self.b = dict(b)
        if task is not None:
            self.task = task
        if every is not None:
            self.every = int(every)

    def summary(self) -> Dict[str, Any]:
        frames = list(self._frames)
        parts = {}
        for part in PARTS:
            fa = np.fromiter((f[0][part].found_a for f in frames), dtype=bool, count=len(frames))
            fb = np.fromiter((f[0][part].found_b for f in frames), dtype=bool, count=len(frames))
            parts[part] = summarize_part(fa, fb, (f[0][part].distances for f in frames))
        lat = {}
        for i, side in ((1, "a"), (2, "b")):
            ms = np.array([f[i] for f in frames], dtype=np.float64)
            ms = ms[np.isfinite(ms)]
            p50, p95 = percentiles(ms, (50, 95))
            lat[side] = {"p50": p50, "p95": p95}
        return {
            "schema": SCHEMA_ID,
            "task": self.task,
            "every": self.every,
            "a": dict(self.a),
            "b": dict(self.b),
            "window": self.window,
            "frames": len(frames),
            "frames_total": self.frames_total,
            "parts": parts,
            "latency_ms": lat,
            "fps": dict(self.fps),
            "counters": dict(self.counters),
        }


def metric_samples(summary: Optional[Dict[str, Any]], prefix: str = "edge_holistic_shadow"):
    """The summary as Prometheus-style gauges: ``(name, help, labels, value)`` tuples, for
    ``/metrics`` (the web package's collector) or any other exporter. Nothing while the
    shadow is off; parts never compared give no distance samples (no NaNs)."""
    if not summary:
        return []
    out = [(f"{prefix}_frames", "frames compared in the window", {}, float(summary["frames"]))]
    for part, p in summary["parts"].items():
        labels = {"part": part}
        for q, key in (("0.5", "median_pct"), ("0.9", "p90_pct")):
            if p[key] is not None:
                out.append((f"{prefix}_distance_percent", "landmark distance, % of the part's box diagonal",
                            {**labels, "quantile": q}, float(p[key])))
        if p["agreement"] is not None:
            out.append((f"{prefix}_found_agreement_ratio", "frames where both sides agree on found / not found",
                        labels, float(p["agreement"])))
        for direction, n in p["flips"].items():
            out.append((f"{prefix}_presence_flips", "frames in the window where the candidate lost or added the part",
                        {**labels, "direction": direction}, float(n)))
    for side in ("a", "b"):
        v = summary["latency_ms"][side]["p50"]
        if v is not None:
            out.append((f"{prefix}_latency_ms", "median per-frame latency of each side",
                        {"side": "primary" if side == "a" else "candidate"}, float(v)))
    for name, n in summary["counters"].items():  # gauges: they restart with each new pair
        out.append((f"{prefix}_frames_{name}", f"frames {name} since the pair was set up (restarts on promote/set)",
                    {}, float(n)))
    return out


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def format_table(summary: Dict[str, Any]) -> str:
    """The summary as a small text table (``compare`` without ``--json``, docs)."""
    a, b = summary["a"], summary["b"]
    lines = [f"A = {a['label']}   B = {b['label']}   task {summary['task']}   frames {summary['frames']}",
             f"{'part':<11}{'median %':>9}{'p90 %':>8}{'found A':>9}{'found B':>9}{'agree':>8}"
             f"{'lost':>6}{'extra':>7}{'tog A':>7}{'tog B':>7}"]

    def num(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    for part, p in summary["parts"].items():
        lines.append(f"{part:<11}{num(p['median_pct']):>9}{num(p['p90_pct']):>8}{p['found']['a']:>9}"
                     f"{p['found']['b']:>9}{num(p['agreement'], '{:.3f}'):>8}{p['flips']['lost']:>6}"
                     f"{p['flips']['extra']:>7}{p['toggles']['a']:>7}{p['toggles']['b']:>7}")
    la, lb = summary["latency_ms"]["a"], summary["latency_ms"]["b"]
    fa, fb = summary["fps"]["a"], summary["fps"]["b"]
    lines.append(f"latency p50/p95 ms: A {num(la['p50'], '{:.1f}')}/{num(la['p95'], '{:.1f}')}   "
                 f"B {num(lb['p50'], '{:.1f}')}/{num(lb['p95'], '{:.1f}')}")
    if fa is not None or fb is not None:
        lines.append(f"fps: A {num(fa, '{:.1f}')}   B {num(fb, '{:.1f}')}")
    return "\n".join(lines)
