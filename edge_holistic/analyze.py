"""``edge-holistic analyze IMAGE...``: one landmarks@1 JSON line per image on stdout.

Images are independent, so the engine runs in image mode (detection on
every image, no smoothing). A bad file is reported on stderr and skipped; the
exit code says whether every file was processed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Tuple

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2


def int_arg(minimum: int, also: str = ""):
    """An argparse type: an integer >= ``minimum`` (or the word ``also``, e.g. 'auto')."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    what += f" or {also!r}" if also else ""

    def parse(value: str):
        if also and str(value) == also:
            return also
        try:
            n = int(value)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}")
        return n

    return parse


MODEL_FLAGS = ("task", "pose_model", "hand_model", "precision", "threads")


def add_pipeline_arguments(p: argparse.ArgumentParser, extra=(), defaults=None) -> None:
    """Model-selection flags shared by analyze and bench, typed and checked by the one
    settings table (``pipeline.settings``)."""
    from .pipeline import settings

    settings.add_arguments(p, MODEL_FLAGS + tuple(extra), defaults=defaults)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, ...)")
    # precision defaults to auto, as in the daemon's config: the same photo gives the same
    # landmarks from the CLI and from the daemon on the same board.
    add_pipeline_arguments(p, extra=("min_detection_confidence",), defaults={"precision": "auto"})
    p.add_argument("--draw", metavar="OUT_DIR", help="also write annotated images into this folder")


def read_image(path: str) -> Tuple[Optional["object"], Optional[str]]:
    """(BGR uint8 array, None) or (None, reason). Grayscale and RGBA become 3-channel."""
    import cv2
    import numpy as np

    try:
        if os.path.isdir(path):
            return None, "is a directory, not an image"
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, e.strerror or str(e)
    if not data:
        return None, "empty file"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None, "not a readable image (unknown format or corrupt data)"
    return img, None


def main(args: argparse.Namespace) -> int:
    from .message import build_message, dumps
    from .pipeline import Engine, EngineOptions, RunningMode
    from .runtime import ModelError

    try:
        engine = Engine(EngineOptions(
            running_mode=RunningMode.IMAGE, task=args.task, pose_model=args.pose_model, hand_model=args.hand_model,
            precision=args.precision, threads=args.threads,
            min_detection_confidence=args.min_detection_confidence,
        ))
    except (ModelError, ValueError) as e:
        print(f"edge-holistic: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.draw:
        os.makedirs(args.draw, exist_ok=True)
    failed: List[str] = []
    for seq, path in enumerate(args.images):
        bgr, err = read_image(path)
        if bgr is None:
            print(f"edge-holistic: error: {path}: {err}", file=sys.stderr)
            failed.append(path)
            continue
        result = engine.detect(bgr[:, :, ::-1])
        print(dumps(build_message(result, source=path, seq=seq, ts=time.time())), flush=True)
        if args.draw:
            import cv2

            from .draw import draw_result

            out = os.path.join(args.draw, os.path.splitext(os.path.basename(path))[0] + ".png")
            cv2.imwrite(out, draw_result(bgr, result))
    engine.close()
    if failed:
        print(f"edge-holistic: {len(failed)} of {len(args.images)} file(s) failed", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK
