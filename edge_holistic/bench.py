"""``edge-holistic bench --source VIDEO|IMAGE_DIR``: how fast is the pipeline on this board?

Users pick a pipeline by frames per second on their own hardware, so the benchmark
must measure only the pipeline: every frame is decoded (and converted to RGB) before
the clock starts, then the pipeline runs in tracking mode over them with timestamps
``i / 30`` as a camera would deliver them. Reported: throughput (fps), per-frame and
per-stage latency percentiles, CPU seconds per frame (to see how much of the board is
left for anything else) and peak RSS (boards with 1-2 GB of RAM care).

``--threads-sweep 1,2,4`` repeats the run per interpreter thread count, which is the
one knob whose best value depends on the board (cores, and how they are shared).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Dict, List, Optional, Sequence

from .analyze import add_pipeline_arguments, int_arg

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FRAME_RATE = 30.0  # timestamps i/30: what the legacy MediaPipe solution API assumes too


class SourceError(RuntimeError):
    """The benchmark source cannot be read (missing, empty, not a video or images)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, metavar="VIDEO|IMAGE_DIR",
                   help="video file, or a folder of images (taken in name order as consecutive frames)")
    add_pipeline_arguments(p)
    p.add_argument("--frames", type=int_arg(1), default=None, metavar="N",
                   help="use at most the first N frames (default: all)")
    p.add_argument("--warmup", type=int_arg(0), default=5, metavar="N",
                   help="untimed frames first (interpreter start-up, first detection); the timed pass "
                        "then restarts the stream at frame 0 (default: 5)")
    p.add_argument("--threads-sweep", type=_thread_list, default=None, metavar="1,2,4",
                   help="run once per interpreter thread count and compare (overrides --threads)")
    p.add_argument("--schedule", default="auto",
                   choices=("auto", "overlap", "split", "inline", "per-frame", "sequential"),
                   help="holistic scheduling: auto (default) measures overlap/split/inline every ~170 frames "
                        "and keeps the fastest; overlap = next frame's pose alongside this frame's face, left "
                        "and right hand on 3 workers; split = hands on one worker, face and pose on the caller; "
                        "inline = one model after the other; per-frame = Engine.detect_for_video per frame (face "
                        "and hands concurrent within the frame, no overlap across frames); sequential = no threads "
                        "at all")
    p.add_argument("--mode", default="video", choices=("video", "live"),
                   help="engine running mode: video (Engine.run, default) or live (Engine.submit with "
                        "block=True and a result callback: the daemon's path, no frame dropped)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON line per run instead of the table")


def _thread_list(value: str) -> List[int]:
    out = []
    for part in value.split(","):
        from .pipeline import settings

        try:
            n = settings.validate("threads", part.strip())
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        if n == "auto":
            raise argparse.ArgumentTypeError("--threads-sweep takes numbers, e.g. 1,2,4")
        out.append(n)
    if not out:
        raise argparse.ArgumentTypeError("--threads-sweep needs at least one thread count")
    return out


# --------------------------------------------------------------------------------------
# Frames


def load_frames(source: str, limit: Optional[int] = None) -> List["object"]:
    """Decode every frame of a video or image folder to contiguous RGB uint8 arrays.

    Everything is decoded before timing so the figure is the pipeline's alone; the
    daemon overlaps decoding with inference on its own thread.
    """
    import cv2
    import numpy as np

    if not os.path.exists(source):
        raise SourceError(f"{source}: no such file or directory")
    if not os.access(source, os.R_OK):
        raise SourceError(f"{source}: permission denied")
    frames: List[np.ndarray] = []
    if os.path.isdir(source):
        names = sorted(n for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise SourceError(f"{source}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        for name in names:
            if limit is not None and len(frames) >= limit:
                break
            path = os.path.join(source, name)
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise SourceError(f"{path}: not a readable image")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return frames
    if os.path.getsize(source) == 0:
        raise SourceError(f"{source}: empty file")
    cap = cv2.VideoCapture(source)
    try:
        if not cap.isOpened():
            raise SourceError(f"{source}: not a readable video (unknown format or corrupt data)")
        while limit is None or len(frames) < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise SourceError(f"{source}: no decodable frames")
    return frames


# --------------------------------------------------------------------------------------
# Measuring


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM; ru_maxrss as the fallback)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def percentile_ms(values: Sequence[float]) -> Dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2)}


