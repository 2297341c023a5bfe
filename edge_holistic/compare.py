"""``edge-holistic compare --source VIDEO|IMAGE_DIR --a full@float --b lite@int8``: offline A/B.

Before switching to INT8 or a lighter model a user wants to see what it costs in accuracy
on their own camera and scene. ``compare`` decodes the frames once, runs model set A and
then model set B over the same decoded frames (each in tracking mode, timestamps i/30,
each timed on its own so one side's threads do not slow the other), and prints the
per-part agreement (:mod:`edge_holistic.pipeline.agreement`) and each side's fps.
``--json`` prints one line, the ``shadow@1`` document the daemon's shadow publishes.

A side is ``POSE[/HAND][@PRECISION]``: ``full@float``, ``lite@int8``, ``full/lite@int8``
(pose full, hands lite). Without ``/HAND`` the hand model follows the pose model (lite or
full; heavy has no hand counterpart and uses full). Precision defaults to float.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from .analyze import int_arg
from .pipeline import settings

EXIT_OK = 0
EXIT_USAGE = 2
FRAME_RATE = 30.0
HAND_FOR_POSE = {"lite": "lite", "full": "full", "heavy": "full"}


@dataclass(frozen=True)
class Side:
    """One model set: what ``--a`` / ``--b`` name."""

    pose_model: str
    hand_model: str
    precision: str

    def label(self, task: str) -> str:
        hand = f"/{self.hand_model}" if task == "holistic" and self.hand_model != HAND_FOR_POSE.get(
            self.pose_model, "full") else ""
        return f"{self.pose_model}{hand}@{self.precision}"


def parse_side(text: str) -> Side:
    """``POSE[/HAND][@PRECISION]`` -> Side; argparse shows the message on a bad value."""
    spec = str(text).strip()
    models, at, precision = spec.partition("@")
    pose, slash, hand = models.partition("/")
    if not pose or (slash and not hand) or (at and not precision):
        raise argparse.ArgumentTypeError(
            f"expected POSE[/HAND][@PRECISION] such as full@float or lite@int8, got {text!r}")
    precision = precision or "float"
    try:  # the one settings table: the same names the config and MQTT commands accept
        return Side(settings.validate("pose_model", pose),
                    settings.validate("hand_model", hand or HAND_FOR_POSE.get(pose, "full")),
                    settings.validate("precision", precision))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} (in {text!r})") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, metavar="VIDEO|IMAGE_DIR",
                   help="video file, or a folder of images (taken in name order as consecutive frames)")
    p.add_argument("--a", dest="a", type=parse_side, default=parse_side("full@float"), metavar="POSE[/HAND]@PREC",
                   help="model set A, the reference (default: full@float)")
    p.add_argument("--b", dest="b", type=parse_side, default=parse_side("lite@int8"), metavar="POSE[/HAND]@PREC",
                   help="model set B, the candidate (default: lite@int8)")
    settings.add_arguments(p, ("task", "threads"))
    p.add_argument("--frames", type=int_arg(1), default=None, metavar="N", help="use at most the first N frames")
    p.add_argument("--warmup", type=int_arg(0), default=3, metavar="N",
                   help="untimed frames per side first; the timed pass restarts at frame 0 (default: 3)")
    p.add_argument("--static", action="store_true",
                   help="every frame on its own (image mode: detection on each, no tracking or smoothing); "
                        "for a folder of unrelated photos. Default: consecutive frames of one stream")
    p.add_argument("--json", action="store_true", help="print one shadow@1 JSON line instead of the table")


def run_side(frames: Sequence["object"], side: Side, task: str, threads, warmup: int,
             pool=None, static: bool = False) -> Tuple[List["object"], float, "object"]:
    """Run one model set over every frame (an Engine in video mode: tracking, consecutive
    frames overlapped, none dropped; ``static``: image mode, every frame on its own);
    (results, fps, effective options)."""
    from .pipeline import Engine, EngineOptions, RunningMode

    mode = RunningMode.IMAGE if static else RunningMode.VIDEO
    engine = Engine(EngineOptions(running_mode=mode, task=task, pose_model=side.pose_model,
                                  hand_model=side.hand_model, precision=side.precision, threads=threads),
                    pool=pool)
    try:
        if static:
            for rgb in frames[:warmup]:
                engine.detect(rgb)
            t0 = time.perf_counter()
            results = [engine.detect(rgb) for rgb in frames]
        else:
            if warmup:
                for _ in engine.run((rgb, i / FRAME_RATE) for i, rgb in enumerate(frames[:warmup])):
                    pass
                engine.reset()  # the timed pass starts the clip again at frame 0, tracking nothing
            t0 = time.perf_counter()
            results = list(engine.run((rgb, i / FRAME_RATE) for i, rgb in enumerate(frames)))
        wall = time.perf_counter() - t0
        options = engine.effective_options
    finally:
        engine.close()
    return results, len(frames) / wall if wall > 0 else 0.0, options


def compare(frames: Sequence["object"], a: Side, b: Side, task: str = "pose", threads=2,
            warmup: int = 3, static: bool = False) -> dict:
    """Both sides over the same frames; the ``shadow@1`` summary with each side's fps."""
    from .pipeline.agreement import AgreementAccumulator, side_description

    res_a, fps_a, opt_a = run_side(frames, a, task, threads, warmup, static=static)
    res_b, fps_b, opt_b = run_side(frames, b, task, threads, warmup, static=static)
    acc = AgreementAccumulator(task, side_description(a.label(task), opt_a), side_description(b.label(task), opt_b),
                               window=None, every=1)
    acc.counters["offered"] = len(frames)
    for ra, rb in zip(res_a, res_b):
        acc.add(ra, rb)
    acc.fps = {"a": round(fps_a, 2), "b": round(fps_b, 2)}
    return acc.summary()


def main(args: argparse.Namespace) -> int:
    from .bench import SourceError, load_frames
    from .pipeline.agreement import format_table
    from .runtime import ModelError

    import cv2

    cv2.setNumThreads(1)  # as in bench: OpenCV's own threads only contend with the interpreters'
    try:
        frames = load_frames(args.source, args.frames)
    except SourceError as e:
        print(f"edge-holistic: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = compare(frames, args.a, args.b, task=args.task, threads=args.threads, warmup=args.warmup,
                          static=args.static)
    except (ModelError, ValueError) as e:
        print(f"edge-holistic: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(summary, separators=(",", ":"), allow_nan=False), flush=True)
    else:
        print(format_table(summary), flush=True)
    return EXIT_OK