def run_once(frames: Sequence["object"], args: argparse.Namespace, threads) -> Dict[str, object]:
    """Build a pipeline, warm it up, time one tracking pass over ``frames``.

    Throughput counts wall time from the first frame submitted to the last result;
    per-frame latency is each frame's own submit-to-result time (with overlap on,
    a frame waits for the previous one's face and hands, so latency > 1/fps).
    """
    import cv2

    from .pipeline import Engine, EngineOptions, RunningMode

    # OpenCV's own worker threads only add contention next to the interpreters'
    # concurrency: a single-threaded warp of a 256x256 crop measured ~30% faster here.
    cv2.setNumThreads(1)

    per_frame = args.schedule == "per-frame"
    live = getattr(args, "mode", "video") == "live"
    delivered: List[object] = []
    engine = Engine(EngineOptions(running_mode=RunningMode.LIVE if live else RunningMode.VIDEO, task=args.task,
                                  pose_model=args.pose_model, hand_model=args.hand_model, precision=args.precision,
                                  threads=threads, schedule="auto" if per_frame else args.schedule,
                                  result_callback=(lambda result, meta: delivered.append(result)) if live else None))

    def results_of(chunk: Sequence["object"]):
        stamped = ((rgb, i / FRAME_RATE) for i, rgb in enumerate(chunk))
        if live:  # the daemon's path: submit returns at once, results arrive on the callback
            for rgb, ts in stamped:
                engine.submit(rgb, ts, block=True)
            engine.flush()
            return delivered
        return (engine.detect_for_video(rgb, ts) for rgb, ts in stamped) if per_frame else engine.run(stamped)

    try:
        for result in results_of(frames[: args.warmup]):
            pass
        engine.reset()  # the timed pass starts the clip again at frame 0, tracking nothing
        delivered.clear()
        stages: Dict[str, List[float]] = {}
        latencies: List[float] = []
        found = 0
        cpu0 = os.times()
        t0 = time.perf_counter()
        for result in results_of(frames):
            latencies.append(result.latency_ms["total"])
            found += result.pose is not None
            for k, v in result.latency_ms.items():
                if k != "total":
                    stages.setdefault(k, []).append(v)
        wall = time.perf_counter() - t0
        cpu1 = os.times()
        schedule = ",".join(engine.schedule_choices)
        models = dict(engine.models)
        threads_used = engine.options.threads
    finally:
        engine.close()
    n = len(frames)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "fps": round(n / wall, 2),
        "frames": n,
        "latency_ms": percentile_ms(latencies),
        "stages_ms": {k: percentile_ms(v) for k, v in sorted(stages.items())},
        "rss_mb": round(peak_rss_mb(), 1),
        "task": args.task,
        "models": models,
        # Not part of the JSON line (its keys are fixed); shown in the table.
        "_cpu_s_per_frame": cpu / n,
        "_threads": threads_used,
        "_found": found,
        "_stage_runs": {k: len(v) for k, v in stages.items()},
        "_schedule": schedule,
    }


def public(report: Dict[str, object]) -> Dict[str, object]:
    """The JSON line: exactly fps, frames, latency_ms, stages_ms, rss_mb, task, models."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def print_table(report: Dict[str, object], out=sys.stdout) -> None:
    lat = report["latency_ms"]
    print(f"task {report['task']}  threads/interpreter {report['_threads']}  frames {report['frames']}  "
          f"person found on {report['_found']}", file=out)
    print(f"  fps {report['fps']:.1f}   latency p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms   "
          f"CPU {report['_cpu_s_per_frame'] * 1e3:.1f} ms/frame   peak RSS {report['rss_mb']:.0f} MB", file=out)
    if report["_schedule"]:
        print(f"  schedule chosen by measurement: {report['_schedule']}", file=out)
    print(f"  {'stage':<18}{'runs':>6}{'p50 ms':>9}{'p95 ms':>9}", file=out)
    for name, v in report["stages_ms"].items():
        print(f"  {name:<18}{report['_stage_runs'][name]:>6}{v['p50']:>9.2f}{v['p95']:>9.2f}", file=out)
    print("  models: " + ", ".join(f"{k}={v}" for k, v in report["models"].items()), file=out)


def main(args: argparse.Namespace) -> int:
    from .runtime import ModelError

    try:
        frames = load_frames(args.source, args.frames)
    except SourceError as e:
        print(f"edge-holistic: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    sweep = args.threads_sweep or [args.threads]
    reports = []
    for threads in sweep:
        try:
            report = run_once(frames, args, threads)
        except (ModelError, ValueError) as e:
            print(f"edge-holistic: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        reports.append(report)
        if args.json:
            print(json.dumps(public(report), separators=(",", ":")), flush=True)
        else:
            print_table(report)
    if len(reports) > 1 and not args.json:
        best = max(reports, key=lambda r: r["fps"])
        print("threads sweep: " + ", ".join(f"{r['_threads']}: {r['fps']:.1f} fps" for r in reports)
              + f"  -> best {best['_threads']}", flush=True)
    return EXIT_OK
